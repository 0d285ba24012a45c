// Package query serves PromQL over the hub's ClickHouse store through the
// Prometheus HTTP API v1, using Prometheus's own promql engine and API
// handlers, so that Grafana's Prometheus data source works unchanged. Every
// request is authenticated and every read is scoped to the caller's tenant.
package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	neturl "net/url"
	"regexp"
	"runtime"

	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/route"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	v1 "github.com/prometheus/prometheus/web/api/v1"

	"github.com/bureauhub/bureauhub/hub/auth"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
	"github.com/bureauhub/bureauhub/hub/store/head"
)

// Limits bound one tenant's queries. Zero fields take the defaults.
type Limits struct {
	Timeout    time.Duration `yaml:"timeout"`
	MaxSamples int           `yaml:"max_samples"`
	MaxSeries  int           `yaml:"max_series"`
}

// Config configures the query API.
type Config struct {
	LookbackDelta time.Duration     `yaml:"lookback_delta"`
	DefaultLimits Limits            `yaml:"default_limits"`
	TenantLimits  map[string]Limits `yaml:"tenant_limits"`
	// RangeParallelism is how many parts a range query is split into,
	// evaluated at once (see SplitEngine); 1 never splits. Default: the
	// cores the hub may use.
	RangeParallelism int `yaml:"range_parallelism"`
	// RangeMinSteps is the fewest steps of each part: a range query with
	// fewer than twice as many is not split.
	RangeMinSteps int `yaml:"range_min_steps"`
	// Head keeps the recent samples in memory (a single hub only).
	Head head.Config `yaml:"head"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.LookbackDelta == 0 {
		c.LookbackDelta = 5 * time.Minute
	}
	if c.RangeParallelism == 0 {
		c.RangeParallelism = runtime.GOMAXPROCS(0)
	}
	if c.RangeMinSteps == 0 {
		c.RangeMinSteps = 60
	}
	c.Head.SetDefaults()
	if c.DefaultLimits.Timeout == 0 {
		c.DefaultLimits.Timeout = 2 * time.Minute
	}
	if c.DefaultLimits.MaxSamples == 0 {
		c.DefaultLimits.MaxSamples = 50_000_000
	}
	if c.DefaultLimits.MaxSeries == 0 {
		c.DefaultLimits.MaxSeries = 500_000
	}
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	if c.LookbackDelta < 0 {
		return errors.New("query.lookback_delta: must not be negative")
	}
	if c.RangeParallelism < 0 {
		return fmt.Errorf("query.range_parallelism: %d is negative (1 never splits range queries)", c.RangeParallelism)
	}
	if c.RangeMinSteps < 0 {
		return fmt.Errorf("query.range_min_steps: %d is negative", c.RangeMinSteps)
	}
	if err := c.Head.Validate("query.head"); err != nil {
		return err
	}
	check := func(path string, l Limits) error {
		if l.Timeout < 0 || l.MaxSamples < 0 || l.MaxSeries < 0 {
			return fmt.Errorf("query.%s: limits must not be negative", path)
		}
		return nil
	}
	if err := check("default_limits", c.DefaultLimits); err != nil {
		return err
	}
	for t, l := range c.TenantLimits {
		if err := check("tenant_limits."+t, l); err != nil {
			return err
		}
	}
	return nil
}

// LimitsFor returns a tenant's limits, defaults filled in.
func (c *Config) LimitsFor(tenant string) Limits {
	l, ok := c.TenantLimits[tenant]
	if !ok {
		return c.DefaultLimits
	}
	if l.Timeout == 0 {
		l.Timeout = c.DefaultLimits.Timeout
	}
	if l.MaxSamples == 0 {
		l.MaxSamples = c.DefaultLimits.MaxSamples
	}
	if l.MaxSeries == 0 {
		l.MaxSeries = c.DefaultLimits.MaxSeries
	}
	return l
}

// RulesSource returns the rule groups and alerting rules a principal may
// see; the rules component implements it.
type RulesSource func(p auth.Principal) v1.RulesRetriever

// Version is what /api/v1/status/buildinfo reports: the Prometheus release
// whose engine and API the hub embeds, so that clients such as Grafana
// enable the matching features.
var Version = v1.PrometheusVersion{Version: "3.15.0", Revision: "bureauhub", Branch: "bureauhub", GoVersion: runtime.Version()}

// API is the hub's Prometheus HTTP API.
type API struct {
	cfg    Config
	authn  *auth.Authenticator
	engine *promql.Engine
	router *route.Router
	logger *slog.Logger
}

// served lists the endpoints exposed; everything else the embedded API
// knows (admin, remote read/write, targets, TSDB status) answers 404.
var served = regexp.MustCompile(`^/api/v1/(query|query_range|query_exemplars|series|labels|label/[^/]+/values|metadata|status/buildinfo|rules|alerts|format_query|parse_query)$`)

// New builds the API over store. rulesSrc may be nil (no rules).
func New(cfg Config, store *clickhouse.Store, authn *auth.Authenticator, rulesSrc RulesSource, logger *slog.Logger, reg prometheus.Registerer) *API {
	maxTimeout, maxSamples := cfg.DefaultLimits.Timeout, cfg.DefaultLimits.MaxSamples
	for t := range cfg.TenantLimits {
		l := cfg.LimitsFor(t)
		maxTimeout, maxSamples = max(maxTimeout, l.Timeout), max(maxSamples, l.MaxSamples)
	}
	engine := promql.NewEngine(promql.EngineOpts{
		Logger:               logger.With("component", "promql"),
		Reg:                  reg,
		MaxSamples:           maxSamples,
		Timeout:              maxTimeout,
		LookbackDelta:        cfg.LookbackDelta,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
	})
	q := ScopedQueryable{Store: store, Limits: func(t string) clickhouse.Limits {
		l := cfg.LimitsFor(t)
		return clickhouse.Limits{MaxSeries: l.MaxSeries, MaxSamples: l.MaxSamples}
	}}
	rr := func(ctx context.Context) v1.RulesRetriever {
		p, ok := auth.FromContext(ctx)
		if !ok || rulesSrc == nil {
			return noRules{}
		}
		return rulesSrc(p)
	}
	split := &SplitEngine{Engine: engine, Parts: cfg.RangeParallelism, MinSteps: cfg.RangeMinSteps}
	api := v1.NewAPI(split, q, nil, nil, noExemplars{},
		func(context.Context) v1.ScrapePoolsRetriever { return noTargets{} },
		func(context.Context) v1.TargetRetriever { return noTargets{} },
		func(context.Context) v1.AlertmanagerRetriever { return noTargets{} },
		func() config.Config { return config.Config{} },
		nil, v1.GlobalURLOptions{},
		func(f http.HandlerFunc) http.HandlerFunc { return f },
		nil, "", false, false, 0,
		logger.With("component", "api"),
		rr,
		0, 0, 0, false, nil, nil, &Version, nil, nil,
		prometheus.NewRegistry(), prometheus.NewRegistry(), nil,
		false, nil, false, false, false, false,
		cfg.LookbackDelta, false, false, nil, nil,
		v1.OpenAPIOptions{}, nil,
	)
	router := route.New()
	api.Register(router.WithPrefix("/api/v1"))
	return &API{cfg: cfg, authn: authn, engine: engine, router: router, logger: logger}
}

// Engine is the promql engine, shared with rule evaluation.
func (a *API) Engine() *promql.Engine { return a.engine }

// Handler serves /api/v1/... . Callers authenticate with
// "Authorization: Bearer <token>" or HTTP basic auth whose password is the
// token (what Grafana's data source settings offer).
func (a *API) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !served.MatchString(r.URL.Path) {
			writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("%s is not served by the bureauhub hub", r.URL.Path))
			return
		}
		p, err := Authenticate(a.authn, r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="bureauhub"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "missing or unknown token")
			return
		}
		ctx, cancel := context.WithTimeout(auth.WithPrincipal(r.Context(), p), a.cfg.LimitsFor(p.Tenant).Timeout)
		defer cancel()
		a.router.ServeHTTP(w, r.WithContext(ctx))
	})
}

// Authenticate resolves a request's bearer token or basic-auth password.
func Authenticate(authn *auth.Authenticator, r *http.Request) (auth.Principal, error) {
	tok := auth.BearerToken(r.Header.Get("Authorization"))
	if tok == "" {
		if _, pw, ok := r.BasicAuth(); ok {
			tok = pw
		}
	}
	return authn.Authenticate(tok)
}

// writeError answers in the Prometheus API's error shape.
func writeError(w http.ResponseWriter, code int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "error", "errorType": typ, "error": msg})
}

type noRules struct{}

func (noRules) RuleGroups() []*rules.Group           { return nil }
func (noRules) AlertingRules() []*rules.AlertingRule { return nil }

// noTargets answers the target and Alertmanager listings: the hub scrapes
// nothing itself (agents do), so /api/v1/metadata is empty.
type noTargets struct{}

func (noTargets) TargetsActive() map[string][]*scrape.Target  { return nil }
func (noTargets) TargetsDropped() map[string][]*scrape.Target { return nil }
func (noTargets) TargetsDroppedCounts() map[string]int        { return nil }
func (noTargets) ScrapePoolConfig(string) (*config.ScrapeConfig, error) {
	return nil, errors.New("no scrape pools")
}
func (noTargets) ScrapePools() []string               { return nil }
func (noTargets) Alertmanagers() []*neturl.URL        { return nil }
func (noTargets) DroppedAlertmanagers() []*neturl.URL { return nil }

// noExemplars: the store keeps no exemplars, so every exemplar query is
// empty.
type noExemplars struct{}

func (noExemplars) ExemplarQuerier(context.Context) (storage.ExemplarQuerier, error) {
	return noExemplars{}, nil
}
func (noExemplars) Select(int64, int64, ...[]*labels.Matcher) ([]exemplar.QueryResult, error) {
	return nil, nil
}
