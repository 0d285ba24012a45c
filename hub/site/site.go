// Package site watches when each bureau's agents last delivered data and
// raises one BureauUnreachable alert for a bureau whose agents have all gone
// silent, instead of letting ops be flooded by every per-host and
// per-target alert of that bureau (the shipped alerting configuration
// inhibits those while BureauUnreachable fires).
//
// An agent counts as live only while it delivers current data: a batch
// whose newest sample is older than catch_up_lag when it is stored is
// backlog from the agent's disk buffer. So after an outage the alert
// resolves only once the agents have caught up, and the per-host rules,
// re-evaluated on the real (now complete) data, take over from there.
package site

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	promrules "github.com/prometheus/prometheus/rules"
)

// AlertName is the alert the watcher raises.
const AlertName = "BureauUnreachable"

// Config tunes the watcher.
type Config struct {
	// SilenceAfter is how long an agent may deliver no current data before
	// it counts as silent.
	SilenceAfter time.Duration `yaml:"silence_after"`
	// CatchUpLag is how old a stored batch's newest sample may be for the
	// batch to count as current rather than buffered backlog.
	CatchUpLag time.Duration `yaml:"catch_up_lag"`
	// Interval is how often bureaus are evaluated and firing alerts resent.
	Interval time.Duration `yaml:"interval"`
	// ForgetAfter drops agents silent this long (decommissioned hosts), so
	// that they stop counting toward their bureau.
	ForgetAfter time.Duration `yaml:"forget_after"`
	// ResolveAfter keeps BureauUnreachable firing this long after an agent
	// of the bureau delivers current data again, so that the bureau's
	// per-host and per-target rules are re-evaluated on the real data
	// while they are still inhibited: alerts of hosts that are in fact
	// fine resolve quietly instead of being notified the moment the
	// inhibition lifts. Set it above the rules' evaluation interval plus
	// their longest absence window.
	ResolveAfter time.Duration `yaml:"resolve_after"`
	// RunbookURL is put in the alert's annotations.
	RunbookURL string `yaml:"runbook_url"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.SilenceAfter == 0 {
		c.SilenceAfter = 2 * time.Minute
	}
	if c.CatchUpLag == 0 {
		c.CatchUpLag = time.Minute
	}
	if c.Interval == 0 {
		c.Interval = 10 * time.Second
	}
	if c.ForgetAfter == 0 {
		c.ForgetAfter = 24 * time.Hour
	}
	if c.ResolveAfter == 0 {
		c.ResolveAfter = time.Minute
	}
	if c.RunbookURL == "" {
		c.RunbookURL = "https://runbooks.bureauhub.example/#bureauunreachable"
	}
}

// Validate names the first invalid field.
func (c *Config) Validate() error {
	switch {
	case c.SilenceAfter <= 0:
		return errors.New("site.silence_after: must be positive")
	case c.CatchUpLag <= 0:
		return errors.New("site.catch_up_lag: must be positive")
	case c.Interval <= 0:
		return errors.New("site.interval: must be positive")
	case c.ResolveAfter < 0:
		return errors.New("site.resolve_after: must not be negative")
	case c.ForgetAfter <= c.SilenceAfter:
		return fmt.Errorf("site.forget_after: must be longer than silence_after (%v)", c.SilenceAfter)
	}
	return nil
}

// Notifier receives the watcher's alerts; the hub's alerting component
// implements it (the same interface the rule manager notifies).
type Notifier interface {
	Notify(ctx context.Context, tenant string, alerts []*promrules.Alert)
}

// AgentStatus is one agent as the watcher sees it.
type AgentStatus struct {
	Tenant  string `json:"tenant"`
	AgentID string `json:"agent_id"`
	// LastDelivery is when the hub last stored a batch of the agent's.
	LastDelivery time.Time `json:"last_delivery"`
	// LastCurrent is when it last stored a current (not backlog) batch.
	LastCurrent time.Time `json:"last_current"`
	// NewestSample is the newest sample timestamp the agent delivered.
	NewestSample time.Time `json:"newest_sample"`
	Live         bool      `json:"live"`
}

type agent struct {
	lastDelivery time.Time
	lastCurrent  time.Time
	newest       time.Time
}

type key struct{ tenant, id string }

// Watcher tracks agents and raises BureauUnreachable. Observe is safe to
// call from any goroutine.
type Watcher struct {
	cfg      Config
	notifier Notifier
	logger   *slog.Logger
	now      func() time.Time

	// owns, when set, limits notifications to the bureaus this hub owns
	// in a cluster.
	owns func(key string) bool

	mu        sync.Mutex
	agents    map[key]*agent
	firing    map[string]*promrules.Alert // by tenant
	liveSince map[string]time.Time        // firing tenants with an agent back, since when

	unreachable *prometheus.GaugeVec
	agentsG     *prometheus.GaugeVec
}

// New builds a watcher for a validated config. The notifier may be nil
// (alerts are then visible on the metrics only).
func New(cfg Config, n Notifier, logger *slog.Logger, reg prometheus.Registerer) *Watcher {
	w := &Watcher{cfg: cfg, notifier: n, logger: logger, now: time.Now,
		agents: map[key]*agent{}, firing: map[string]*promrules.Alert{}, liveSince: map[string]time.Time{},
		unreachable: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bureauhub_bureau_unreachable", Help: "1 while every agent of the bureau (tenant) is silent.",
		}, []string{"tenant"}),
		agentsG: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bureauhub_agents", Help: "Agents known to the hub, by tenant and state (live, silent).",
		}, []string{"tenant", "state"}),
	}
	if reg != nil {
		reg.MustRegister(w.unreachable, w.agentsG)
	}
	return w
}

// Seed records agents known from before this process started (their last
// progress write in ClickHouse), so a bureau that went silent while the hub
// was down is still noticed. Their deliveries count as current.
func (w *Watcher) Seed(tenant, agentID string, last time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := key{tenant, agentID}
	if _, ok := w.agents[k]; ok {
		return
	}
	w.agents[k] = &agent{lastDelivery: last, lastCurrent: last, newest: last}
}

// SetOwnership makes this watcher notify only for bureaus owns reports
// for key "site/<tenant>" (a cluster's ring). Call before Run.
func (w *Watcher) SetOwnership(owns func(key string) bool) { w.owns = owns }

// Refresh records deliveries other hubs of a cluster stored: when each
// agent's progress was last written to ClickHouse. They count as current
// (the shared record does not say how old the samples were).
func (w *Watcher) Refresh(last map[string]map[string]time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for tenant, agents := range last {
		for id, at := range agents {
			k := key{tenant, id}
			a := w.agents[k]
			if a == nil {
				a = &agent{}
				w.agents[k] = a
			}
			if at.After(a.lastDelivery) {
				a.lastDelivery = at
			}
			if at.After(a.lastCurrent) {
				a.lastCurrent = at
			}
		}
	}
}

// Observe records a batch the hub stored; it matches ingest.DeliveryFunc.
func (w *Watcher) Observe(tenant, agentID string, newestMs int64, stored time.Time) {
	newest := time.UnixMilli(newestMs)
	w.mu.Lock()
	defer w.mu.Unlock()
	k := key{tenant, agentID}
	a := w.agents[k]
	if a == nil {
		a = &agent{}
		w.agents[k] = a
	}
	a.lastDelivery = stored
	if newest.After(a.newest) {
		a.newest = newest
	}
	if stored.Sub(newest) <= w.cfg.CatchUpLag {
		a.lastCurrent = stored
	}
}

// Agents lists the known agents of tenant ("" for all), by tenant and ID.
func (w *Watcher) Agents(tenant string) []AgentStatus {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	out := []AgentStatus{}
	for k, a := range w.agents {
		if tenant != "" && k.tenant != tenant {
			continue
		}
		out = append(out, AgentStatus{Tenant: k.tenant, AgentID: k.id, LastDelivery: a.lastDelivery,
			LastCurrent: a.lastCurrent, NewestSample: a.newest, Live: now.Sub(a.lastCurrent) < w.cfg.SilenceAfter})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Tenant != out[j].Tenant {
			return out[i].Tenant < out[j].Tenant
		}
		return out[i].AgentID < out[j].AgentID
	})
	return out
}

// Run evaluates every interval until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			w.Evaluate(ctx)
		}
	}
}

// Evaluate decides each bureau's state now and notifies firing alerts
// (resent each time, as Prometheus resends) and newly resolved ones.
func (w *Watcher) Evaluate(ctx context.Context) {
	now := w.now()
	send := w.evaluate(now)
	if w.notifier == nil {
		return
	}
	tenants := make([]string, 0, len(send))
	for t := range send {
		tenants = append(tenants, t)
	}
	sort.Strings(tenants)
	for _, t := range tenants {
		if w.owns != nil && !w.owns("site/"+t) {
			continue
		}
		w.notifier.Notify(ctx, t, []*promrules.Alert{send[t]})
	}
}

// evaluate updates state and returns the alert to send per tenant.
func (w *Watcher) evaluate(now time.Time) map[string]*promrules.Alert {
	w.mu.Lock()
	defer w.mu.Unlock()
	type bureau struct {
		live, silent int
		lastCurrent  time.Time
	}
	bureaus := map[string]*bureau{}
	for k, a := range w.agents {
		since := now.Sub(a.lastCurrent)
		if since >= w.cfg.ForgetAfter && now.Sub(a.lastDelivery) >= w.cfg.ForgetAfter {
			delete(w.agents, k)
			continue
		}
		b := bureaus[k.tenant]
		if b == nil {
			b = &bureau{}
			bureaus[k.tenant] = b
		}
		if since < w.cfg.SilenceAfter {
			b.live++
		} else {
			b.silent++
		}
		if a.lastCurrent.After(b.lastCurrent) {
			b.lastCurrent = a.lastCurrent
		}
	}
	send := map[string]*promrules.Alert{}
	for tenant, b := range bureaus {
		w.agentsG.WithLabelValues(tenant, "live").Set(float64(b.live))
		w.agentsG.WithLabelValues(tenant, "silent").Set(float64(b.silent))
		a := w.firing[tenant]
		switch {
		case a != nil && b.live > 0 && now.Sub(w.since(tenant, now)) < w.cfg.ResolveAfter:
			// Back, but the bureau's own rules have not yet had time to
			// see the real data: stay firing (and inhibiting) a little.
			a.LastSentAt = now
			a.ValidUntil = now.Add(4 * w.cfg.Interval)
			send[tenant] = copyAlert(a)
		case b.live == 0 && b.silent > 0:
			delete(w.liveSince, tenant)
			if a == nil {
				a = &promrules.Alert{
					State:  promrules.StateFiring,
					Labels: labels.FromStrings(labels.AlertName, AlertName, "bureau", tenant, "severity", "critical"),
					Annotations: labels.FromStrings(
						"summary", fmt.Sprintf("Bureau %s is unreachable", tenant),
						"description", fmt.Sprintf("None of the %d agents of %s has delivered current data for %v (last at %s). Per-host and per-target alerts of %s are inhibited until its agents catch up.",
							b.silent, tenant, w.cfg.SilenceAfter, b.lastCurrent.UTC().Format(time.RFC3339), tenant),
						"runbook_url", w.cfg.RunbookURL),
					ActiveAt: b.lastCurrent.Add(w.cfg.SilenceAfter),
					FiredAt:  now,
				}
				w.firing[tenant] = a
				w.logger.Warn("bureau unreachable: every agent is silent", "tenant", tenant, "agents", b.silent)
			}
			a.LastSentAt = now
			a.ValidUntil = now.Add(4 * w.cfg.Interval)
			w.unreachable.WithLabelValues(tenant).Set(1)
			send[tenant] = copyAlert(a)
		case a != nil:
			a.State = promrules.StateInactive
			a.ResolvedAt = now
			a.LastSentAt = now
			a.ValidUntil = now
			delete(w.firing, tenant)
			delete(w.liveSince, tenant)
			w.unreachable.WithLabelValues(tenant).Set(0)
			w.logger.Info("bureau reachable again: an agent delivers current data", "tenant", tenant, "live_agents", b.live)
			send[tenant] = copyAlert(a)
		default:
			w.unreachable.WithLabelValues(tenant).Set(0)
		}
	}
	// A bureau whose agents were all forgotten while it fired resolves.
	for tenant, a := range w.firing {
		if _, ok := bureaus[tenant]; !ok {
			a.State = promrules.StateInactive
			a.ResolvedAt, a.LastSentAt, a.ValidUntil = now, now, now
			delete(w.firing, tenant)
			w.unreachable.WithLabelValues(tenant).Set(0)
			send[tenant] = copyAlert(a)
		}
	}
	return send
}

// since is when tenant's agents came back while its alert fired (now, the
// first time it is asked). Called with w.mu held.
func (w *Watcher) since(tenant string, now time.Time) time.Time {
	t, ok := w.liveSince[tenant]
	if !ok {
		w.liveSince[tenant] = now
		t = now
	}
	return t
}

func copyAlert(a *promrules.Alert) *promrules.Alert {
	c := *a
	return &c
}
