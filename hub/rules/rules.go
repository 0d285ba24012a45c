// Package rules evaluates Prometheus rule files on the hub with Prometheus's
// own rules.Manager: one manager per tenant (as Mimir's and Loki's rulers
// do), each querying only its tenant's data and writing recording-rule
// results and ALERTS series back through ingestion into the same tenant.
package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	promrules "github.com/prometheus/prometheus/rules"
	v1 "github.com/prometheus/prometheus/web/api/v1"

	"github.com/bureauhub/bureauhub/hub/auth"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
)

// Config says which rule files are evaluated for which tenants.
type Config struct {
	EvaluationInterval time.Duration `yaml:"evaluation_interval"`
	// Files (globs) are evaluated for every bureau-role tenant, each over
	// its own data. Cross-bureau tenants do not get them: their results
	// would repeat every bureau's.
	Files []string `yaml:"files"`
	// TenantFiles (globs) are evaluated for one tenant only; a
	// cross-bureau tenant's rules read every tenant.
	TenantFiles map[string][]string `yaml:"tenant_files"`
	// OutageTolerance bounds how long a hub may have been down for alert
	// "for" state to be restored from ALERTS_FOR_STATE.
	OutageTolerance time.Duration `yaml:"outage_tolerance"`
	ForGracePeriod  time.Duration `yaml:"for_grace_period"`
	ResendDelay     time.Duration `yaml:"resend_delay"`
	// ExternalURL is linked from alerts' generatorURL.
	ExternalURL string `yaml:"external_url"`
}

// SetDefaults fills unset fields with Prometheus's defaults.
func (c *Config) SetDefaults() {
	if c.EvaluationInterval == 0 {
		c.EvaluationInterval = 15 * time.Second
	}
	if c.OutageTolerance == 0 {
		c.OutageTolerance = time.Hour
	}
	if c.ForGracePeriod == 0 {
		c.ForGracePeriod = 10 * time.Minute
	}
	if c.ResendDelay == 0 {
		c.ResendDelay = time.Minute
	}
}

// Validate checks fields and that every file parses.
func (c *Config) Validate() error {
	if c.EvaluationInterval < time.Second {
		return errors.New("rules.evaluation_interval: must be at least 1s")
	}
	if c.ExternalURL != "" {
		if _, err := url.Parse(c.ExternalURL); err != nil {
			return fmt.Errorf("rules.external_url: %w", err)
		}
	}
	for i, g := range c.Files {
		if _, err := filepath.Glob(g); err != nil {
			return fmt.Errorf("rules.files[%d]: %w", i, err)
		}
	}
	for t, gs := range c.TenantFiles {
		for i, g := range gs {
			if _, err := filepath.Glob(g); err != nil {
				return fmt.Errorf("rules.tenant_files.%s[%d]: %w", t, i, err)
			}
		}
	}
	_, err := c.filesFor("", false, true)
	return err
}

// filesFor expands the globs that apply to a tenant (to every tenant when
// every is set) and checks that the files parse.
func (c *Config) filesFor(tenant string, crossBureau, every bool) ([]string, error) {
	var globs []string
	if !crossBureau || every {
		globs = slices.Clone(c.Files)
	}
	if every {
		for _, gs := range c.TenantFiles {
			globs = append(globs, gs...)
		}
	} else {
		globs = append(globs, c.TenantFiles[tenant]...)
	}
	var out []string
	for _, g := range globs {
		m, err := filepath.Glob(g)
		if err != nil {
			return nil, fmt.Errorf("rule file glob %q: %w", g, err)
		}
		out = append(out, m...)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	for _, f := range out {
		if _, errs := rulefmt.ParseFile(f, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler)); len(errs) > 0 {
			return nil, fmt.Errorf("rule file %s: %w", f, errors.Join(errs...))
		}
	}
	return out, nil
}

// Writer stores series for a tenant through ingestion and returns once
// they are stored; *ingest.Service implements it.
type Writer interface {
	Write(ctx context.Context, tenant string, series []prompb.TimeSeries) (map[string]int, error)
}

// Notifier receives firing and resolved alerts of a tenant. The alerting
// component implements it; nil keeps alerts visible on /api/v1/alerts only.
type Notifier interface {
	Notify(ctx context.Context, tenant string, alerts []*promrules.Alert)
}

// ExprNotifier is a Notifier that also takes the rule's expression, for
// the alerts' generator URL.
type ExprNotifier interface {
	NotifyExpr(ctx context.Context, tenant, expr string, alerts []*promrules.Alert)
}

// Manager runs the per-tenant rule managers.
type Manager struct {
	cfg      Config
	tenants  []auth.TenantConfig
	engine   promql.QueryEngine
	store    *clickhouse.Store
	writer   Writer
	notifier Notifier
	logger   *slog.Logger
	reg      prometheus.Registerer

	mu       sync.RWMutex
	managers map[string]*promrules.Manager
	cross    map[string]bool // tenants with the cross-bureau role

	reloads      *prometheus.CounterVec
	lastReloadOK prometheus.Gauge

	// owns, when set, decides which hub of a cluster evaluates a group;
	// owned remembers, per group key, whether this hub evaluated it last
	// time, to restore alert state when it takes a group over.
	owns     func(key string) bool
	ownedMu  sync.Mutex
	owned    map[string]bool
	skipped  *prometheus.CounterVec
	takeover *prometheus.CounterVec
}

// New builds the manager; Run starts evaluation.
func New(cfg Config, tenants []auth.TenantConfig, engine promql.QueryEngine, store *clickhouse.Store, w Writer, n Notifier, logger *slog.Logger, reg prometheus.Registerer) *Manager {
	m := &Manager{cfg: cfg, tenants: tenants, engine: engine, store: store, writer: w, notifier: n, logger: logger,
		reg:      reg,
		managers: map[string]*promrules.Manager{},
		cross:    map[string]bool{},
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_rules_reloads_total", Help: "Rule reloads, by result (success, failure).",
		}, []string{"result"}),
		lastReloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bureauhub_rules_last_reload_successful", Help: "1 if the last rule reload succeeded.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.reloads, m.lastReloadOK)
	}
	return m
}

// SetOwnership makes this hub evaluate only the groups owns reports for
// key "rules/<tenant>/<file>/<group>" (a cluster's ring). Call before Run.
func (m *Manager) SetOwnership(owns func(key string) bool) {
	m.owns = owns
	m.owned = map[string]bool{}
	m.skipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bureauhub_rules_group_iterations_skipped_total", Help: "Group evaluations left to the group's owner in the hub cluster, by tenant.",
	}, []string{"tenant"})
	m.takeover = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bureauhub_rules_group_takeovers_total", Help: "Rule groups this hub took over from another (alert state restored), by tenant.",
	}, []string{"tenant"})
	if m.reg != nil {
		m.reg.MustRegister(m.skipped, m.takeover)
	}
}

// evalFunc evaluates a group of tenant only where it is owned. Every hub
// computes the same evaluation timestamps for a group, so a group that two
// hubs evaluate during an ownership change writes identical samples. A hub
// taking a group over first restores its alerts' `for` state from the
// ALERTS_FOR_STATE series the previous owner wrote, as Prometheus does
// after a restart.
func (m *Manager) evalFunc(tenant string) promrules.GroupEvalIterationFunc {
	if m.owns == nil {
		return nil // promrules.DefaultEvalIterationFunc
	}
	return func(ctx context.Context, g *promrules.Group, evalTimestamp time.Time) {
		key := "rules/" + tenant + "/" + g.File() + "/" + g.Name()
		if !m.owns(key) {
			m.ownedMu.Lock()
			m.owned[key] = false
			m.ownedMu.Unlock()
			m.skipped.WithLabelValues(tenant).Inc()
			return
		}
		m.ownedMu.Lock()
		was, seen := m.owned[key]
		m.owned[key] = true
		m.ownedMu.Unlock()
		promrules.DefaultEvalIterationFunc(ctx, g, evalTimestamp)
		if seen && !was {
			// As Prometheus after a restart: evaluate once so the alerts
			// are active, then take their `for` state from storage.
			g.RestoreForState(evalTimestamp)
			m.takeover.WithLabelValues(tenant).Inc()
		}
	}
}

// Run starts one manager per tenant, loads the rule files and evaluates
// until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	var ext *url.URL
	if m.cfg.ExternalURL != "" {
		ext, _ = url.Parse(m.cfg.ExternalURL)
	}
	m.mu.Lock()
	for _, t := range m.tenants {
		all := t.Role == auth.RoleCrossBureau
		scope := clickhouse.Scope{Tenants: []string{t.Name}, All: all}
		q := m.store.Queryable(scope, clickhouse.Limits{})
		tenant := t.Name
		mgr := promrules.NewManager(&promrules.ManagerOptions{
			ExternalURL:     ext,
			QueryFunc:       promrules.EngineQueryFunc(m.engine, q),
			NotifyFunc:      m.notifyFunc(tenant),
			Context:         ctx,
			Appendable:      appendable{w: m.writer, tenant: tenant, logger: m.logger},
			Queryable:       q,
			Logger:          m.logger.With("tenant", tenant),
			OutageTolerance: m.cfg.OutageTolerance,
			ForGracePeriod:  m.cfg.ForGracePeriod,
			ResendDelay:     m.cfg.ResendDelay,
			// Each tenant's groups report under a tenant label: the same
			// file and group run for every bureau.
			Metrics: promrules.NewGroupMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"tenant": tenant}, m.reg)),
		})
		m.managers[tenant] = mgr
		m.cross[tenant] = all
		go mgr.Run()
	}
	m.mu.Unlock()
	if err := m.Reload(); err != nil {
		m.logger.Error("initial rule load failed; evaluating no rules until a reload succeeds", "err", err)
	}
	<-ctx.Done()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mgr := range m.managers {
		mgr.Stop()
	}
	return nil
}

func (m *Manager) notifyFunc(tenant string) promrules.NotifyFunc {
	return func(ctx context.Context, expr string, alerts ...*promrules.Alert) {
		if m.notifier == nil || len(alerts) == 0 {
			return
		}
		if n, ok := m.notifier.(ExprNotifier); ok {
			n.NotifyExpr(ctx, tenant, expr, alerts)
			return
		}
		m.notifier.Notify(ctx, tenant, alerts)
	}
}

// Reload re-reads the rule files for every tenant. If any file is invalid
// it changes nothing and returns an error naming the file, so the rules in
// force stay the last valid ones.
func (m *Manager) Reload() error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	files := map[string][]string{}
	for t := range m.managers {
		f, err := m.cfg.filesFor(t, m.cross[t], false)
		if err != nil {
			m.reloads.WithLabelValues("failure").Inc()
			m.lastReloadOK.Set(0)
			return err
		}
		files[t] = f
	}
	for t, mgr := range m.managers {
		if err := mgr.Update(m.cfg.EvaluationInterval, files[t], labels.EmptyLabels(), m.cfg.ExternalURL, m.evalFunc(t)); err != nil {
			m.reloads.WithLabelValues("failure").Inc()
			m.lastReloadOK.Set(0)
			return fmt.Errorf("load rules for tenant %s: %w", t, err)
		}
	}
	m.reloads.WithLabelValues("success").Inc()
	m.lastReloadOK.Set(1)
	m.logger.Info("rules loaded", "tenants", len(files))
	return nil
}

// Retriever returns the rules a principal may see on /api/v1/rules and
// /api/v1/alerts: its own tenant's, or every tenant's for the data bureau.
func (m *Manager) Retriever(p auth.Principal) v1.RulesRetriever {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var r retriever
	for t, mgr := range m.managers {
		if p.CanReadAll() || t == p.Tenant {
			r.groups = append(r.groups, mgr.RuleGroups()...)
			r.alerting = append(r.alerting, mgr.AlertingRules()...)
		}
	}
	return r
}

type retriever struct {
	groups   []*promrules.Group
	alerting []*promrules.AlertingRule
}

func (r retriever) RuleGroups() []*promrules.Group           { return r.groups }
func (r retriever) AlertingRules() []*promrules.AlertingRule { return r.alerting }
