// Package hub assembles the hub: the federation gRPC endpoint that agents
// push to, ingestion into ClickHouse, and the HTTP endpoint with /metrics
// and the Prometheus query API.
package hub

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/storage"
	v1 "github.com/prometheus/prometheus/web/api/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"gopkg.in/yaml.v3"

	"github.com/bureauhub/bureauhub/alerting"
	"github.com/bureauhub/bureauhub/hub/auth"
	"github.com/bureauhub/bureauhub/hub/autoscale"
	"github.com/bureauhub/bureauhub/hub/cluster"
	"github.com/bureauhub/bureauhub/hub/forecast"
	"github.com/bureauhub/bureauhub/hub/ingest"
	"github.com/bureauhub/bureauhub/hub/query"
	"github.com/bureauhub/bureauhub/hub/refsvc/host"
	"github.com/bureauhub/bureauhub/hub/refsvc/journal"
	"github.com/bureauhub/bureauhub/hub/rules"
	"github.com/bureauhub/bureauhub/hub/site"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
	"github.com/bureauhub/bureauhub/hub/store/head"
)

// TLSConfig names the hub's certificate files.
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Config is the hub's configuration file.
type Config struct {
	GRPCListenAddress string    `yaml:"grpc_listen_address"`
	HTTPListenAddress string    `yaml:"http_listen_address"`
	TLS               TLSConfig `yaml:"tls"`
	// InsecurePlaintext serves gRPC without TLS; only for local demos.
	InsecurePlaintext bool `yaml:"insecure_plaintext"`
	// ShutdownTimeout bounds writing out accepted data on SIGTERM.
	ShutdownTimeout time.Duration       `yaml:"shutdown_timeout"`
	ClickHouse      clickhouse.Config   `yaml:"clickhouse"`
	Ingest          ingest.Config       `yaml:"ingest"`
	Query           query.Config        `yaml:"query"`
	Rules           rules.Config        `yaml:"rules"`
	Tenants         []auth.TenantConfig `yaml:"tenants"`
	// Site raises BureauUnreachable when all of a bureau's agents are
	// silent.
	Site site.Config `yaml:"site"`
	// Services are the reference services the hub hosts, if any.
	Services ServicesConfig `yaml:"services"`
	// Alerting routes, silences and delivers the tenants' alerts; without
	// it alerts are visible on /api/v1/alerts only.
	Alerting *alerting.Config `yaml:"alerting"`
	// Forecast predicts workload signals from their history.
	Forecast *forecast.Config `yaml:"forecast"`
	// Autoscale recommends, and in mode on applies, replica counts. Its
	// durations are wall time, like the forecast's periods: with a
	// compressed services clock, configure them in compressed terms.
	Autoscale *autoscale.Config `yaml:"autoscale"`
	// Cluster joins this hub to others (memberlist) so that each rule
	// group, notification group and bureau's site watch is handled by one
	// live hub; without it the hub works alone.
	Cluster *cluster.Config `yaml:"cluster"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.GRPCListenAddress == "" {
		c.GRPCListenAddress = "127.0.0.1:9300"
	}
	if c.HTTPListenAddress == "" {
		c.HTTPListenAddress = "127.0.0.1:9301"
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	c.ClickHouse.SetDefaults()
	c.Ingest.SetDefaults()
	c.Query.SetDefaults()
	c.Rules.SetDefaults()
	c.Site.SetDefaults()
	c.Services.SetDefaults()
	if c.Alerting != nil {
		c.Alerting.SetDefaults()
	}
	if c.Forecast != nil {
		c.Forecast.SetDefaults()
	}
	if c.Autoscale != nil {
		c.Autoscale.SetDefaults()
	}
	if c.Cluster != nil {
		c.Cluster.SetDefaults()
	}
}

// Validate reports the first invalid field, by its YAML path.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.GRPCListenAddress); err != nil {
		return fmt.Errorf("grpc_listen_address: %w", err)
	}
	if _, _, err := net.SplitHostPort(c.HTTPListenAddress); err != nil {
		return fmt.Errorf("http_listen_address: %w", err)
	}
	if !c.InsecurePlaintext {
		if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
			return errors.New("tls.cert_file: tls.cert_file and tls.key_file are required unless insecure_plaintext is true")
		}
		if _, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile); err != nil {
			return fmt.Errorf("tls.cert_file: %w", err)
		}
	}
	if c.ShutdownTimeout <= 0 {
		return errors.New("shutdown_timeout: must be positive")
	}
	if err := c.ClickHouse.Validate(); err != nil {
		return err
	}
	if err := c.Ingest.Validate(); err != nil {
		return err
	}
	if err := c.Query.Validate(); err != nil {
		return err
	}
	if err := c.Rules.Validate(); err != nil {
		return err
	}
	if len(c.Tenants) == 0 {
		return errors.New("tenants: at least one tenant is required")
	}
	names := map[string]bool{}
	for i := range c.Tenants {
		if err := c.Tenants[i].Validate(i); err != nil {
			return err
		}
		names[c.Tenants[i].Name] = true
	}
	if err := c.Site.Validate(); err != nil {
		return err
	}
	if c.Alerting != nil {
		if err := c.Alerting.Validate(); err != nil {
			return err
		}
	}
	if c.Forecast != nil {
		if err := c.Forecast.Validate("forecast"); err != nil {
			return err
		}
	}
	if c.Autoscale != nil {
		if err := c.Autoscale.Validate("autoscale"); err != nil {
			return err
		}
	}
	if c.Cluster != nil {
		if err := c.Cluster.Validate("cluster"); err != nil {
			return err
		}
	}
	if err := c.Services.Validate(names); err != nil {
		return err
	}
	if c.Cluster != nil {
		return c.Services.validateClustered()
	}
	return nil
}

// LoadConfig reads, defaults and validates a config file. Unknown fields
// are errors, so a typo is not silently ignored.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &cfg, nil
}

// Hub is a running hub's components.
type Hub struct {
	cfg    *Config
	logger *slog.Logger
	reg    *prometheus.Registry
	store  *clickhouse.Store
	ingest *ingest.Service
	api    *query.API
	rules  *rules.Manager
	authn  *auth.Authenticator
	site   *site.Watcher
	host   *host.Host         // nil when no service is hosted
	alerts *alerting.Alerting // nil without alerting

	forecaster *forecast.Forecaster  // nil without forecast
	autoscaler *autoscale.Autoscaler // nil without autoscale
	cluster    *cluster.Cluster      // nil on a single hub
	head       *head.Head            // nil in a cluster or when disabled
}

// New builds a hub from a validated config. Nothing runs until Run.
func New(cfg *Config, logger *slog.Logger) (*Hub, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	authn, err := auth.New(cfg.Tenants)
	if err != nil {
		return nil, err
	}
	store, err := clickhouse.Open(cfg.ClickHouse, logger.With("component", "clickhouse"), reg)
	if err != nil {
		return nil, err
	}
	svc, err := ingest.New(cfg.Ingest, store, authn, logger.With("component", "ingest"), reg)
	if err != nil {
		return nil, err
	}
	h := &Hub{cfg: cfg, logger: logger, reg: reg, store: store, ingest: svc, authn: authn}
	switch {
	case cfg.Query.Head.Disabled:
	case cfg.Cluster != nil:
		// Each hub of a cluster stores what its own agents send: none
		// holds every recent sample, so all read ClickHouse.
		logger.Info("the in-memory head is off in a cluster; queries read ClickHouse")
	default:
		names := make([]string, len(cfg.Tenants))
		for i, t := range cfg.Tenants {
			names[i] = t.Name
		}
		if h.head, err = head.New(cfg.Query.Head, names, logger.With("component", "head"), reg); err != nil {
			store.Close()
			return nil, err
		}
		store.SetRecent(h.head)
		svc.OnStored(h.head.Append)
	}
	h.api = query.New(cfg.Query, store, authn, func(p auth.Principal) v1.RulesRetriever { return h.rules.Retriever(p) },
		logger.With("component", "query"), reg)
	var notifier rules.Notifier
	if cfg.Alerting != nil {
		if h.alerts, err = alerting.New(*cfg.Alerting, logger.With("component", "alerting"), reg, authn, store.Conn(), store.Database()); err != nil {
			store.Close()
			return nil, err
		}
		notifier = h.alerts
	}
	h.rules = rules.New(cfg.Rules, cfg.Tenants, h.api.Engine(), store, svc, notifier, logger.With("component", "rules"), reg)
	h.site = site.New(cfg.Site, notifier, logger.With("component", "site"), reg)
	svc.OnDelivered(h.site.Observe)
	if cfg.Cluster != nil {
		h.cluster = cluster.New(*cfg.Cluster, cfg.HTTPListenAddress, logger.With("component", "cluster"), reg)
	}
	if cfg.Services.enabled() {
		var journals func(service string) host.Journal
		if h.cluster != nil {
			// In a cluster a service runs on its owner only, and its state
			// lives in ClickHouse, where the next owner finds it.
			jm := journal.NewMetrics(reg)
			journals = func(service string) host.Journal {
				return journal.New(store.Conn(), store.Database(), service, cfg.Cluster.Name, journal.Config{}, logger.With("component", "journal"), jm)
			}
		}
		if h.host, err = newHost(&cfg.Services, logger, reg, journals); err != nil {
			store.Close()
			return nil, err
		}
		if h.cluster != nil {
			if err := h.host.SetCoordinator(h.cluster, cfg.Cluster.Name); err != nil {
				store.Close()
				return nil, err
			}
		}
	}
	if cfg.Cluster != nil {
		svc.ShareProgress(store)
		h.rules.SetOwnership(h.cluster.Owns)
		h.site.SetOwnership(h.cluster.Owns)
		if h.alerts != nil {
			h.alerts.JoinCluster(h.cluster)
		}
	}
	if cfg.Forecast != nil {
		if h.forecaster, err = forecast.New(*cfg.Forecast, h.rangeQuery, logger.With("component", "forecast"), reg); err != nil {
			store.Close()
			return nil, err
		}
	}
	// The forecast signal and autoscale target of a hosted service go with
	// the service: the hub that runs its replicas forecasts and scales it.
	// Every other one is owned on the ring by its own key.
	capacityOwns := func(key string) bool { return true }
	if h.cluster != nil {
		withService := map[string]string{}
		if cfg.Autoscale != nil && h.host != nil {
			for _, t := range cfg.Autoscale.Targets {
				if t.Service != "" && t.Signal != "" {
					withService[forecast.OwnerKey(t.Tenant, t.Signal)] = host.OwnerKey(t.Service)
				}
				if t.Service != "" {
					withService["autoscale/"+t.Tenant+"/"+t.Name] = host.OwnerKey(t.Service)
				}
			}
		}
		capacityOwns = func(key string) bool {
			if k, ok := withService[key]; ok {
				key = k
			}
			return h.cluster.Owns(key)
		}
	}
	if h.forecaster != nil && h.cluster != nil {
		h.forecaster.SetOwnership(capacityOwns)
	}
	if cfg.Autoscale != nil {
		deps := autoscale.Deps{Query: h.instantQuery, Forecast: h.forecastOf, Conn: store.Conn(), Database: store.Database()}
		if h.host != nil {
			deps.Host = h.host
		}
		if h.alerts != nil {
			deps.Notifier = h.alerts
			deps.FiringAlerts = h.alerts.FiringAlerts
		}
		if h.cluster != nil {
			deps.Owns = capacityOwns
		}
		if h.autoscaler, err = autoscale.New(*cfg.Autoscale, logger.With("component", "autoscale"), reg, deps); err != nil {
			store.Close()
			return nil, err
		}
	}
	return h, nil
}

// Run migrates the schema, serves until ctx ends, then shuts down: agents'
// streams end after their accepted batches are stored and acknowledged.
func (h *Hub) Run(ctx context.Context) error {
	defer h.store.Close()
	if err := h.migrate(ctx); err != nil {
		return err
	}
	if h.head != nil {
		// Before ingestion starts: every block stored from now on is
		// appended, and the refill reads what was stored before.
		if err := h.head.Open(); err != nil {
			return err
		}
		defer func() {
			// Last: queries, rules and ingestion have stopped.
			if err := h.head.Close(); err != nil {
				h.logger.Warn("close the head", "err", err)
			}
		}()
	}
	if h.cluster != nil {
		// Join before anything that consults ownership runs.
		if err := h.cluster.Start(); err != nil {
			return err
		}
	}
	grpcLis, err := net.Listen("tcp", h.cfg.GRPCListenAddress)
	if err != nil {
		return fmt.Errorf("listen grpc_listen_address: %w", err)
	}
	httpLis, err := net.Listen("tcp", h.cfg.HTTPListenAddress)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("listen http_listen_address: %w", err)
	}
	opts := []grpc.ServerOption{
		grpc.StreamInterceptor(h.ingest.AuthStreamInterceptor),
		grpc.MaxRecvMsgSize(32 << 20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
	if !h.cfg.InsecurePlaintext {
		cert, err := tls.LoadX509KeyPair(h.cfg.TLS.CertFile, h.cfg.TLS.KeyFile)
		if err != nil {
			return fmt.Errorf("load tls.cert_file: %w", err)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})))
	} else {
		h.logger.Warn("serving gRPC without TLS (insecure_plaintext: true); tokens travel in clear text")
	}
	gs := grpc.NewServer(opts...)
	h.ingest.Register(gs)

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(h.reg, promhttp.HandlerOpts{Registry: h.reg}))
	mux.Handle("/api/v1/", h.api.Handler())
	if h.host != nil {
		api := h.host.Handler(func(r *http.Request) (auth.Principal, error) { return query.Authenticate(h.authn, r) })
		mux.Handle("/api/v1/services", api)
		mux.Handle("/api/v1/services/", api)
		mux.Handle("/api/v1/sd", api)
	}
	if h.cluster != nil {
		ch := h.cluster.Handler()
		mux.HandleFunc("/api/v1/cluster", func(w http.ResponseWriter, r *http.Request) {
			if _, err := query.Authenticate(h.authn, r); err != nil {
				http.Error(w, `{"status":"error","errorType":"unauthorized","error":"a valid bearer token is required"}`, http.StatusUnauthorized)
				return
			}
			ch.ServeHTTP(w, r)
		})
	}
	h.mountCapacity(mux)
	h.mountConsole(mux)
	if h.alerts != nil {
		mux.Handle("/api/v2/", h.alerts.Handler())
		mux.Handle("GET /api/v1/alerts/history", h.alerts.Handler())
	}
	mux.Handle("/debug/pprof/", debugHandler(h.authn))
	mux.HandleFunc("/-/reload", h.handleReload)
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	alertsDone := make(chan error, 1)
	if h.alerts != nil {
		// Before the rule managers, so their first alerts are routed.
		go func() { alertsDone <- h.alerts.Run(runCtx) }()
	} else {
		close(alertsDone)
	}
	ingestDone := make(chan error, 1)
	go func() { ingestDone <- h.ingest.Run(runCtx, h.cfg.ShutdownTimeout) }()
	rulesDone := make(chan struct{})
	go func() {
		defer close(rulesDone)
		_ = h.rules.Run(runCtx)
	}()
	clusterDone := make(chan struct{})
	if h.cluster != nil {
		// Run leaves the cluster when runCtx ends, so peers take over at
		// once instead of after failure detection; wait for it below.
		go func() { defer close(clusterDone); _ = h.cluster.Run(runCtx) }()
		go h.refreshSite(runCtx)
	} else {
		close(clusterDone)
	}
	h.seedSite(ctx)
	siteDone := make(chan struct{})
	go func() {
		defer close(siteDone)
		_ = h.site.Run(runCtx)
	}()
	headDone := make(chan struct{})
	if h.head != nil {
		go func() {
			defer close(headDone)
			h.head.Run(runCtx, func(tenant string) storage.Queryable {
				return h.store.Queryable(clickhouse.Scope{Tenants: []string{tenant}}, clickhouse.Limits{})
			})
		}()
	} else {
		close(headDone)
	}
	capDone := make(chan struct{})
	go func() {
		defer close(capDone)
		var wg sync.WaitGroup
		if h.forecaster != nil {
			wg.Go(func() { _ = h.forecaster.Run(runCtx) })
		}
		if h.autoscaler != nil {
			wg.Go(func() { _ = h.autoscaler.Run(runCtx) })
		}
		wg.Go(func() {
			// One hub of a cluster compacts at a time.
			var owns func() bool
			if h.cluster != nil {
				owns = func() bool { return h.cluster.Owns("compaction") }
			}
			h.store.RunCompaction(runCtx, h.cfg.ClickHouse.Compaction, owns)
		})
		wg.Wait()
	}()
	hostDone := make(chan error, 1)
	if h.host != nil {
		go func() { hostDone <- h.host.Run(runCtx) }()
	} else {
		close(hostDone)
	}
	go func() {
		if err := gs.Serve(grpcLis); err != nil {
			errs <- fmt.Errorf("serve grpc: %w", err)
			return
		}
		errs <- nil
	}()
	go func() {
		if err := hs.Serve(httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("serve http: %w", err)
			return
		}
		errs <- nil
	}()
	h.logger.Info("hub started", "grpc", grpcLis.Addr().String(), "http", httpLis.Addr().String(), "tls", !h.cfg.InsecurePlaintext)

	var firstErr error
	ingestReturned := false
	select {
	case <-ctx.Done():
	case firstErr = <-errs:
	case firstErr = <-ingestDone:
		ingestReturned = true
	}
	cancel()
	// The ingest service ends every stream once its data is stored; then
	// GracefulStop returns promptly.
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(h.cfg.ShutdownTimeout + 5*time.Second):
		gs.Stop()
	}
	shutCtx, cancelShut := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShut()
	_ = hs.Shutdown(shutCtx)
	<-rulesDone
	<-siteDone
	<-capDone
	<-headDone
	<-clusterDone
	if err := <-alertsDone; err != nil && firstErr == nil {
		firstErr = err
	}
	if err := <-hostDone; err != nil && firstErr == nil {
		firstErr = err
	}
	if !ingestReturned {
		if err := <-ingestDone; firstErr == nil {
			firstErr = err
		}
	}
	h.logger.Info("hub stopped")
	return firstErr
}

func (h *Hub) migrate(ctx context.Context) error {
	backoff := 200 * time.Millisecond
	for {
		err := h.store.Migrate(ctx)
		if err == nil && h.host != nil && h.cluster != nil {
			err = journal.Migrate(ctx, h.store.Conn(), h.store.Database())
		}
		if err == nil {
			return nil
		}
		h.logger.Warn("clickhouse schema migration failed; retrying", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return fmt.Errorf("migrate clickhouse schema: %w", err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// seedSite tells the site watcher which agents existed before this
// process started; without ClickHouse it starts empty and learns.
func (h *Hub) seedSite(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	last, err := h.store.LoadAgentsLastProgress(ctx)
	if err != nil {
		h.logger.Warn("could not load agents' last progress; BureauUnreachable starts from live deliveries only", "err", err)
		return
	}
	for k, at := range last {
		h.site.Seed(k.Tenant, k.AgentID, at)
	}
}

// refreshSite gives the site watcher the deliveries every hub of the
// cluster recorded in ClickHouse, so a bureau whose agents deliver to
// another hub is not taken for silent.
func (h *Hub) refreshSite(ctx context.Context) {
	t := time.NewTicker(h.cfg.Site.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		last, err := h.store.LoadAgentsLastProgress(qctx)
		cancel()
		if err != nil {
			h.logger.Warn("load agents' progress for the site watcher", "err", err)
			continue
		}
		byTenant := map[string]map[string]time.Time{}
		for k, at := range last {
			if byTenant[k.Tenant] == nil {
				byTenant[k.Tenant] = map[string]time.Time{}
			}
			byTenant[k.Tenant][k.AgentID] = at
		}
		h.site.Refresh(byTenant)
	}
}

// Reload re-reads the rule files and the alerting policy; on an invalid
// file what is in force stays and the error names the file.
func (h *Hub) Reload() error {
	err := h.rules.Reload()
	if h.alerts != nil {
		if aerr := h.alerts.Reload(); aerr != nil {
			err = errors.Join(err, fmt.Errorf("alerting: %w", aerr))
		}
	}
	return err
}

// handleReload is POST /-/reload, as in Prometheus; it needs a
// cross-bureau token because it affects every tenant.
func (h *Hub) handleReload(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		http.Error(w, "reload takes POST", http.StatusMethodNotAllowed)
		return
	}
	p, err := query.Authenticate(h.authn, r)
	if err != nil || !p.CanReadAll() {
		http.Error(w, "reload needs a cross_bureau token", http.StatusForbidden)
		return
	}
	if err := h.Reload(); err != nil {
		h.logger.Error("rule reload failed; keeping the previous rules", "err", err)
		http.Error(w, "reload failed, previous rules kept: "+err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintln(w, "rules reloaded")
}
