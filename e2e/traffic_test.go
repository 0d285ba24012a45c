package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/prompb"
)

// testApp is an application the agent scrapes. Each scrape sees
// e2e_scrape_seq one higher than the last, so stored values must form a
// contiguous run: a gap is a lost scrape, a repeat a duplicate.
type testApp struct {
	srv     *httptest.Server
	scrapes atomic.Int64
}

func newTestApp(tb testing.TB) *testApp {
	a := &testApp{}
	reg := prometheus.NewRegistry()
	seq := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "e2e_scrape_seq", Help: "Scrape number."},
		func() float64 { return float64(a.scrapes.Load()) })
	items := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "e2e_items", Help: "Items by kind."}, []string{"kind"})
	for i, k := range []string{"a", "b", "c"} {
		items.WithLabelValues(k).Set(float64(i))
	}
	labelled := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "e2e_labelled", Help: "Carries its own job label."}, []string{"job"})
	labelled.WithLabelValues("fromapp").Set(1)
	reg.MustRegister(seq, items, labelled)
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.scrapes.Add(1)
		h.ServeHTTP(w, r)
	}))
	tb.Cleanup(a.srv.Close)
	return a
}

func (a *testApp) target() string { return a.srv.Listener.Addr().String() }

// pusher sends remote_write requests the way Prometheus does, and keeps an
// exact account: a request answered 204 must be stored exactly once; one
// refused before it was sent (connection refused) is retried; one whose
// fate is unknown (connection broken after sending) is recorded as
// ambiguous and not retried.
type pusher struct {
	url    string
	client *http.Client

	mu        sync.Mutex
	accepted  map[string]int // series name -> samples acknowledged with 204
	ambiguous map[string]int // series name -> samples of requests with unknown fate
	requests  int
}

func newPusher(url string) *pusher {
	return &pusher{url: url + "/api/v1/write", client: &http.Client{Timeout: 10 * time.Second},
		accepted: map[string]int{}, ambiguous: map[string]int{}}
}

// push sends one request with nSeries series of nSamples samples each,
// starting at ts, for series named prefix_<i>.
func (p *pusher) push(ctx context.Context, prefix string, nSeries, nSamples int, ts int64) error {
	wr := prompb.WriteRequest{}
	for i := range nSeries {
		s := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: prefix}, {Name: "idx", Value: fmt.Sprint(i)}}}
		for j := range nSamples {
			s.Samples = append(s.Samples, prompb.Sample{Timestamp: ts + int64(j)*1000, Value: float64(j)})
		}
		wr.Timeseries = append(wr.Timeseries, s)
	}
	raw, err := wr.Marshal()
	if err != nil {
		return err
	}
	body := snappy.Encode(nil, raw)
	n := nSeries * nSamples
	deadline := time.Now().Add(2 * time.Minute)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
		req.Header.Set("Content-Encoding", "snappy")
		req.Header.Set("Content-Type", "application/x-protobuf")
		resp, err := p.client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, syscall.ECONNREFUSED) && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				continue // never reached the agent: safe to retry
			}
			p.mu.Lock()
			p.ambiguous[prefix] += n
			p.mu.Unlock()
			return nil
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("remote_write answered %s", resp.Status)
		}
		p.mu.Lock()
		p.accepted[prefix] += n
		p.requests++
		p.mu.Unlock()
		return nil
	}
}

func (p *pusher) totals(prefix string) (accepted, ambiguous int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted[prefix], p.ambiguous[prefix]
}

// steady pushes one request per interval until ctx ends, with timestamps
// that never repeat, and returns when it has stopped. Stopping takes effect
// between requests, never during one: a request cut off mid-flight could
// have been accepted without the pusher knowing.
func (p *pusher) steady(ctx context.Context, tb testing.TB, prefix string, nSeries int, interval time.Duration) func() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		ts := time.Now().UnixMilli()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for ctx.Err() == nil {
			if err := p.push(context.Background(), prefix, nSeries, 1, ts); err != nil {
				tb.Errorf("push: %v", err)
				return
			}
			ts += 1000
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() { <-done }
}
