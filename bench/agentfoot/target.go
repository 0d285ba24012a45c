// Package agentfoot holds the parts of the agent footprint benchmark
// (cmd/agentbench) that are not process plumbing: a scrape target serving
// many changing series, a remote_write sink that counts and discards, the
// sampling of a process's memory and CPU from /proc, and the report.
package agentfoot

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Target serves /metrics in the Prometheus text format with a fixed set of
// series whose values change with time, so that every scrape sees new
// counter and gauge values, as from a busy application. It is safe for
// concurrent use.
type Target struct {
	start    time.Time
	families []family
	series   int

	bufs sync.Pool // *bytes.Buffer

	mu      sync.Mutex
	scrapes map[string]int // by the scraper's User-Agent product
}

type family struct {
	header []byte // # HELP and # TYPE lines
	series []targetSeries
}

type targetSeries struct {
	prefix  []byte // name{labels} and a space
	counter bool
	base    float64
	rate    float64 // per second, for counters; amplitude for gauges
	phase   float64
}

// Metric names are built from a subsystem and a measurement, as an
// instrumented service's would be; half are counters and half gauges.
var (
	subsystems   = []string{"http", "db", "cache", "queue", "rpc", "worker", "auth", "storage", "scheduler", "ingest"}
	measurements = []struct {
		name, help string
		counter    bool
	}{
		{"requests_total", "Requests handled.", true},
		{"errors_total", "Requests that failed.", true},
		{"transferred_bytes_total", "Bytes sent and received.", true},
		{"retries_total", "Operations retried.", true},
		{"duration_seconds_total", "Time spent handling requests.", true},
		{"in_flight", "Requests being handled.", false},
		{"queue_length", "Items waiting.", false},
		{"open_connections", "Open connections.", false},
		{"utilization_ratio", "Share of capacity in use.", false},
		{"last_success_timestamp_seconds", "When the last operation succeeded.", false},
	}
	methods  = []string{"GET", "POST", "PUT", "DELETE"}
	statuses = []string{"200", "201", "204", "400", "404", "500"}
)

// NewTarget returns a target with metrics metric names (at most 100) times
// combos label combinations each.
func NewTarget(metrics, combos int) (*Target, error) {
	maxMetrics := len(subsystems) * len(measurements)
	if metrics < 1 || metrics > maxMetrics {
		return nil, fmt.Errorf("metrics: must be between 1 and %d, got %d", maxMetrics, metrics)
	}
	if combos < 1 {
		return nil, fmt.Errorf("combos: must be positive, got %d", combos)
	}
	t := &Target{start: time.Now(), scrapes: map[string]int{}}
	for m := range metrics {
		sub := subsystems[m/len(measurements)]
		ms := measurements[m%len(measurements)]
		name := "benchapp_" + sub + "_" + ms.name
		typ := "gauge"
		if ms.counter {
			typ = "counter"
		}
		f := family{header: fmt.Appendf(nil, "# HELP %s %s\n# TYPE %s %s\n", name, ms.help, name, typ)}
		for c := range combos {
			// Ten pods of ten-ish services, twenty routes: label values of
			// the lengths real deployments have.
			svc := c % 10
			labels := fmt.Sprintf(`service="svc-%02d",pod="svc-%02d-7c9d8f5b6-%05x",route="/api/v1/%s/resource-%02d",method=%q,status=%q`,
				svc, svc, (c*7919)%0xfffff, sub, c%20, methods[c%len(methods)], statuses[(c/3)%len(statuses)])
			h := float64((m*131 + c*17) % 1000)
			s := targetSeries{prefix: fmt.Appendf(nil, "%s{%s} ", name, labels), counter: ms.counter, phase: h}
			if ms.counter {
				s.base, s.rate = h*1000, 1+h/10
			} else {
				s.base, s.rate = 100+h, 10+h/20
			}
			f.series = append(f.series, s)
		}
		t.families = append(t.families, f)
		t.series += combos
	}
	return t, nil
}

// Series is the number of series each scrape returns.
func (t *Target) Series() int { return t.series }

// Scrapes returns how many scrapes each scraper made, by the product part
// of its User-Agent.
func (t *Target) Scrapes() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int, len(t.scrapes))
	for k, v := range t.scrapes {
		out[k] = v
	}
	return out
}

// ServeHTTP writes every series with its current value, gzipped when the
// scraper accepts it, as client_golang does.
func (t *Target) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ua, _, _ := strings.Cut(r.UserAgent(), "/")
	t.mu.Lock()
	t.scrapes[ua]++
	t.mu.Unlock()

	buf, _ := t.bufs.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	defer t.bufs.Put(buf)
	buf.Reset()
	t.write(buf, time.Since(t.start).Seconds())

	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Encoding", "gzip")
		gz := gzip.NewWriter(w)
		_, _ = gz.Write(buf.Bytes())
		_ = gz.Close()
		return
	}
	_, _ = w.Write(buf.Bytes())
}

func (t *Target) write(buf *bytes.Buffer, sec float64) {
	var num [32]byte
	for _, f := range t.families {
		buf.Write(f.header)
		for _, s := range f.series {
			var v float64
			if s.counter {
				v = math.Floor(s.base + s.rate*sec)
			} else {
				v = s.base + s.rate*math.Sin(sec/97+s.phase)
			}
			buf.Write(s.prefix)
			buf.Write(strconv.AppendFloat(num[:0], v, 'g', -1, 64))
			buf.WriteByte('\n')
		}
	}
}
