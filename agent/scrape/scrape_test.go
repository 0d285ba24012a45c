package scrape

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"

	"github.com/bureauhub/bureauhub/agent/sink"
)

// recorder is a real sink whose buffer decodes and keeps every record.
type recorder struct {
	*sink.Sink
	mu     sync.Mutex
	series []prompb.TimeSeries
}

func newRecorder(tb testing.TB) *recorder {
	r := &recorder{}
	s, err := sink.New(r, sink.Identity{Bureau: "b", Cloud: "c", Cluster: "k", Instance: "i"}, 2000, nil)
	if err != nil {
		tb.Fatal(err)
	}
	r.Sink = s
	return r
}

// Append is the buffer's side: payload is a record as the hub receives it.
func (r *recorder) Append(payload []byte, _ int) (uint64, error) {
	raw, err := snappy.Decode(nil, payload)
	if err != nil {
		return 0, err
	}
	var wr prompb.WriteRequest
	if err := wr.Unmarshal(raw); err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.series = append(r.series, wr.Timeseries...)
	return uint64(len(r.series)), nil
}

func (r *recorder) find(name string, pred func(float64) bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.series {
		for _, l := range s.Labels {
			if l.Name == "__name__" && l.Value == name && pred(s.Samples[0].Value) {
				return true
			}
		}
	}
	return false
}

// TestStalenessMarkers scrapes a target whose series disappears: the agent
// must write Prometheus's staleness marker for it, as Prometheus does, so
// that queries stop returning it at once rather than after the lookback.
func TestStalenessMarkers(t *testing.T) {
	var scrapes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := scrapes.Add(1)
		fmt.Fprintln(w, "# TYPE kept gauge\nkept 1")
		if n <= 2 {
			fmt.Fprintln(w, "# TYPE vanishing gauge\nvanishing 1")
		}
	}))
	defer srv.Close()
	cfg, err := LoadConfig(fmt.Sprintf(`
global: {scrape_interval: 1s, scrape_timeout: 500ms}
scrape_configs:
  - job_name: app
    static_configs: [{targets: [%q]}]
`, srv.Listener.Addr().String()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(t)
	m := New(cfg, rec, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()

	deadline := time.Now().Add(30 * time.Second)
	for !rec.find("vanishing", value.IsStaleNaN) {
		if time.Now().After(deadline) {
			t.Fatalf("no staleness marker for the vanished series after %d scrapes", scrapes.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !rec.find("kept", func(v float64) bool { return v == 1 }) || rec.find("kept", func(v float64) bool { return math.IsNaN(v) }) {
		t.Errorf("the series still exposed was marked stale or not written")
	}
}

type countingQueue struct{ records, samples int }

func (q *countingQueue) Append(_ []byte, samples int) (uint64, error) {
	q.records++
	q.samples += samples
	return uint64(q.records), nil
}

// BenchmarkAppender appends one 10,000-series scrape and commits it into
// buffer records (encoded and compressed; the buffer only counts them).
// Run: go test -run '^$' -bench Appender -benchmem ./agent/scrape/
func BenchmarkAppender(b *testing.B) {
	const n = 10_000
	sets := make([]labels.Labels, n)
	for i := range sets {
		sets[i] = labels.FromStrings("__name__", fmt.Sprintf("metric_%d", i%100), "instance", "target:9100", "job", "app", "series", fmt.Sprint(i/100))
	}
	q := &countingQueue{}
	s, err := sink.New(q, sink.Identity{Bureau: "b", Cloud: "c", Cluster: "k", Instance: "i"}, 2000, nil)
	if err != nil {
		b.Fatal(err)
	}
	a := appendable{s}
	for b.Loop() {
		app := a.AppenderV2(context.Background())
		for i, ls := range sets {
			if _, err := app.Append(0, ls, 0, 1763597400000, float64(i), nil, nil, storage.AppendV2Options{}); err != nil {
				b.Fatal(err)
			}
		}
		if err := app.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	if q.samples != b.N*n {
		b.Fatalf("buffered %d samples, want %d", q.samples, b.N*n)
	}
}

// TestAppenderRollback checks that a rolled-back scrape (Prometheus rolls
// back one over its sample_limit) leaves nothing in the buffer, and that a
// committed one arrives whole.
func TestAppenderRollback(t *testing.T) {
	rec := newRecorder(t)
	a := appendable{rec}
	for _, commit := range []bool{false, true} {
		app := a.AppenderV2(context.Background())
		for i := range 4500 {
			if _, err := app.Append(0, labels.FromStrings("__name__", "m", "i", fmt.Sprint(i)), 0, 1, float64(i), nil, nil, storage.AppendV2Options{}); err != nil {
				t.Fatal(err)
			}
		}
		if commit {
			if err := app.Commit(); err != nil {
				t.Fatal(err)
			}
		} else if err := app.Rollback(); err != nil {
			t.Fatal(err)
		}
	}
	if len(rec.series) != 4500 {
		t.Fatalf("%d series buffered, want the 4500 of the committed scrape only", len(rec.series))
	}
	for i, s := range rec.series {
		if s.Samples[0].Value != float64(i) {
			t.Fatalf("series %d holds %v, want %d (order kept)", i, s.Samples[0].Value, i)
		}
	}
}
