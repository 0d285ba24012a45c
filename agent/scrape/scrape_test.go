package scrape

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	promscrape "github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
)

type recorder struct {
	mu     sync.Mutex
	series []prompb.TimeSeries
}

func (r *recorder) Write(_ string, ts []prompb.TimeSeries) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Write's contract: ts and its slices are the caller's again once
	// Write returns, so keep copies.
	for _, t := range ts {
		r.series = append(r.series, prompb.TimeSeries{Labels: slices.Clone(t.Labels), Samples: slices.Clone(t.Samples)})
	}
	return nil
}
func (r *recorder) Unsupported(string, string, int) {}

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
	rec := &recorder{}
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
	// The scrape manager named the target in each appender's context.
	if n := m.app.sizes.len(); n != 1 {
		t.Errorf("scrape sizes remembered for %d targets, want 1", n)
	}
}

// discardWriter is a Writer that keeps nothing, as the sink keeps nothing
// of ts once it has encoded it; it checks what it is given.
type discardWriter struct {
	n   int
	err error
}

func (d *discardWriter) Write(_ string, ts []prompb.TimeSeries) error {
	for _, t := range ts {
		if len(t.Samples) != 1 || cap(t.Labels)-len(t.Labels) < identityLabels {
			d.err = fmt.Errorf("series %v: %d samples, %d spare label places", t.Labels, len(t.Samples), cap(t.Labels)-len(t.Labels))
		}
		d.n += len(t.Samples)
	}
	return nil
}
func (d *discardWriter) Unsupported(string, string, int) {}

func seriesSets(n int) []labels.Labels {
	sets := make([]labels.Labels, n)
	for i := range sets {
		sets[i] = labels.FromStrings("__name__", fmt.Sprintf("metric_%d", i%100), "instance", "target:9100", "job", "app", "series", fmt.Sprint(i/100))
	}
	return sets
}

func scrapeOnce(tb testing.TB, a appendable, ctx context.Context, sets []labels.Labels) {
	app := a.AppenderV2(ctx)
	for i, ls := range sets {
		if _, err := app.Append(0, ls, 0, 1763597400000, float64(i), nil, nil, storage.AppendV2Options{}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		tb.Fatal(err)
	}
}

func newTarget(addr string) *promscrape.Target {
	return promscrape.NewTarget(labels.FromStrings("__address__", addr, "job", "app"), &config.ScrapeConfig{JobName: "app"}, nil, nil)
}

// BenchmarkAppender appends one 10,000-series scrape of a target and
// commits it, the target's earlier scrapes having sized the arrays.
// Run: go test -run '^$' -bench Appender -benchmem ./agent/scrape/
func BenchmarkAppender(b *testing.B) {
	sets := seriesSets(10_000)
	w := &discardWriter{}
	a := newAppendable(w)
	tg := newTarget("target:9100")
	ctx := promscrape.ContextWithTarget(context.Background(), tg)
	for b.Loop() {
		scrapeOnce(b, a, ctx, sets)
	}
	runtime.KeepAlive(tg)
	if w.n != b.N*len(sets) || w.err != nil {
		b.Fatalf("wrote %d samples, want %d; %v", w.n, b.N*len(sets), w.err)
	}
}

// TestAppenderSizesPerTarget checks that each target's scrape is sized
// from that target's own last scrape, not a larger one's, and that a
// dropped target's entry goes with it.
func TestAppenderSizesPerTarget(t *testing.T) {
	w := &discardWriter{}
	a := newAppendable(w)
	big, small := newTarget("big:9100"), newTarget("small:9100")
	bigCtx := promscrape.ContextWithTarget(context.Background(), big)
	smallCtx := promscrape.ContextWithTarget(context.Background(), small)
	scrapeOnce(t, a, bigCtx, seriesSets(5000))
	scrapeOnce(t, a, smallCtx, seriesSets(3))
	if w.n != 5003 || w.err != nil {
		t.Fatalf("wrote %d samples, want 5003; %v", w.n, w.err)
	}
	for _, c := range []struct {
		ctx  context.Context
		want int
	}{{bigCtx, 5000}, {smallCtx, 3}, {context.Background(), 0}} {
		app := a.AppenderV2(c.ctx).(*appender)
		if app.size.series != c.want {
			t.Errorf("appender sized for %d series, want %d (the target's last scrape)", app.size.series, c.want)
		}
		if _, err := app.Append(0, labels.FromStrings("__name__", "x"), 0, 1, 1, nil, nil, storage.AppendV2Options{}); err != nil {
			t.Fatal(err)
		}
		if got := cap(app.samples); got != max(c.want, 16) {
			t.Errorf("samples array of %d places, want %d", got, max(c.want, 16))
		}
		if err := app.Rollback(); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.sizes.len(); n != 2 {
		t.Fatalf("%d targets remembered, want 2", n)
	}
	runtime.KeepAlive(small)
	big, bigCtx = nil, nil // the scrape manager drops the target
	deadline := time.Now().Add(30 * time.Second)
	for a.sizes.len() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d targets remembered after the big one was dropped, want 1", a.sizes.len())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	runtime.KeepAlive(small)
}
