package healthcode

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bureauhub/bureauhub/hub/refsvc"
	"github.com/bureauhub/bureauhub/hub/refsvc/capacity"
	"github.com/bureauhub/bureauhub/hub/refsvc/simclock"
)

// testSeedTime is the simulated time test populations are seeded at.
var testSeedTime = time.Date(2022, time.April, 11, 7, 40, 0, 0, time.UTC)

// testConfig is a small population in a fresh directory, with capacity
// that never refuses a test's load.
func testConfig(tb testing.TB) Config {
	tb.Helper()
	cfg := Config{
		StorePath:  filepath.Join(tb.TempDir(), "healthcode.db"),
		Population: 500,
		Seed:       42,
		SeedTime:   testSeedTime,
		Capacity: capacity.Config{
			Concurrency:  64,
			ServiceTime:  time.Microsecond,
			QueueLength:  1024,
			QueueTimeout: 10 * time.Second,
		},
	}
	cfg.SetDefaults()
	return cfg
}

// frozenClock reads at (it runs 10^12 times slower than real time, so it
// moves by nanoseconds during a test): colours do not drift.
func frozenClock(at time.Time) *simclock.Clock {
	return simclock.New(simclock.Config{Epoch: time.Now(), SimStart: at, Speedup: 1e-12})
}

// newTestService opens a service on cfg, closed when the test ends.
func newTestService(tb testing.TB, cfg Config) (*Service, *prometheus.Registry) {
	tb.Helper()
	reg := prometheus.NewRegistry()
	svc, err := New(cfg, slog.New(slog.DiscardHandler), reg, frozenClock(testSeedTime))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := svc.Close(); err != nil {
			tb.Error(err)
		}
	})
	return svc, reg
}

// testReplica serves one replica of svc, stopped when the test ends.
type testReplica struct {
	url string
	reg *prometheus.Registry
	h   http.Handler
}

func startReplica(tb testing.TB, svc *Service, id string) *testReplica {
	tb.Helper()
	reg := prometheus.NewRegistry()
	h, err := svc.NewReplica(refsvc.Replica{ID: id, Registerer: reg})
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(h)
	tb.Cleanup(func() {
		srv.Close()
		if err := h.(io.Closer).Close(); err != nil {
			tb.Error(err)
		}
	})
	return &testReplica{url: srv.URL, reg: reg, h: h}
}

// answer is a decoded reply: Code on 200, errorBody otherwise.
type answer struct {
	status int
	code   Code
	err    errorBody
	raw    []byte
}

func (r *testReplica) do(tb testing.TB, method, path, body string) answer {
	tb.Helper()
	req, err := http.NewRequest(method, r.url+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode}
	if a.raw, err = io.ReadAll(resp.Body); err != nil {
		tb.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		tb.Fatalf("%s %s: Content-Type %q, body %s", method, path, ct, a.raw)
	}
	target := any(&a.code)
	if a.status != http.StatusOK {
		target = &a.err
	}
	if err := json.Unmarshal(a.raw, target); err != nil {
		tb.Fatalf("%s %s: %d %s: %v", method, path, a.status, a.raw, err)
	}
	return a
}

func (r *testReplica) scan(tb testing.TB, id string) answer {
	tb.Helper()
	return r.do(tb, http.MethodGet, "/api/v1/codes/"+id, "")
}

func (r *testReplica) post(tb testing.TB, id string, at time.Time, result string) answer {
	tb.Helper()
	b, err := json.Marshal(ResultRequest{ID: id, Time: at, Result: result})
	if err != nil {
		tb.Fatal(err)
	}
	return r.do(tb, http.MethodPost, "/api/v1/results", string(b))
}

// metric is the value of the counter or gauge name with exactly labels in
// reg; it fails the test if there is no such series.
func metric(tb testing.TB, reg prometheus.Gatherer, name string, labels ...string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(want) {
				continue
			}
			for _, l := range m.GetLabel() {
				if want[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	tb.Fatalf("no series %s%v", name, labels)
	return 0
}
