package autoscale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	promrules "github.com/prometheus/prometheus/rules"

	"github.com/bureauhub/bureauhub/hub/forecast"
	"github.com/bureauhub/bureauhub/hub/refsvc/host"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
func (c *fakeClock) WallDuration(d time.Duration) time.Duration { return d }
func (c *fakeClock) SimDuration(d time.Duration) time.Duration  { return d }

// fakeActuator fails its next fail Scale calls.
type fakeActuator struct {
	mu       sync.Mutex
	desired  int
	ready    int
	fail     int
	scales   []int
	currents int
}

func (a *fakeActuator) Current(context.Context) (int, int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.currents++
	return a.desired, a.ready, nil
}

func (a *fakeActuator) Scale(_ context.Context, n int) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail > 0 {
		a.fail--
		return errors.New("api server unavailable")
	}
	a.scales = append(a.scales, n)
	a.desired = n
	return nil
}

type fakeNotifier struct {
	mu     sync.Mutex
	alerts []promrules.Alert
}

func (n *fakeNotifier) Notify(_ context.Context, tenant string, alerts []*promrules.Alert) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range alerts {
		n.alerts = append(n.alerts, *a)
	}
}

// world is what the fakes observe: rates by tenant and forecasts.
type world struct {
	mu       sync.Mutex
	rate     map[string]float64
	latency  map[string]float64
	forecast map[string]forecast.Forecast
}

func (w *world) query(_ context.Context, tenant, expr string, _ time.Time) (float64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if strings.Contains(expr, "latency") {
		if v, ok := w.latency[tenant]; ok {
			return v, nil
		}
		return math.NaN(), nil
	}
	v, ok := w.rate[tenant]
	if !ok {
		return 0, errors.New("no data")
	}
	return v, nil
}

func (w *world) forecastFor(tenant, signal string) (forecast.Forecast, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f, ok := w.forecast[tenant+"/"+signal]
	return f, ok
}

func testTarget(name, tenant string, mode Mode) TargetConfig {
	return TargetConfig{Name: name, Tenant: tenant, Actuator: ActuatorConfig{Kind: KindWebhook, Webhook: WebhookConfig{URL: "http://127.0.0.1:1/"}},
		Signal: name + "_rate", RateExpr: "sum(rate(requests_total[1m]))", LatencyExpr: "p99_latency", SLOLatency: 500 * time.Millisecond,
		Mode: mode, Min: 1, Max: 20, TargetUtilization: 0.5, Capacity: CapacityConfig{DefaultPerReplica: 10},
		RetryBackoff: time.Second}
}

type harness struct {
	a        *Autoscaler
	clock    *fakeClock
	world    *world
	reg      *prometheus.Registry
	notifier *fakeNotifier
	sleeps   []time.Duration
}

func newHarness(t testing.TB, cfg Config, deps Deps) *harness {
	t.Helper()
	cfg.SetDefaults()
	if err := cfg.Validate("autoscale"); err != nil {
		t.Fatal(err)
	}
	h := &harness{clock: &fakeClock{t: t0}, reg: prometheus.NewRegistry(), notifier: &fakeNotifier{},
		world: &world{rate: map[string]float64{}, latency: map[string]float64{}, forecast: map[string]forecast.Forecast{}}}
	deps.Query, deps.Forecast, deps.Clock, deps.Notifier = h.world.query, h.world.forecastFor, h.clock, h.notifier
	a, err := New(cfg, slog.New(slog.DiscardHandler), h.reg, deps)
	if err != nil {
		t.Fatal(err)
	}
	a.sleep = func(_ context.Context, d time.Duration) error { h.sleeps = append(h.sleeps, d); return nil }
	h.a = a
	return h
}

func surge(tenant, signal string) forecast.Forecast {
	f := *fc(0.05, 8, 9, 30, 12, 100)
	f.Tenant, f.Signal = tenant, signal
	return f
}

func TestAutoscalerActsAheadOfForecastOnHostedService(t *testing.T) {
	// Replicas take 31 s to become ready: the window is 46 s and covers the
	// surge at t0+30s (with the configured 30 s it would too, with 6 s not).
	fh := &fakeHost{desired: 2, ready: 2, replicas: []host.ReplicaStatus{{StartedAt: t0, ReadyAt: t0.Add(31 * time.Second)}}}
	tc := testTarget("booking", "visa", ModeOn)
	tc.Actuator, tc.Service, tc.LearnWarmUp = ActuatorConfig{}, "booking", true
	h := newHarness(t, Config{Targets: []TargetConfig{tc}}, Deps{Host: fh})
	h.world.rate["visa"] = 8
	h.world.forecast["visa/booking_rate"] = surge("visa", "booking_rate")
	ds := h.a.Sync(context.Background())
	d := ds["booking"]
	if d.Replicas != 6 || !d.Act || d.Explanation.Term != TermForecast || d.Explanation.Signal != "booking_rate" {
		t.Fatalf("decision %+v", d)
	}
	if len(fh.scales) != 1 || fh.scales[0] != 6 {
		t.Fatalf("host scaled %v, want [6]", fh.scales)
	}
	for name, want := range map[string]float64{
		"bureauhub_autoscale_recommended_replicas": 6,
		"bureauhub_autoscale_reactive_floor":       2,
		"bureauhub_autoscale_capacity_per_replica": 10,
		"bureauhub_autoscale_current_replicas":     2,
		"bureauhub_autoscale_forecast_replicas":    6,
		"bureauhub_autoscale_warm_up_seconds":      31, // learned from the host
		"bureauhub_autoscale_failing":              0,
	} {
		if got := gaugeValue(t, h.reg, name, "booking", "visa"); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := testutil.ToFloat64(h.a.actions.WithLabelValues("booking", "visa", OutcomeOK)); got != 1 {
		t.Errorf("actions ok = %v", got)
	}
}

func gaugeValue(t testing.TB, reg *prometheus.Registry, name, target, tenant string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			l := map[string]string{}
			for _, lp := range m.Label {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["target"] == target && l["tenant"] == tenant {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no %s{target=%q,tenant=%q}", name, target, tenant)
	return 0
}

func TestAutoscalerDryRunRecordsWithoutActing(t *testing.T) {
	act := &fakeActuator{desired: 2, ready: 2}
	h := newHarness(t, Config{Targets: []TargetConfig{testTarget("booking", "visa", ModeDryRun)}},
		Deps{Actuators: map[string]Actuator{"booking": act}})
	h.world.rate["visa"] = 8
	h.world.forecast["visa/booking_rate"] = surge("visa", "booking_rate")
	d := h.a.Sync(context.Background())["booking"]
	if d.Replicas != 6 || d.Act || d.Mode != ModeDryRun {
		t.Fatalf("decision %+v", d)
	}
	if len(act.scales) != 0 {
		t.Fatalf("dry-run scaled %v", act.scales)
	}
	if got := testutil.ToFloat64(h.a.actions.WithLabelValues("booking", "visa", OutcomeDryRun)); got != 1 {
		t.Errorf("dry_run actions = %v", got)
	}
	if got := gaugeValue(t, h.reg, "bureauhub_autoscale_recommended_replicas", "booking", "visa"); got != 6 {
		t.Errorf("recommended = %v", got)
	}
}

func TestAutoscalerModeOffDoesNothing(t *testing.T) {
	act := &fakeActuator{desired: 2, ready: 2}
	h := newHarness(t, Config{Targets: []TargetConfig{testTarget("booking", "visa", ModeOff)}},
		Deps{Actuators: map[string]Actuator{"booking": act}})
	h.world.rate["visa"] = 80
	if ds := h.a.Sync(context.Background()); len(ds) != 0 {
		t.Fatalf("decisions %+v", ds)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.a.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if act.currents != 0 || len(act.scales) != 0 {
		t.Fatalf("mode off touched the actuator: %d reads, scales %v", act.currents, act.scales)
	}
}

func TestAutoscalerRetriesCountsAndAlerts(t *testing.T) {
	t.Run("recovers on retry", func(t *testing.T) {
		act := &fakeActuator{desired: 2, ready: 2, fail: 1}
		h := newHarness(t, Config{Targets: []TargetConfig{testTarget("booking", "visa", ModeOn)}},
			Deps{Actuators: map[string]Actuator{"booking": act}})
		h.world.rate["visa"] = 40
		h.a.Sync(context.Background())
		if len(act.scales) != 1 || act.scales[0] != 8 || len(h.sleeps) != 1 || h.sleeps[0] != time.Second {
			t.Fatalf("scales %v sleeps %v", act.scales, h.sleeps)
		}
		if got := testutil.ToFloat64(h.a.failures.WithLabelValues("booking", "visa")); got != 1 {
			t.Errorf("failures = %v", got)
		}
		if len(h.a.Failing()) != 0 || len(h.notifier.alerts) != 0 {
			t.Errorf("failing %v alerts %v", h.a.Failing(), h.notifier.alerts)
		}
	})
	t.Run("fails, alerts, resolves", func(t *testing.T) {
		act := &fakeActuator{desired: 2, ready: 2, fail: 3}
		h := newHarness(t, Config{Targets: []TargetConfig{testTarget("booking", "visa", ModeOn)}},
			Deps{Actuators: map[string]Actuator{"booking": act}})
		h.world.rate["visa"] = 40
		ctx := context.Background()
		h.a.Sync(ctx)
		if len(act.scales) != 0 || fmt.Sprint(h.sleeps) != "[1s 2s]" {
			t.Fatalf("scales %v sleeps %v, want none and [1s 2s]", act.scales, h.sleeps)
		}
		if got := testutil.ToFloat64(h.a.failures.WithLabelValues("booking", "visa")); got != 3 {
			t.Errorf("failures = %v, want 3 attempts", got)
		}
		if got := testutil.ToFloat64(h.a.actions.WithLabelValues("booking", "visa", OutcomeFailed)); got != 1 {
			t.Errorf("failed actions = %v", got)
		}
		if err := h.a.Failing()["booking"]; err == nil || !strings.Contains(err.Error(), "api server unavailable") {
			t.Fatalf("Failing = %v", h.a.Failing())
		}
		if got := gaugeValue(t, h.reg, "bureauhub_autoscale_failing", "booking", "visa"); got != 1 {
			t.Errorf("failing gauge = %v", got)
		}
		if len(h.notifier.alerts) != 1 || h.notifier.alerts[0].State != promrules.StateFiring ||
			h.notifier.alerts[0].Labels.Get("alertname") != AlertName || h.notifier.alerts[0].Labels.Get("target") != "booking" ||
			h.notifier.alerts[0].Labels.Get("bureau") != "visa" {
			t.Fatalf("alerts %+v", h.notifier.alerts)
		}
		if s := h.a.Recommendations(nil); s[0].Failing == "" {
			t.Errorf("recommendations do not show the failure: %+v", s[0])
		}
		h.clock.Advance(15 * time.Second)
		h.a.Sync(ctx) // succeeds now
		if len(act.scales) != 1 || len(h.a.Failing()) != 0 {
			t.Fatalf("scales %v failing %v", act.scales, h.a.Failing())
		}
		last := h.notifier.alerts[len(h.notifier.alerts)-1]
		if last.State != promrules.StateInactive || last.ResolvedAt.IsZero() {
			t.Fatalf("last alert %+v, want resolved", last)
		}
	})
}

func TestRecommendationsAPI(t *testing.T) {
	h := newHarness(t, Config{Targets: []TargetConfig{testTarget("booking", "visa", ModeOn), testTarget("scan", "health", ModeDryRun)}},
		Deps{Actuators: map[string]Actuator{"booking": &fakeActuator{desired: 2, ready: 2}, "scan": &fakeActuator{desired: 1, ready: 1}}})
	h.world.rate["visa"], h.world.rate["health"] = 40, 3
	h.a.Sync(context.Background())
	authz := func(r *http.Request) (func(string) bool, error) {
		switch r.Header.Get("Authorization") {
		case "Bearer visa":
			return func(t string) bool { return t == "visa" }, nil
		case "Bearer data":
			return func(string) bool { return true }, nil
		}
		return nil, errors.New("bad token")
	}
	srv := httptest.NewServer(h.a.Handler(authz))
	defer srv.Close()
	get := func(path, token string) (int, []TargetStatus) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Data []TargetStatus `json:"data"`
		}
		b, _ := io.ReadAll(resp.Body)
		json.Unmarshal(b, &body)
		return resp.StatusCode, body.Data
	}
	code, data := get(RecommendationsPath, "visa")
	if code != 200 || len(data) != 1 || data[0].Target != "booking" || data[0].Recommended != 8 || data[0].ReactiveFloor != 8 ||
		data[0].Decision == nil || data[0].Decision.Explanation.Term != TermReactive {
		t.Fatalf("visa: %d %+v", code, data)
	}
	if code, data := get(RecommendationsPath, "data"); code != 200 || len(data) != 2 {
		t.Fatalf("data: %d %+v", code, data)
	}
	if code, data := get(RecommendationsPath+"?tenant=health", "data"); code != 200 || len(data) != 1 || data[0].Tenant != "health" {
		t.Fatalf("data, tenant=health: %d %+v", code, data)
	}
	if code, _ := get(RecommendationsPath+"?tenant=health", "visa"); code != http.StatusForbidden {
		t.Fatalf("visa reading health: %d", code)
	}
	if code, _ := get(RecommendationsPath, "nobody"); code != http.StatusUnauthorized {
		t.Fatalf("bad token: %d", code)
	}
	if code, _ := get(ActionsPath, "visa"); code != http.StatusServiceUnavailable {
		t.Fatalf("actions without an audit trail: %d", code)
	}
}

func TestAuditQueueIsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := NewAudit(nil, "db", "autoscale_events", 2, time.Second, slog.New(slog.DiscardHandler), reg)
	for range 5 {
		a.Record(Event{Tenant: "visa"})
	}
	if got := testutil.ToFloat64(a.dropped); got != 3 {
		t.Fatalf("dropped = %v, want 3", got)
	}
}

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		return Config{Targets: []TargetConfig{{Name: "booking", Tenant: "visa", Service: "booking", RateExpr: "x",
			Capacity: CapacityConfig{DefaultPerReplica: 10}}}}
	}
	tests := []struct {
		name  string
		mod   func(c *Config)
		field string
	}{
		{"valid", func(*Config) {}, ""},
		{"no tenant", func(c *Config) { c.Targets[0].Tenant = "" }, "autoscale.targets[0].tenant"},
		{"no rate", func(c *Config) { c.Targets[0].RateExpr = "" }, "autoscale.targets[0].rate_expr"},
		{"bad mode", func(c *Config) { c.Targets[0].Mode = "maybe" }, "autoscale.targets[0].mode"},
		{"max below min", func(c *Config) { c.Targets[0].Min, c.Targets[0].Max = 5, 3 }, "autoscale.targets[0].max"},
		{"utilization", func(c *Config) { c.Targets[0].TargetUtilization = 1.5 }, "autoscale.targets[0].target_utilization"},
		{"no capacity", func(c *Config) { c.Targets[0].Capacity.DefaultPerReplica = 0 }, "autoscale.targets[0].capacity.default_per_replica"},
		{"learn without latency", func(c *Config) { c.Targets[0].Capacity.Learn = true }, "autoscale.targets[0].capacity.learn"},
		{"no actuator", func(c *Config) { c.Targets[0].Service = "" }, "autoscale.targets[0].actuator.kind"},
		{"k8s without namespace", func(c *Config) {
			c.Targets[0].Service = ""
			c.Targets[0].Actuator = ActuatorConfig{Kind: KindKubernetes, Kubernetes: KubernetesConfig{APIServer: "https://k8s:6443", Deployment: "b"}}
		}, "autoscale.targets[0].actuator.kubernetes.namespace"},
		{"webhook url", func(c *Config) {
			c.Targets[0].Service = ""
			c.Targets[0].Actuator = ActuatorConfig{Kind: KindWebhook, Webhook: WebhookConfig{URL: "ftp://x"}}
		}, "autoscale.targets[0].actuator.webhook.url"},
		{"duplicate", func(c *Config) { c.Targets = append(c.Targets, c.Targets[0]) }, "autoscale.targets[1].name"},
		{"audit table", func(c *Config) { c.AuditTable = "a;drop" }, "autoscale.audit_table"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mod(&c)
			c.SetDefaults()
			err := c.Validate("autoscale")
			if tt.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				tc := c.Targets[0]
				if tc.Mode != ModeDryRun || tc.SyncInterval != 15*time.Second || tc.ScaleDownStabilization != 5*time.Minute || tc.Actuator.Kind != KindHosted {
					t.Errorf("defaults %+v", tc)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.field+":") {
				t.Fatalf("err = %v, want it to name %s", err, tt.field)
			}
		})
	}
}

func TestRunSyncsUntilCancelled(t *testing.T) {
	act := &fakeActuator{desired: 2, ready: 2}
	tc := testTarget("booking", "visa", ModeOn)
	tc.SyncInterval = 5 * time.Millisecond
	h := newHarness(t, Config{Targets: []TargetConfig{tc}}, Deps{Actuators: map[string]Actuator{"booking": act}})
	h.world.mu.Lock()
	h.world.rate["visa"] = 40
	h.world.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.a.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		act.mu.Lock()
		n, scales := act.currents, slices.Clone(act.scales)
		act.mu.Unlock()
		if n >= 3 {
			if !slices.Equal(scales, []int{8}) {
				t.Fatalf("scales %v, want [8]", scales)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d syncs", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// TestAutoscalerActsOnlyOnOwnedTargets: in a hub cluster, Run syncs only
// the targets this hub owns, keyed with their signal's forecast.OwnerKey.
func TestAutoscalerActsOnlyOnOwnedTargets(t *testing.T) {
	mine, theirs := &fakeActuator{desired: 2, ready: 2}, &fakeActuator{desired: 2, ready: 2}
	owns := func(key string) bool { return key == forecast.OwnerKey("visa", "mine_rate") }
	h := newHarness(t, Config{Targets: []TargetConfig{testTarget("mine", "visa", ModeOn), testTarget("theirs", "visa", ModeOn)}},
		Deps{Actuators: map[string]Actuator{"mine": mine, "theirs": theirs}, Owns: owns})
	h.world.rate["visa"] = 80
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.a.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if mine.currents == 0 || len(mine.scales) == 0 {
		t.Fatalf("the owned target was not synced: %d reads, scales %v", mine.currents, mine.scales)
	}
	if theirs.currents != 0 || len(theirs.scales) != 0 {
		t.Fatalf("another hub's target was synced: %d reads, scales %v", theirs.currents, theirs.scales)
	}
}
