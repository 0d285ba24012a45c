// Package autoscale scales workloads ahead of their predicted load. Each
// sync it observes a target's request rate, reads the forecast of that
// rate, and sizes the replicas for the forecast peak over the time new
// replicas need to become ready, never below what the current load needs;
// scale-downs wait out a stabilization window, as the Kubernetes HPA does.
//
// The decision is the pure function Decide; the Autoscaler around it
// queries, acts through an Actuator (the hub's hosted services, a
// Kubernetes Deployment's scale subresource, or a webhook), retries and
// alerts on failed actions, publishes recommendations as metrics and over
// HTTP, and keeps an append-only audit trail in ClickHouse.
package autoscale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	promrules "github.com/prometheus/prometheus/rules"

	"github.com/bureauhub/bureauhub/hub/forecast"
)

// AlertName is the alert raised while a target's actions fail.
const AlertName = "AutoscaleActionFailing"

// QueryFunc evaluates an instant PromQL query for tenant at t and returns
// its single value (NaN, or an error, when there is none).
type QueryFunc func(ctx context.Context, tenant, expr string, t time.Time) (float64, error)

// ForecastFunc returns the latest forecast of a tenant's signal; ok is
// false when there is none yet.
type ForecastFunc func(tenant, signal string) (f forecast.Forecast, ok bool)

// Notifier receives the AutoscaleActionFailing alerts; the hub's alerting
// component implements it (as for hub/site).
type Notifier interface {
	Notify(ctx context.Context, tenant string, alerts []*promrules.Alert)
}

// Clock is the autoscaler's time; *simclock.Clock satisfies it, so the
// autoscaler can run on the reference services' compressed time.
type Clock interface {
	// Now is the current time.
	Now() time.Time
	// WallDuration is how long a duration of this clock lasts on the wall.
	WallDuration(d time.Duration) time.Duration
	// SimDuration is how long a wall duration lasts on this clock.
	SimDuration(wall time.Duration) time.Duration
}

type realClock struct{}

func (realClock) Now() time.Time                             { return time.Now() }
func (realClock) WallDuration(d time.Duration) time.Duration { return d }
func (realClock) SimDuration(d time.Duration) time.Duration  { return d }

// Deps are the autoscaler's collaborators.
type Deps struct {
	// Query evaluates rate_expr and latency_expr (required).
	Query QueryFunc
	// Forecast gives each target's forecast; nil: reactive only.
	Forecast ForecastFunc
	// Host scales the hosted services (required by hosted targets).
	Host ServiceHost
	// Actuators, by target name, replace the configured ones (tests,
	// embedding programs).
	Actuators map[string]Actuator
	// Conn and Database hold the audit table; a nil Conn keeps no audit
	// trail (and the actions API answers 503).
	Conn     driver.Conn
	Database string
	// Notifier, if set, receives AutoscaleActionFailing alerts.
	Notifier Notifier
	// FiringAlerts, if set, names the tenant's alerts firing at decision
	// time, for the audit trail.
	FiringAlerts func(tenant string) []string
	// Clock defaults to the wall clock.
	Clock Clock
	// Owns, when set, limits syncing to the targets this hub owns in a
	// hub cluster (key: the target's signal's forecast.OwnerKey, or
	// "autoscale/<tenant>/<name>"). Nil syncs every target.
	Owns func(key string) bool
}

// Autoscaler runs the configured targets. Its methods are safe for
// concurrent use.
type Autoscaler struct {
	cfg     Config
	logger  *slog.Logger
	deps    Deps
	clock   Clock
	targets []*target
	audit   *Audit // nil without Conn
	sleep   func(ctx context.Context, d time.Duration) error

	recommended, current, ready, capacity, floor, forecastRepl, warmUp, failing *prometheus.GaugeVec
	decisions, actions, failures, syncErrors                                    *prometheus.CounterVec
}

type pendingOutcome struct {
	actionID string
	due      time.Time
	mode     Mode
	replicas int
}

// target is one target's runtime state.
type target struct {
	cfg      TargetConfig
	policy   Policy
	act      Actuator
	capacity *Capacity

	mu           sync.Mutex
	history      []Recommendation
	historyStart time.Time
	actions      []time.Time
	lastScale    time.Time
	lastDir      string
	last         *Decision
	failErr      error
	failStage    string // "status" or "action"
	alert        *promrules.Alert
	pending      []pendingOutcome
}

// New builds the autoscaler for a validated config. Nothing runs until
// Run (or Sync).
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer, deps Deps) (*Autoscaler, error) {
	if deps.Query == nil {
		return nil, errors.New("autoscale: deps.Query is required")
	}
	a := &Autoscaler{cfg: cfg, logger: logger, deps: deps, clock: deps.Clock, sleep: sleepCtx}
	if a.clock == nil {
		a.clock = realClock{}
	}
	for i := range cfg.Targets {
		tc := cfg.Targets[i]
		act, err := buildActuator(tc, deps)
		if err != nil {
			return nil, fmt.Errorf("autoscale.targets[%d].actuator: %w", i, err)
		}
		a.targets = append(a.targets, &target{cfg: tc, policy: tc.policy(), act: act, capacity: NewCapacity(tc.Capacity)})
	}
	if deps.Conn != nil {
		a.audit = NewAudit(deps.Conn, deps.Database, cfg.AuditTable, cfg.AuditQueueSize, cfg.AuditFlushInterval, logger, reg)
	}
	tl := []string{"target", "tenant"}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, tl)
	}
	a.recommended = gauge("bureauhub_autoscale_recommended_replicas", "Replicas the autoscaler recommends (bounded and stabilized, before cooldowns and max step).")
	a.current = gauge("bureauhub_autoscale_current_replicas", "Desired replicas the actuator reports.")
	a.ready = gauge("bureauhub_autoscale_ready_replicas", "Ready replicas the actuator reports.")
	a.capacity = gauge("bureauhub_autoscale_capacity_per_replica", "Requests per second one replica sustains within the SLO (learned or default).")
	a.floor = gauge("bureauhub_autoscale_reactive_floor", "Replicas the observed load needs now.")
	a.forecastRepl = gauge("bureauhub_autoscale_forecast_replicas", "Replicas the forecast peak over warm-up + sync needs (-1: no forecast used).")
	a.warmUp = gauge("bureauhub_autoscale_warm_up_seconds", "Replica warm-up the decisions assume.")
	a.failing = gauge("bureauhub_autoscale_failing", "1 while the target's last action (or status read) failed.")
	a.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bureauhub_autoscale_decisions_total",
		Help: "Decisions by the term that decided them."}, []string{"target", "tenant", "term"})
	a.actions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bureauhub_autoscale_actions_total",
		Help: "Scaling actions by outcome (ok, failed after retries, dry_run)."}, []string{"target", "tenant", "outcome"})
	a.failures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bureauhub_autoscale_action_failures_total",
		Help: "Failed attempts of scaling actions, retries included."}, tl)
	a.syncErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bureauhub_autoscale_sync_errors_total",
		Help: "Sync steps that failed, by stage (status, rate, latency)."}, []string{"target", "tenant", "stage"})
	if reg != nil {
		reg.MustRegister(a.recommended, a.current, a.ready, a.capacity, a.floor, a.forecastRepl, a.warmUp, a.failing,
			a.decisions, a.actions, a.failures, a.syncErrors)
	}
	return a, nil
}

func buildActuator(tc TargetConfig, deps Deps) (Actuator, error) {
	if act, ok := deps.Actuators[tc.Name]; ok {
		return act, nil
	}
	switch tc.Actuator.Kind {
	case KindHosted:
		if deps.Host == nil {
			return nil, fmt.Errorf("hosted service %q but the hub hosts no services", tc.Service)
		}
		return NewHostedActuator(deps.Host, tc.Service), nil
	case KindKubernetes:
		return NewKubernetesActuator(tc.Actuator.Kubernetes)
	case KindWebhook:
		return NewWebhookActuator(tc.Actuator.Webhook, tc.Name, tc.Tenant, tc.Min), nil
	}
	return nil, fmt.Errorf("kind %q is not hosted, kubernetes or webhook", tc.Actuator.Kind)
}

// ownerKey is the target's cluster ownership key: its forecast signal's
// (forecast.OwnerKey), so the hub that refits the signal acts on it.
func (t *target) ownerKey() string {
	if t.cfg.Signal != "" {
		return forecast.OwnerKey(t.cfg.Tenant, t.cfg.Signal)
	}
	return "autoscale/" + t.cfg.Tenant + "/" + t.cfg.Name
}

// Run syncs every target at its interval and writes the audit trail until
// ctx ends. Targets in mode off are not synced.
func (a *Autoscaler) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if a.audit != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.runAudit(ctx)
		}()
	}
	for _, t := range a.targets {
		if t.cfg.Mode == ModeOff {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(max(a.clock.WallDuration(t.cfg.SyncInterval), time.Millisecond))
			defer tick.Stop()
			for {
				if a.deps.Owns == nil || a.deps.Owns(t.ownerKey()) {
					a.syncTarget(ctx, t)
				}
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

// runAudit creates the table, retrying while ClickHouse is unreachable
// (decisions go on meanwhile; the queue drops what does not fit), then
// writes the queue.
func (a *Autoscaler) runAudit(ctx context.Context) {
	backoff := 200 * time.Millisecond
	for {
		err := a.audit.Migrate(ctx)
		if err == nil {
			break
		}
		a.logger.Warn("autoscale audit table not created; retrying", "err", err, "backoff", backoff)
		if a.sleep(ctx, backoff) != nil {
			return
		}
		backoff = min(2*backoff, 10*time.Second)
	}
	_ = a.audit.Run(ctx)
}

// Audit is the audit trail (nil without a ClickHouse connection).
func (a *Autoscaler) Audit() *Audit { return a.audit }

// Sync runs one sync of every target not in mode off now, and returns
// their decisions by target name. Run calls the same step per target on
// its own interval; Sync is for tests and step-driven benchmarks.
func (a *Autoscaler) Sync(ctx context.Context) map[string]Decision {
	out := map[string]Decision{}
	for _, t := range a.targets {
		if t.cfg.Mode == ModeOff {
			continue
		}
		if d, ok := a.syncTarget(ctx, t); ok {
			out[t.cfg.Name] = d
		}
	}
	return out
}

func (a *Autoscaler) query(ctx context.Context, t *target, stage, expr string, now time.Time) float64 {
	if expr == "" {
		return math.NaN()
	}
	v, err := a.deps.Query(ctx, t.cfg.Tenant, expr, now)
	if err != nil {
		a.syncErrors.WithLabelValues(t.cfg.Name, t.cfg.Tenant, stage).Inc()
		a.logger.Warn("autoscale query failed", "target", t.cfg.Name, "stage", stage, "err", err)
		return math.NaN()
	}
	return v
}

// syncTarget observes, decides, records and (in mode on) acts for one
// target. ok is false when the actuator's status could not be read.
func (a *Autoscaler) syncTarget(ctx context.Context, t *target) (Decision, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := &t.cfg
	lv := []string{c.Name, c.Tenant}
	now := a.clock.Now()
	if t.historyStart.IsZero() {
		t.historyStart = now
	}

	desired, ready, err := t.act.Current(ctx)
	if err != nil {
		a.syncErrors.WithLabelValues(c.Name, c.Tenant, "status").Inc()
		a.setFailing(ctx, t, now, "status", fmt.Errorf("read current replicas: %w", err))
		return Decision{}, false
	}
	if t.failStage == "status" {
		a.clearFailing(ctx, t, now)
	}
	rate := a.query(ctx, t, "rate", c.RateExpr, now)
	latency := a.query(ctx, t, "latency", c.LatencyExpr, now)
	met := sloMet(latency, c.SLOLatency)
	if c.Capacity.Learn && met >= 0 {
		t.capacity.Observe(Observation{At: now, Rate: rate, Ready: ready, Desired: desired, SLOMet: met == 1})
	}
	var firing []string
	if a.deps.FiringAlerts != nil {
		firing = a.deps.FiringAlerts(c.Tenant)
	}
	a.recordOutcomes(t, now, desired, ready, rate, latency, met, firing)

	warmUp := c.WarmUp
	if c.LearnWarmUp {
		if r, ok := t.act.(WarmUpReporter); ok {
			if d, ok, err := r.ObservedWarmUp(ctx); err == nil && ok {
				warmUp = a.clock.SimDuration(d)
			}
		}
	}
	var fc *forecast.Forecast
	if c.Signal != "" && a.deps.Forecast != nil {
		if f, ok := a.deps.Forecast(c.Tenant, c.Signal); ok {
			fc = &f
		}
	}
	perReplica, learned := t.capacity.PerReplica()
	st := State{Desired: desired, Ready: ready, LastScale: t.lastScale, LastDirection: t.lastDir,
		Recommendations: t.history, HistoryStart: t.historyStart, Actions: t.actions}
	sig := Signals{Now: now, Rate: rate, Forecast: fc, CapacityPerReplica: perReplica, CapacityLearned: learned, WarmUp: warmUp}
	d := Decide(st, sig, t.policy)
	if d.Explanation.Signal == "" {
		d.Explanation.Signal = c.Signal
	}
	t.history = append(t.history, d.Record)
	cutoff := now.Add(-c.ScaleDownStabilization)
	for len(t.history) > 0 && !t.history[0].At.After(cutoff) {
		t.history = t.history[1:]
	}
	for len(t.actions) > 0 && now.Sub(t.actions[0]) >= time.Hour {
		t.actions = t.actions[1:]
	}

	a.recommended.WithLabelValues(lv...).Set(float64(d.Recommended))
	a.current.WithLabelValues(lv...).Set(float64(desired))
	a.ready.WithLabelValues(lv...).Set(float64(ready))
	a.capacity.WithLabelValues(lv...).Set(perReplica)
	a.floor.WithLabelValues(lv...).Set(float64(d.Explanation.ReactiveFloor))
	a.forecastRepl.WithLabelValues(lv...).Set(float64(d.Explanation.ForecastReplicas))
	a.warmUp.WithLabelValues(lv...).Set(warmUp.Seconds())
	a.decisions.WithLabelValues(c.Name, c.Tenant, d.Explanation.Term).Inc()

	expl, _ := json.Marshal(d.Explanation)
	ev := Event{Time: now, Tenant: c.Tenant, Target: c.Name, Kind: EventDecision, Mode: d.Mode, Term: d.Explanation.Term,
		Current: desired, Ready: ready, Recommended: d.Recommended, Replicas: d.Replicas, FiringAlerts: firing,
		ObservedRate: Number(rate), ObservedLatency: Number(latency), SLOMet: met, Explanation: string(expl)}
	a.record(ev)

	switch {
	case d.Act:
		ev.Kind = EventAction
		ev.ActionID = c.Name + "-" + strconv.FormatInt(now.UnixMilli(), 10)
		err := a.act(ctx, t, d)
		if err != nil {
			ev.Outcome, ev.Error = OutcomeFailed, err.Error()
			a.actions.WithLabelValues(c.Name, c.Tenant, OutcomeFailed).Inc()
			a.logger.Error("autoscale action failed", "target", c.Name, "replicas", d.Replicas, "err", err)
			a.setFailing(ctx, t, now, "action", err)
		} else {
			ev.Outcome = OutcomeOK
			a.actions.WithLabelValues(c.Name, c.Tenant, OutcomeOK).Inc()
			a.logger.Info("autoscaled", "target", c.Name, "from", desired, "to", d.Replicas, "term", d.Explanation.Term)
			t.lastScale, t.lastDir = now, d.Direction
			t.actions = append(t.actions, now)
			t.pending = append(t.pending, pendingOutcome{actionID: ev.ActionID, due: now.Add(warmUp + c.SyncInterval), mode: d.Mode, replicas: d.Replicas})
			a.clearFailing(ctx, t, now)
		}
		a.record(ev)
	case d.Mode == ModeDryRun && d.Replicas != desired:
		ev.Kind, ev.Outcome = EventAction, OutcomeDryRun
		ev.ActionID = c.Name + "-" + strconv.FormatInt(now.UnixMilli(), 10)
		a.actions.WithLabelValues(c.Name, c.Tenant, OutcomeDryRun).Inc()
		t.pending = append(t.pending, pendingOutcome{actionID: ev.ActionID, due: now.Add(warmUp + c.SyncInterval), mode: d.Mode, replicas: d.Replicas})
		a.record(ev)
	case t.failStage == "action" && d.Replicas == desired:
		// The count is where it should be (another sync's or someone
		// else's action): the failure no longer matters.
		a.clearFailing(ctx, t, now)
	}
	if t.failErr == nil {
		a.failing.WithLabelValues(lv...).Set(0)
	}
	t.last = &d
	return d, true
}

// act applies d, retrying with doubling backoff.
func (a *Autoscaler) act(ctx context.Context, t *target, d Decision) error {
	backoff := t.cfg.RetryBackoff
	var err error
	for attempt := 1; ; attempt++ {
		if ds, ok := t.act.(DecisionScaler); ok {
			err = ds.ScaleDecision(ctx, t.cfg.Name, t.cfg.Tenant, d)
		} else {
			err = t.act.Scale(ctx, d.Replicas)
		}
		if err == nil {
			return nil
		}
		a.failures.WithLabelValues(t.cfg.Name, t.cfg.Tenant).Inc()
		if attempt >= t.cfg.RetryAttempts {
			return fmt.Errorf("scale to %d (%d attempts): %w", d.Replicas, attempt, err)
		}
		a.logger.Warn("autoscale action failed; retrying", "target", t.cfg.Name, "attempt", attempt, "backoff", backoff, "err", err)
		if a.sleep(ctx, backoff) != nil {
			return fmt.Errorf("scale to %d: %w (retry cancelled)", d.Replicas, err)
		}
		backoff *= 2
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// recordOutcomes writes the outcome of each action whose warm-up + sync
// has passed.
func (a *Autoscaler) recordOutcomes(t *target, now time.Time, desired, ready int, rate, latency float64, met int8, firing []string) {
	keep := t.pending[:0]
	for _, p := range t.pending {
		if now.Before(p.due) {
			keep = append(keep, p)
			continue
		}
		outcome := "slo_unknown"
		switch met {
		case 1:
			outcome = "slo_met"
		case 0:
			outcome = "slo_missed"
		}
		a.record(Event{Time: now, Tenant: t.cfg.Tenant, Target: t.cfg.Name, Kind: EventOutcome, ActionID: p.actionID, Mode: p.mode,
			Current: desired, Ready: ready, Replicas: p.replicas, Outcome: outcome, FiringAlerts: firing,
			ObservedRate: Number(rate), ObservedLatency: Number(latency), SLOMet: met})
	}
	t.pending = keep
}

func (a *Autoscaler) record(e Event) {
	if a.audit != nil {
		a.audit.Record(e)
	}
}

func (a *Autoscaler) setFailing(ctx context.Context, t *target, now time.Time, stage string, err error) {
	t.failErr, t.failStage = err, stage
	a.failing.WithLabelValues(t.cfg.Name, t.cfg.Tenant).Set(1)
	if t.alert == nil {
		t.alert = &promrules.Alert{
			State: promrules.StateFiring,
			Labels: labels.FromStrings(labels.AlertName, AlertName, "bureau", t.cfg.Tenant, "target", t.cfg.Name,
				"severity", "warning"),
			ActiveAt: now,
			FiredAt:  now,
		}
	}
	t.alert.Annotations = labels.FromStrings(
		"summary", fmt.Sprintf("Autoscaling of %s is failing", t.cfg.Name),
		"description", fmt.Sprintf("The autoscaler cannot scale %s of bureau %s: %v", t.cfg.Name, t.cfg.Tenant, err),
		"runbook_url", a.cfg.RunbookURL)
	t.alert.LastSentAt = now
	t.alert.ValidUntil = now.Add(4 * t.cfg.SyncInterval)
	a.notify(ctx, t.cfg.Tenant, t.alert)
}

func (a *Autoscaler) clearFailing(ctx context.Context, t *target, now time.Time) {
	if t.failErr == nil {
		return
	}
	t.failErr, t.failStage = nil, ""
	a.failing.WithLabelValues(t.cfg.Name, t.cfg.Tenant).Set(0)
	if t.alert != nil {
		t.alert.State = promrules.StateInactive
		t.alert.ResolvedAt, t.alert.LastSentAt, t.alert.ValidUntil = now, now, now
		a.notify(ctx, t.cfg.Tenant, t.alert)
		t.alert = nil
	}
}

func (a *Autoscaler) notify(ctx context.Context, tenant string, alert *promrules.Alert) {
	if a.deps.Notifier == nil {
		return
	}
	c := *alert
	a.deps.Notifier.Notify(ctx, tenant, []*promrules.Alert{&c})
}

// Failing maps each target whose last action or status read failed to
// its error.
func (a *Autoscaler) Failing() map[string]error {
	out := map[string]error{}
	for _, t := range a.targets {
		t.mu.Lock()
		if t.failErr != nil {
			out[t.cfg.Name] = t.failErr
		}
		t.mu.Unlock()
	}
	return out
}

// TargetStatus is one target as the recommendations API shows it.
type TargetStatus struct {
	Target             string    `json:"target"`
	Tenant             string    `json:"tenant"`
	Mode               Mode      `json:"mode"`
	Signal             string    `json:"signal,omitempty"`
	Current            int       `json:"current_replicas"`
	Ready              int       `json:"ready_replicas"`
	Recommended        int       `json:"recommended_replicas"`
	ReactiveFloor      int       `json:"reactive_floor"`
	ForecastReplicas   int       `json:"forecast_replicas"`
	CapacityPerReplica Number    `json:"capacity_per_replica"`
	CapacityLearned    bool      `json:"capacity_learned"`
	Min                int       `json:"min"`
	Max                int       `json:"max"`
	LastScale          time.Time `json:"last_scale,omitzero"`
	Failing            string    `json:"failing,omitempty"`
	// Decision is the last decision, nil before the first sync.
	Decision *Decision `json:"decision,omitempty"`
}

// Recommendations lists the targets of the tenants allowed (nil: all), by
// tenant and name.
func (a *Autoscaler) Recommendations(allowed func(tenant string) bool) []TargetStatus {
	out := []TargetStatus{}
	for _, t := range a.targets {
		if allowed != nil && !allowed(t.cfg.Tenant) {
			continue
		}
		t.mu.Lock()
		capa, learned := t.capacity.PerReplica()
		s := TargetStatus{Target: t.cfg.Name, Tenant: t.cfg.Tenant, Mode: t.cfg.Mode, Signal: t.cfg.Signal,
			CapacityPerReplica: Number(capa), CapacityLearned: learned, Min: t.cfg.Min, Max: t.cfg.Max,
			LastScale: t.lastScale, ForecastReplicas: -1}
		if t.failErr != nil {
			s.Failing = t.failErr.Error()
		}
		if t.last != nil {
			d := *t.last
			s.Decision = &d
			s.Current, s.Ready, s.Recommended = d.Current, d.Ready, d.Recommended
			s.ReactiveFloor, s.ForecastReplicas = d.Explanation.ReactiveFloor, d.Explanation.ForecastReplicas
		}
		t.mu.Unlock()
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Tenant != out[j].Tenant {
			return out[i].Tenant < out[j].Tenant
		}
		return out[i].Target < out[j].Target
	})
	return out
}

// tenants are the configured targets' tenants.
func (a *Autoscaler) tenants() []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range a.targets {
		if !seen[t.cfg.Tenant] {
			seen[t.cfg.Tenant] = true
			out = append(out, t.cfg.Tenant)
		}
	}
	sort.Strings(out)
	return out
}
