package querybench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
)

// sink receives every series of the dataset once, with its samples. add
// may keep neither slice: the caller reuses them.
type sink interface {
	add(s *SeriesDef, ts []int64, vals []float64) error
	close() error
}

// generate computes every series once and hands it to each sink.
func generate(ctx context.Context, d *Dataset, sinks []sink) error {
	n := d.Samples()
	ts := make([]int64, n)
	vals := make([]float64, n)
	for i := range d.Series {
		if i%500 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		s := &d.Series[i]
		d.Timestamps(s, ts)
		d.Values(s, ts, vals)
		for _, k := range sinks {
			if err := k.add(s, ts, vals); err != nil {
				return err
			}
		}
	}
	var errs []error
	for _, k := range sinks {
		errs = append(errs, k.close())
	}
	return errors.Join(errs...)
}

// chSink writes through the hub's store, as ingestion does: a series row
// per tenant, series and UTC day of its samples, then the samples, in
// blocks of about blockSamples written by two concurrent inserts.
type chSink struct {
	ctx   context.Context
	store *clickhouse.Store
	block *clickhouse.Block
	work  chan *clickhouse.Block
	wg    sync.WaitGroup
	mu    sync.Mutex
	err   error
}

const blockSamples = 1_000_000

func newCHSink(ctx context.Context, store *clickhouse.Store) *chSink {
	k := &chSink{ctx: ctx, store: store, block: &clickhouse.Block{}, work: make(chan *clickhouse.Block)}
	for range 2 {
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			for b := range k.work {
				if err := store.WriteBlock(ctx, b); err != nil {
					k.mu.Lock()
					k.err = errors.Join(k.err, err)
					k.mu.Unlock()
				}
			}
		}()
	}
	return k
}

func (k *chSink) failed() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

func (k *chSink) add(s *SeriesDef, ts []int64, vals []float64) error {
	if err := k.failed(); err != nil {
		return err
	}
	fp := clickhouse.Fingerprint(s.Labels)
	var names, values []string
	s.Labels.Range(func(l labels.Label) {
		if l.Name != labels.MetricName {
			names = append(names, l.Name)
			values = append(values, l.Value)
		}
	})
	b := k.block
	for day := ts[0] / dayMillis; day <= ts[len(ts)-1]/dayMillis; day++ {
		b.Series = append(b.Series, clickhouse.SeriesRow{
			Tenant: s.Bureau, Date: time.UnixMilli(day * dayMillis).UTC(), Fingerprint: fp,
			MetricName: s.Labels.Get(labels.MetricName), LabelNames: names, LabelValues: values,
		})
	}
	for range ts {
		b.Tenants = append(b.Tenants, s.Bureau)
		b.Fingerprints = append(b.Fingerprints, fp)
	}
	b.Timestamps = append(b.Timestamps, ts...)
	b.Values = append(b.Values, vals...)
	if b.Len() >= blockSamples {
		return k.flush()
	}
	return nil
}

func (k *chSink) flush() error {
	select {
	case k.work <- k.block:
	case <-k.ctx.Done():
		return k.ctx.Err()
	}
	k.block = &clickhouse.Block{}
	return nil
}

func (k *chSink) close() error {
	var err error
	if k.block.Len() > 0 {
		err = k.flush()
	}
	close(k.work)
	k.wg.Wait()
	return errors.Join(err, k.failed())
}

// omSink writes OpenMetrics text for promtool: each series' samples in
// time order, timestamps in seconds with milliseconds.
type omSink struct {
	f   *os.File
	w   *bufio.Writer
	buf []byte
}

func newOMSink(path string) (*omSink, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &omSink{f: f, w: bufio.NewWriterSize(f, 4<<20)}, nil
}

func (k *omSink) add(s *SeriesDef, ts []int64, vals []float64) error {
	prefix := []byte(s.Labels.Get(labels.MetricName) + "{")
	first := true
	s.Labels.Range(func(l labels.Label) {
		if l.Name == labels.MetricName {
			return
		}
		if !first {
			prefix = append(prefix, ',')
		}
		first = false
		prefix = append(prefix, l.Name...)
		prefix = append(prefix, '=')
		prefix = append(prefix, omQuote(l.Value)...)
	})
	prefix = append(prefix, "} "...)
	for j := range ts {
		b := append(k.buf[:0], prefix...)
		b = strconv.AppendFloat(b, vals[j], 'g', -1, 64)
		b = append(b, ' ')
		b = strconv.AppendInt(b, ts[j]/1000, 10)
		b = append(b, '.')
		ms := ts[j] % 1000
		b = append(b, byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), '\n')
		k.buf = b
		if _, err := k.w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

var omEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func omQuote(v string) string { return `"` + omEscaper.Replace(v) + `"` }

func (k *omSink) close() error {
	_, err := k.w.WriteString("# EOF\n")
	return errors.Join(err, k.w.Flush(), k.f.Close())
}

// vmSink streams VictoriaMetrics' JSON line import format, one line per
// series with all its samples, into one POST to /api/v1/import.
type vmSink struct {
	pw   *io.PipeWriter
	w    *bufio.Writer
	done chan error
	buf  []byte
}

func newVMSink(ctx context.Context, base string) *vmSink {
	pr, pw := io.Pipe()
	k := &vmSink{pw: pw, w: bufio.NewWriterSize(pw, 1<<20), done: make(chan error, 1)}
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/import", pr)
		if err != nil {
			pr.CloseWithError(err)
			k.done <- err
			return
		}
		resp, err := noProxy.Do(req)
		if err != nil {
			pr.CloseWithError(err)
			k.done <- fmt.Errorf("import into victoria-metrics: %w", err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			pr.CloseWithError(errors.New("import refused"))
			k.done <- fmt.Errorf("import into victoria-metrics: http %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
			return
		}
		k.done <- nil
	}()
	return k
}

func (k *vmSink) add(s *SeriesDef, ts []int64, vals []float64) error {
	metric, err := json.Marshal(s.Labels.Map())
	if err != nil {
		return err
	}
	b := append(k.buf[:0], `{"metric":`...)
	b = append(b, metric...)
	b = append(b, `,"values":[`...)
	for j, v := range vals {
		if j > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
	}
	b = append(b, `],"timestamps":[`...)
	for j, t := range ts {
		if j > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, t, 10)
	}
	b = append(b, "]}\n"...)
	k.buf = b
	_, err = k.w.Write(b)
	return err
}

func (k *vmSink) close() error {
	err := k.w.Flush()
	k.pw.Close()
	return errors.Join(err, <-k.done)
}

// noProxy never sends loopback requests through HTTP_PROXY.
var noProxy = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}}
