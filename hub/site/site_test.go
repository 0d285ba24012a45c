package site

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	promrules "github.com/prometheus/prometheus/rules"
)

type recorder struct {
	mu   sync.Mutex
	sent []sent
}

type sent struct {
	tenant string
	alert  promrules.Alert
}

func (r *recorder) Notify(_ context.Context, tenant string, alerts []*promrules.Alert) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range alerts {
		r.sent = append(r.sent, sent{tenant, *a})
	}
}

func (r *recorder) take() []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.sent
	r.sent = nil
	return out
}

func newWatcher(t *testing.T) (*Watcher, *recorder, *time.Time) {
	t.Helper()
	cfg := Config{SilenceAfter: time.Minute, CatchUpLag: 30 * time.Second, Interval: 10 * time.Second, ForgetAfter: time.Hour}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	w := New(cfg, rec, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	now := time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
	w.now = func() time.Time { return now }
	return w, rec, &now
}

func TestOneAlertPerBureauWhenAllAgentsSilent(t *testing.T) {
	w, rec, now := newWatcher(t)
	deliver := func(tenant, id string, lag time.Duration) {
		w.Observe(tenant, id, now.Add(-lag).UnixMilli(), *now)
	}
	for _, id := range []string{"h1", "h2", "h3"} {
		deliver("health", id, time.Second)
	}
	deliver("consular", "c1", time.Second)
	w.Evaluate(context.Background())
	if got := rec.take(); len(got) != 0 {
		t.Fatalf("alerts with every agent live: %+v", got)
	}

	// Two of health's three agents stop: not a site outage.
	*now = now.Add(50 * time.Second)
	deliver("health", "h3", time.Second)
	deliver("consular", "c1", time.Second)
	*now = now.Add(30 * time.Second)
	w.Evaluate(context.Background())
	if got := rec.take(); len(got) != 0 {
		t.Fatalf("alert while one health agent is live: %+v", got)
	}

	// All of health's agents are silent: exactly one alert, for health.
	*now = now.Add(45 * time.Second)
	deliver("consular", "c1", time.Second)
	w.Evaluate(context.Background())
	got := rec.take()
	if len(got) != 1 || got[0].tenant != "health" || got[0].alert.State != promrules.StateFiring ||
		got[0].alert.Labels.Get("alertname") != AlertName || got[0].alert.Labels.Get("bureau") != "health" {
		t.Fatalf("want one firing BureauUnreachable for health, got %+v", got)
	}
	if v := testutil.ToFloat64(w.unreachable.WithLabelValues("health")); v != 1 {
		t.Fatalf("bureauhub_bureau_unreachable{health} = %v", v)
	}

	// While it lasts, the same alert is resent (one group, no new alerts).
	*now = now.Add(10 * time.Second)
	w.Evaluate(context.Background())
	got = rec.take()
	if len(got) != 1 || got[0].alert.State != promrules.StateFiring || !got[0].alert.ValidUntil.After(*now) {
		t.Fatalf("resend: %+v", got)
	}

	// The agents reconnect and send their backlog: still unreachable,
	// because buffered data is not current.
	*now = now.Add(10 * time.Second)
	for _, id := range []string{"h1", "h2", "h3"} {
		deliver("health", id, 3*time.Minute)
	}
	w.Evaluate(context.Background())
	if got := rec.take(); len(got) != 1 || got[0].alert.State != promrules.StateFiring {
		t.Fatalf("during backlog delivery: %+v", got)
	}

	// One agent has caught up: resolved, once.
	*now = now.Add(5 * time.Second)
	deliver("health", "h2", 2*time.Second)
	w.Evaluate(context.Background())
	got = rec.take()
	if len(got) != 1 || got[0].alert.State != promrules.StateInactive || got[0].alert.ResolvedAt.IsZero() {
		t.Fatalf("want one resolved alert, got %+v", got)
	}
	w.Evaluate(context.Background())
	if got := rec.take(); len(got) != 0 {
		t.Fatalf("resolved alert sent again: %+v", got)
	}
	if v := testutil.ToFloat64(w.agentsG.WithLabelValues("health", "live")); v != 1 {
		t.Fatalf("live health agents = %v, want 1", v)
	}
}

func TestSeededAgentsAndForgetting(t *testing.T) {
	w, rec, now := newWatcher(t)
	// Known from ClickHouse, silent since before the hub started.
	w.Seed("transport", "t1", now.Add(-5*time.Minute))
	w.Evaluate(context.Background())
	if got := rec.take(); len(got) != 1 || got[0].tenant != "transport" {
		t.Fatalf("seeded silent bureau: %+v", got)
	}
	// After forget_after the agent is dropped and the alert resolves.
	*now = now.Add(2 * time.Hour)
	w.Evaluate(context.Background())
	got := rec.take()
	if len(got) != 1 || got[0].alert.State != promrules.StateInactive {
		t.Fatalf("forgotten bureau: %+v", got)
	}
	if len(w.Agents("")) != 0 {
		t.Fatalf("agents after forget_after: %+v", w.Agents(""))
	}
}

func TestConfigValidateNamesField(t *testing.T) {
	c := Config{}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.ForgetAfter = time.Second
	if err := c.Validate(); err == nil || err.Error()[:18] != "site.forget_after:" {
		t.Fatalf("got %v", err)
	}
}

// TestResolveAfterHoldsTheAlertWhileRulesCatchUp: once an agent is back,
// BureauUnreachable keeps firing (and inhibiting) for resolve_after, then
// resolves once; a bureau that goes silent again meanwhile keeps firing.
func TestResolveAfterHoldsTheAlertWhileRulesCatchUp(t *testing.T) {
	w, rec, now := newWatcher(t)
	w.cfg.ResolveAfter = 20 * time.Second
	w.Observe("health", "h1", now.UnixMilli(), *now)
	*now = now.Add(2 * time.Minute)
	w.Evaluate(context.Background())
	if got := rec.take(); len(got) != 1 || got[0].alert.State != promrules.StateFiring {
		t.Fatalf("want firing, got %+v", got)
	}
	// Back at t; still firing at t+10s; resolved at t+20s.
	w.Observe("health", "h1", now.UnixMilli(), *now)
	for _, step := range []time.Duration{0, 10 * time.Second} {
		*now = now.Add(step)
		w.Observe("health", "h1", now.UnixMilli(), *now)
		w.Evaluate(context.Background())
		if got := rec.take(); len(got) != 1 || got[0].alert.State != promrules.StateFiring {
			t.Fatalf("%v after the agent came back: want still firing, got %+v", step, got)
		}
	}
	*now = now.Add(10 * time.Second)
	w.Observe("health", "h1", now.UnixMilli(), *now)
	w.Evaluate(context.Background())
	if got := rec.take(); len(got) != 1 || got[0].alert.State != promrules.StateInactive {
		t.Fatalf("after resolve_after: want resolved, got %+v", got)
	}
}
