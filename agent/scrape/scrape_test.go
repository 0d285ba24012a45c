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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
)

type recorder struct {
	mu     sync.Mutex
	series []prompb.TimeSeries
}

func (r *recorder) Write(_ string, ts []prompb.TimeSeries) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.series = append(r.series, ts...)
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
}
