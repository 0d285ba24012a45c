package refsvc_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bureauhub/bureauhub/hub/refsvc/capacity"
	"github.com/bureauhub/bureauhub/hub/refsvc/healthcode"
	"github.com/bureauhub/bureauhub/hub/refsvc/host"
	"github.com/bureauhub/bureauhub/hub/refsvc/loadgen"
)

const population = 2000

// hostHealthcode hosts the real health-code service with n replicas of
// capacity cap and returns its stable URL.
func hostHealthcode(t *testing.T, n int, cap capacity.Config) string {
	t.Helper()
	cfg := healthcode.Config{StorePath: filepath.Join(t.TempDir(), "hc.db"), Population: population, Capacity: cap}
	cfg.SetDefaults()
	if err := cfg.Validate("healthcode"); err != nil {
		t.Fatal(err)
	}
	svc, err := healthcode.New(cfg, slog.New(slog.DiscardHandler), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := host.ServiceConfig{Name: "healthcode", Tenant: "health", ListenAddress: "127.0.0.1:0",
		Replicas: n, MaxReplicas: 20, WarmUp: time.Millisecond}
	hc.SetDefaults()
	if err := hc.Validate("hosting"); err != nil {
		t.Fatal(err)
	}
	h, err := host.New([]host.Hosted{{Config: hc, Service: svc}}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("host: %v", err)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := h.Status("healthcode")
		if err != nil {
			t.Fatal(err)
		}
		if st.Ready == n {
			return "http://" + st.Address
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d replicas ready", st.Ready, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// steady offers rate scans/s open-loop for d, with no retries or
// refreshes, so what is offered does not depend on the answers.
func steady(t *testing.T, url string, rate float64, d time.Duration) *loadgen.Report {
	t.Helper()
	cfg := loadgen.Config{}
	cfg.SetDefaults()
	cfg.Scenario = loadgen.ScenarioSteady
	cfg.SteadyTarget = loadgen.TargetHealthcode
	cfg.Targets.Healthcode = url
	cfg.Rate = rate
	cfg.Duration = d
	cfg.Drain = 3 * time.Second
	cfg.Healthcode.Population = population
	cfg.Healthcode.UpdateFraction = 0
	cfg.Clients.Retries = 0
	cfg.Clients.RefreshProbability = 0
	rep, err := loadgen.Run(context.Background(), cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestCapacityScalesWithReplicas drives the same open-loop overload at 1
// and at 4 replicas of the real health-code service behind the host's
// load balancer: goodput follows the replica count, because each replica's
// capacity is fixed (4 concurrent requests of 20 ms: 200/s).
func TestCapacityScalesWithReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	cap := capacity.Config{Concurrency: 4, ServiceTime: 20 * time.Millisecond, QueueLength: 8, QueueTimeout: 200 * time.Millisecond}
	const rate, d = 1500.0, 3 * time.Second
	one := steady(t, hostHealthcode(t, 1, cap), rate, d)
	four := steady(t, hostHealthcode(t, 4, cap), rate, d)
	s1, s4 := float64(one.Totals.Succeeded), float64(four.Totals.Succeeded)
	t.Logf("offered %d/%d; succeeded 1 replica %v, 4 replicas %v (ratio %.2f); per replica limit %v/s",
		one.Totals.Offered.Total, four.Totals.Offered.Total, s1, s4, s4/s1, cap.PerSecond())
	// Both runs were overloaded (1500/s offered against 200/s and 800/s).
	if one.Totals.Failed["overloaded"] == 0 || four.Totals.Failed["overloaded"] == 0 {
		t.Fatalf("expected overload refusals in both runs: 1 replica %v, 4 replicas %v", one.Totals.Failed, four.Totals.Failed)
	}
	if ratio := s4 / s1; ratio < 3 || ratio > 5 {
		t.Fatalf("4 replicas served %.2fx what 1 replica served, want roughly 4x", ratio)
	}
	// Neither exceeds what its capacity allows over the run (+ drain).
	limit := func(n int) float64 { return float64(n) * cap.PerSecond() * (d.Seconds() + 1) }
	if s1 > limit(1) || s4 > limit(4) {
		t.Fatalf("served more than the emulated capacity allows: %v > %v or %v > %v", s1, limit(1), s4, limit(4))
	}
}

// TestTooFewReplicasViolateTheSLO offers 300 scans/s: one replica (200/s)
// violates the SLO (99% within 500 ms) while four (800/s) hold it.
func TestTooFewReplicasViolateTheSLO(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	cap := capacity.Config{Concurrency: 4, ServiceTime: 20 * time.Millisecond, QueueLength: 64, QueueTimeout: time.Second}
	const rate, d = 300.0, 4 * time.Second
	few := steady(t, hostHealthcode(t, 1, cap), rate, d)
	enough := steady(t, hostHealthcode(t, 4, cap), rate, d)
	t.Logf("1 replica: %d violation seconds of %d, p99 %.3fs, failed %v", few.Totals.ViolationSeconds, few.Totals.Seconds,
		few.Totals.Latency.P99, few.Totals.Failed)
	t.Logf("4 replicas: %d violation seconds of %d, p99 %.3fs, failed %v", enough.Totals.ViolationSeconds, enough.Totals.Seconds,
		enough.Totals.Latency.P99, enough.Totals.Failed)
	if few.Totals.ViolationSeconds < 2 {
		t.Fatalf("1 replica at 1.5x its capacity violated the SLO for %d seconds, want most of the run", few.Totals.ViolationSeconds)
	}
	if enough.Totals.ViolationSeconds != 0 {
		t.Fatalf("4 replicas at 37%% utilisation violated the SLO for %d seconds", enough.Totals.ViolationSeconds)
	}
}
