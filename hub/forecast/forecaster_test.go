package forecast

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeQuery serves synthetic signals by expression, on the requested
// grid, and records the calls.
type fakeQuery struct {
	mu      sync.Mutex
	signals map[string]synth
	calls   []fakeCall
	fail    error
}

type fakeCall struct {
	expr       string
	start, end time.Time
}

func (q *fakeQuery) query(_ context.Context, _, expr string, start, end time.Time, step time.Duration) (Series, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls = append(q.calls, fakeCall{expr, start, end})
	if q.fail != nil {
		return Series{}, q.fail
	}
	g, ok := q.signals[expr]
	if !ok {
		return Series{}, errors.New("unknown expr")
	}
	s := Series{Start: start, Step: step}
	for t := start; !t.After(end); t = t.Add(step) {
		s.Values = append(s.Values, g.at(epoch, t))
	}
	return s, nil
}

func (q *fakeQuery) callsFor(expr string) []fakeCall {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []fakeCall
	for _, c := range q.calls {
		if c.expr == expr {
			out = append(out, c)
		}
	}
	return out
}

// newTestForecaster builds a Forecaster over two signals, a real-time day
// of health-code scans (tenant a) and a 5-minute compressed day of slot
// refreshes (tenant b), with its clock at now.
func newTestForecaster(t testing.TB, now time.Time) (*Forecaster, *fakeQuery, *prometheus.Registry) {
	t.Helper()
	q := &fakeQuery{signals: map[string]synth{
		"scans":    {period: 24 * time.Hour, step: time.Minute, base: 100, surge: true, growth: 0.02, noise: 0.05, seed: 1},
		"releases": {period: 300 * time.Second, step: time.Second, base: 50, surge: true, noise: 0.05, seed: 2},
	}}
	cfg := Config{
		Signals: []SignalConfig{
			{Name: "healthcode_scans", Tenant: "a", Expr: "scans", Interval: 50 * time.Millisecond, Options: Options{Period: 24 * time.Hour}},
			{Name: "visa_refreshes", Tenant: "b", Expr: "releases", Interval: 50 * time.Millisecond, Options: Options{Period: 300 * time.Second}},
		},
		MaxPointsPerQuery: 5000,
	}
	reg := prometheus.NewRegistry()
	f, err := New(cfg, q.query, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	f.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	return f, q, reg
}

func TestForecasterRun(t *testing.T) {
	// 07:25 on day 9: the scans forecast must hold the 07:40 surge.
	now := epoch.Add(8*24*time.Hour + 7*time.Hour + 25*time.Minute + 10*time.Second)
	f, q, reg := newTestForecaster(t, now)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()

	deadline := time.After(5 * time.Second)
	for len(f.All()) < 2 || len(q.callsFor("scans")) < 6 {
		select {
		case <-deadline:
			t.Fatalf("after 5s: %d forecasts, %d scan queries", len(f.All()), len(q.callsFor("scans")))
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}

	scans, ok := f.Latest("healthcode_scans")
	if !ok || scans.Signal != "healthcode_scans" || scans.Tenant != "a" || !scans.Made.Equal(now) {
		t.Fatalf("scans forecast %+v, %v", scans, ok)
	}
	if scans.HistoryPoints != 8*1440 || len(scans.Values) != 30 || scans.Step != time.Minute {
		t.Errorf("scans: %d history points, %d values at %v; want 11520, 30 at 1m", scans.HistoryPoints, len(scans.Values), scans.Step)
	}
	if want := now.Truncate(time.Minute).Add(time.Minute); !scans.Start.Equal(want) {
		t.Errorf("scans start %v, want %v", scans.Start, want)
	}
	if i := argmax(scans.Values); scans.Start.Add(time.Duration(i)*time.Minute) != epoch.Add(8*24*time.Hour+7*time.Hour+40*time.Minute) {
		t.Errorf("scans peak at +%d steps, want 07:40", i)
	}
	// 11520 points in queries of at most 5000.
	calls := q.callsFor("scans")[:3]
	if !calls[0].end.Add(time.Minute).Equal(calls[1].start) || !calls[2].end.Equal(now.Truncate(time.Minute)) {
		t.Errorf("history not read in consecutive chunks ending now: %+v", calls)
	}
	if _, ok := f.Latest("visa_refreshes"); !ok {
		t.Error("no forecast for the compressed signal")
	}
	if _, ok := f.Latest("nope"); ok {
		t.Error("forecast for an unknown signal")
	}

	for _, c := range []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"history points", f.metrics.historyPoints.WithLabelValues("healthcode_scans", "a"), 11520},
		{"chosen model", f.metrics.model.WithLabelValues("healthcode_scans", "a", scans.Model), 1},
		{"next value", f.metrics.value.WithLabelValues("healthcode_scans", "a", "next"), scans.Values[0]},
		{"backtest mape", f.metrics.mape.WithLabelValues("healthcode_scans", "a", "backtest"), scans.MAPE},
		{"failures", f.metrics.fitFailures.WithLabelValues("healthcode_scans", "a"), 0},
	} {
		if got := testutil.ToFloat64(c.c); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	peak, upper, _ := scans.Peak(scans.Start, scans.Start.Add(time.Hour))
	if got := testutil.ToFloat64(f.metrics.value.WithLabelValues("healthcode_scans", "a", "peak")); got != peak || upper < peak {
		t.Errorf("peak metric %v, want %v (upper %v)", got, peak, upper)
	}
	if n, err := testutil.GatherAndCount(reg, "bureauhub_forecast_model"); err != nil || n != 2*len(modelNames) {
		t.Errorf("bureauhub_forecast_model has %d series (%v), want %d", n, err, 2*len(modelNames))
	}
}

// TestForecasterRealisedAccuracy refits, moves the clock past the horizon
// and refits again: the first forecast is scored against the actuals.
func TestForecasterRealisedAccuracy(t *testing.T) {
	now := epoch.Add(8*24*time.Hour + 7*time.Hour + 25*time.Minute)
	f, _, _ := newTestForecaster(t, now)
	var mu sync.Mutex
	f.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	first, err := f.Refit(t.Context(), "healthcode_scans")
	if err != nil {
		t.Fatal(err)
	}
	if acc, _ := f.Accuracy("healthcode_scans"); acc.Scored != 0 || !math.IsNaN(acc.MAPE) {
		t.Fatalf("accuracy before any horizon passed: %+v", acc)
	}
	mu.Lock()
	now = now.Add(40 * time.Minute)
	mu.Unlock()
	if _, err := f.Refit(t.Context(), "healthcode_scans"); err != nil {
		t.Fatal(err)
	}
	acc, _ := f.Accuracy("healthcode_scans")
	t.Logf("realised %+v (backtest MAPE %.3f)", acc, first.MAPE)
	// The horizon held the surge; 5% noise: as in TestFitSeasonalSurge.
	if acc.Scored != 1 || acc.MAPE > 0.15 || acc.PeakError > 0.2 {
		t.Errorf("realised accuracy %+v, want 1 scored with MAPE < 15%%, peak error < 20%%", acc)
	}
	if got := testutil.ToFloat64(f.metrics.mape.WithLabelValues("healthcode_scans", "a", "realised")); got != acc.MAPE {
		t.Errorf("realised MAPE metric %v, want %v", got, acc.MAPE)
	}
}

func TestForecasterQueryFailure(t *testing.T) {
	f, q, _ := newTestForecaster(t, epoch.Add(9*24*time.Hour))
	q.fail = errors.New("clickhouse down")
	if _, err := f.Refit(t.Context(), "visa_refreshes"); err == nil || !strings.Contains(err.Error(), "clickhouse down") {
		t.Errorf("err %v", err)
	}
	if got := testutil.ToFloat64(f.metrics.fitFailures.WithLabelValues("visa_refreshes", "b")); got != 1 {
		t.Errorf("failures %v, want 1", got)
	}
	if _, ok := f.Latest("visa_refreshes"); ok {
		t.Error("forecast after a failed fit")
	}
	if _, err := f.Refit(t.Context(), "nope"); err == nil {
		t.Error("refit of an unknown signal")
	}
}

func TestHandler(t *testing.T) {
	f, _, _ := newTestForecaster(t, epoch.Add(9*24*time.Hour))
	for _, s := range []string{"healthcode_scans", "visa_refreshes"} {
		if _, err := f.Refit(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	// Tenant from a header stands in for the hub's authentication.
	h := f.Handler(func(r *http.Request, tenant string) bool {
		return r.Header.Get("X-Tenant") == tenant || r.Header.Get("X-Tenant") == "admin"
	})
	for _, tc := range []struct {
		name, tenant, query string
		code                int
		signals             []string
	}{
		{"admin sees all", "admin", "", 200, []string{"healthcode_scans", "visa_refreshes"}},
		{"tenant sees its own", "a", "", 200, []string{"healthcode_scans"}},
		{"named signal", "b", "?signal=visa_refreshes", 200, []string{"visa_refreshes"}},
		{"other tenant's signal", "a", "?signal=visa_refreshes", 404, nil},
		{"unknown signal", "admin", "?signal=nope", 404, nil},
		{"no tenant", "z", "", 200, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/api/v1/forecasts"+tc.query, nil)
			r.Header.Set("X-Tenant", tc.tenant)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.code {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.code, w.Body)
			}
			if tc.code != 200 {
				return
			}
			var body ForecastsResponse
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range body.Data {
				got = append(got, d.Signal)
				if len(d.Values) == 0 || len(d.Lower) != len(d.Values) || d.Model == "" || d.MAPE == nil || d.StepSeconds <= 0 {
					t.Errorf("incomplete forecast %+v", d)
				}
			}
			if body.Status != "success" || strings.Join(got, ",") != strings.Join(tc.signals, ",") {
				t.Errorf("status %s signals %v, want %v", body.Status, got, tc.signals)
			}
		})
	}
	r := httptest.NewRequest(http.MethodPost, "/api/v1/forecasts", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", w.Code)
	}
}

func TestConfigValidate(t *testing.T) {
	good := func() Config {
		return Config{Signals: []SignalConfig{{Name: "s", Tenant: "a", Expr: "up", Options: Options{Period: 300 * time.Second}}}}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"no name", func(c *Config) { c.Signals[0].Name = "" }, "forecast.signals[0].name"},
		{"no tenant", func(c *Config) { c.Signals[0].Tenant = "" }, "forecast.signals[0].tenant"},
		{"no expr", func(c *Config) { c.Signals[0].Expr = "" }, "forecast.signals[0].expr"},
		{"short history", func(c *Config) { c.Signals[0].History = time.Minute }, "forecast.signals[0].history"},
		{"step not dividing", func(c *Config) { c.Signals[0].Step = 7 * time.Second }, "forecast.signals[0].period"},
		{"duplicate", func(c *Config) { c.Signals = append(c.Signals, c.Signals[0]) }, "forecast.signals[1].name"},
		{"accuracy window", func(c *Config) { c.AccuracyWindow = -1 }, "forecast.accuracy_window"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.edit(&c)
			_, err := New(c, (&fakeQuery{}).query, nil, nil)
			if err == nil || !strings.HasPrefix(err.Error(), tc.field+":") {
				t.Errorf("err %v, want one naming %s", err, tc.field)
			}
		})
	}
	c := good()
	c.SetDefaults()
	s := c.Signals[0]
	if s.Step != time.Second || s.Horizon != 6*time.Second || s.History != 40*time.Minute || s.Interval != time.Second {
		t.Errorf("compressed defaults: step %v horizon %v history %v interval %v", s.Step, s.Horizon, s.History, s.Interval)
	}
	d := SignalConfig{Options: Options{Period: 24 * time.Hour}}
	d.SetDefaults()
	if d.Step != time.Minute || d.Horizon != 30*time.Minute || d.History != 8*24*time.Hour || d.Interval != 5*time.Minute {
		t.Errorf("daily defaults: step %v horizon %v history %v interval %v", d.Step, d.Horizon, d.History, d.Interval)
	}
	if _, err := New(good(), nil, nil, nil); err == nil {
		t.Error("nil query accepted")
	}
}
