// Package alerting is the hub's Alertmanager: it receives the alerts of
// every tenant's rules (and of anyone posting to its Alertmanager v2 API),
// groups, inhibits, silences and routes them, and notifies receivers.
//
// It is built from Alertmanager's own packages, wired as
// cmd/alertmanager (app) wires them: provider/mem for alerts,
// dispatch.Dispatcher for routing and grouping, inhibit.Inhibitor,
// silence.Silences and nflog with snapshots in a data directory,
// notify.PipelineBuilder with its retry stage and metrics, and the time
// interval intervener. bureauhub adds tenancy (the bureau label), receivers
// for Chinese IM and SMS services (alerting/receivers), resolved
// notifications sent at once on flagged routes, and a history of alert
// states and notification attempts in ClickHouse (alerting/history).
// docs/alerting.md describes the configuration and every difference from
// Alertmanager.
package alerting

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/alertmanager/dispatch"
	"github.com/prometheus/alertmanager/eventrecorder"
	"github.com/prometheus/alertmanager/featurecontrol"
	"github.com/prometheus/alertmanager/inhibit"
	"github.com/prometheus/alertmanager/marker"
	"github.com/prometheus/alertmanager/nflog"
	"github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/provider/mem"
	"github.com/prometheus/alertmanager/silence"
	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bureauhub/bureauhub/alerting/history"
	"github.com/bureauhub/bureauhub/hub/auth"
	"github.com/bureauhub/bureauhub/hub/cluster"
)

// Alerting is the hub's alert manager. Build it with New, serve Handler,
// feed it through the rules Notifier (Notify) and call Run once.
type Alerting struct {
	cfg     Config
	logger  *slog.Logger
	reg     prometheus.Registerer
	authn   *auth.Authenticator
	hist    *history.Store // nil without ClickHouse
	extURL  *url.URL
	flagger featurecontrol.Flagger
	rec     eventrecorder.Recorder

	silences    *silence.Silences
	silencer    *silence.Silencer
	nflog       *nflog.Log
	groupMarker marker.GroupMarker
	pb          *notify.PipelineBuilder
	dispMetrics *dispatch.DispatcherMetrics

	// mu serialises Reload; def is the configuration in force.
	mu  sync.Mutex
	def *Definition

	// rt is set while Run runs; the API answers 503 without it.
	rt atomic.Pointer[runtime]
	// active is the configuration-scoped subgraph, swapped on reload.
	active atomic.Pointer[activeConfig]

	m       metrics
	started time.Time

	// peers is the hub cluster (nil on a single hub); alertsCh shares
	// received alerts with it.
	peers    *cluster.Cluster
	alertsCh *cluster.Channel
}

// runtime holds what Run builds: the alert store.
type runtime struct {
	alerts *mem.Alerts
}

// activeConfig is what one configuration builds; Reload swaps it whole.
type activeConfig struct {
	def         *Definition
	tmpl        *template.Template
	routes      *dispatch.Route
	immediate   map[string]bool // route IDs with send_resolved_immediately
	pipeline    notify.Stage
	inhibitor   *inhibit.Inhibitor
	dispatcher  *dispatch.Dispatcher
	integration int
}

type metrics struct {
	attempts       *prometheus.CounterVec
	failures       *prometheus.CounterVec
	reloads        *prometheus.CounterVec
	lastReloadOK   prometheus.Gauge
	received       *prometheus.CounterVec
	immediate      prometheus.Counter
	receivers      prometheus.Gauge
	integrations   prometheus.Gauge
	inhibitRules   prometheus.Gauge
	stateChanges   *prometheus.CounterVec
	trackedAlerts  prometheus.Gauge
	notRunningDrop prometheus.Counter
}

// New builds the component from cfg (defaults set, validated): it loads
// the configuration file and the silences and notification log snapshots
// from cfg.DataDir. conn and database locate the alert history; with a nil
// conn no history is kept (and the history API answers 404). authn
// authenticates API callers. New starts nothing; Run does.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer, authn *auth.Authenticator, conn driver.Conn, database string) (*Alerting, error) {
	if reg == nil {
		reg = prometheus.NewRegistry() // Alertmanager's packages require one
	}
	def, err := LoadDefinitionFile(cfg.ConfigFile)
	if err != nil {
		return nil, fmt.Errorf("alerting.config_file: %w", err)
	}
	ext := &url.URL{}
	if cfg.ExternalURL != "" {
		if ext, err = url.Parse(cfg.ExternalURL); err != nil {
			return nil, fmt.Errorf("alerting.external_url: %w", err)
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("alerting.data_dir: %w", err)
	}
	// Per-receiver notification metrics (alertmanager_notifications_total
	// and friends get a receiver_name label).
	ff, err := featurecontrol.NewFlags(logger, featurecontrol.FeatureReceiverNameInMetrics)
	if err != nil {
		return nil, err
	}
	rec := eventrecorder.NopRecorder()
	a := &Alerting{
		cfg: cfg, logger: logger, reg: reg, authn: authn, extURL: ext, flagger: ff, rec: rec,
		groupMarker: marker.NewGroupMarker(),
		started:     time.Now(),
		def:         def,
	}
	a.silences, err = silence.New(silence.Options{
		SnapshotFile:  filepath.Join(cfg.DataDir, "silences"),
		Retention:     cfg.Retention,
		Logger:        logger.With("component", "silences"),
		Metrics:       reg,
		EventRecorder: rec,
	})
	if err != nil {
		return nil, fmt.Errorf("load silences from %s: %w", cfg.DataDir, err)
	}
	a.silencer = silence.NewSilencer(a.silences, logger, rec)
	a.nflog, err = nflog.New(nflog.Options{
		SnapshotFile: filepath.Join(cfg.DataDir, "nflog"),
		Retention:    cfg.Retention,
		Logger:       logger.With("component", "nflog"),
		Metrics:      reg,
	})
	if err != nil {
		return nil, fmt.Errorf("load notification log from %s: %w", cfg.DataDir, err)
	}
	a.pb = notify.NewPipelineBuilder(reg, ff, rec)
	a.dispMetrics = dispatch.NewDispatcherMetrics(false, reg, ff)
	if conn != nil {
		a.hist = history.New(cfg.History, logger.With("component", "alert-history"), reg, conn, database)
	}
	a.m = newMetrics(reg)
	return a, nil
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_alerting_notification_attempts_total",
			Help: "Notification attempts (each retry counts), by receiver and integration.",
		}, []string{"receiver", "integration"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_alerting_notification_failures_total",
			Help: "Failed notification attempts, by receiver and integration.",
		}, []string{"receiver", "integration"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_alerting_config_reloads_total",
			Help: "Alerting configuration reloads, by result (success, failure).",
		}, []string{"result"}),
		lastReloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bureauhub_alerting_config_last_reload_successful",
			Help: "1 if the last alerting configuration reload succeeded.",
		}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_alerting_rule_alerts_received_total",
			Help: "Alerts received from the hub's rule managers, by tenant.",
		}, []string{"tenant"}),
		immediate: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bureauhub_alerting_resolved_immediate_flushes_total",
			Help: "Aggregation groups flushed at once because an alert resolved on a send_resolved_immediately route.",
		}),
		receivers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bureauhub_alerting_configured_receivers", Help: "Receivers used by the routing tree.",
		}),
		integrations: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bureauhub_alerting_configured_integrations", Help: "Integrations of the receivers in use.",
		}),
		inhibitRules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bureauhub_alerting_configured_inhibit_rules", Help: "Inhibit rules configured.",
		}),
		stateChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_alerting_state_changes_total",
			Help: "Alert state changes observed, by event (pending, firing, resolved, silenced, inhibited, unsuppressed).",
		}, []string{"event"}),
		trackedAlerts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bureauhub_alerting_tracked_alerts", Help: "Alerts whose state the history tracker remembers.",
		}),
		notRunningDrop: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bureauhub_alerting_rule_alerts_dropped_total",
			Help: "Rule alerts dropped because alerting was not running (rule managers resend them).",
		}),
	}
	reg.MustRegister(m.attempts, m.failures, m.reloads, m.lastReloadOK, m.received, m.immediate,
		m.receivers, m.integrations, m.inhibitRules, m.stateChanges, m.trackedAlerts, m.notRunningDrop)
	return m
}

// Run builds the alert store, applies the configuration and dispatches
// until ctx ends; then it stops dispatching and writes the silences and
// notification log snapshots. Call it once.
func (a *Alerting) Run(ctx context.Context) error {
	alerts, err := mem.NewAlerts(ctx, a.cfg.AlertGCInterval, 0, a.silencer, a.logger, a.rec, a.reg, a.flagger)
	if err != nil {
		return fmt.Errorf("create alert store: %w", err)
	}
	defer alerts.Close()
	rt := &runtime{alerts: alerts}

	var wg sync.WaitGroup
	stopc := make(chan struct{})
	wg.Go(func() {
		a.silences.Maintenance(a.cfg.MaintenanceInterval, filepath.Join(a.cfg.DataDir, "silences"), stopc, nil)
	})
	wg.Go(func() {
		a.nflog.Maintenance(a.cfg.MaintenanceInterval, filepath.Join(a.cfg.DataDir, "nflog"), stopc, nil)
	})
	defer func() {
		close(stopc)
		wg.Wait()
	}()

	a.mu.Lock()
	err = a.apply(rt, a.def)
	if err == nil {
		a.rt.Store(rt)
	}
	a.mu.Unlock()
	if err != nil {
		return err
	}
	defer func() {
		a.rt.Store(nil)
		if ac := a.active.Load(); ac != nil {
			ac.inhibitor.Stop()
			ac.dispatcher.Stop()
		}
	}()

	if a.hist != nil {
		wg.Go(func() {
			if err := a.hist.Run(ctx); err != nil {
				a.logger.Error("alert history stopped", "err", err)
			}
		})
	}
	wg.Go(func() { a.runImmediate(ctx, alerts) })
	wg.Go(func() { a.runTracker(ctx, alerts) })
	<-ctx.Done()
	return nil
}

// Reload re-reads the configuration file and applies it. If the file is
// invalid it returns an error naming the field and keeps the
// configuration in force.
func (a *Alerting) Reload() error {
	err := a.reload()
	if err != nil {
		a.m.reloads.WithLabelValues("failure").Inc()
		a.m.lastReloadOK.Set(0)
		return err
	}
	a.m.reloads.WithLabelValues("success").Inc()
	a.m.lastReloadOK.Set(1)
	return nil
}

func (a *Alerting) reload() error {
	def, err := LoadDefinitionFile(a.cfg.ConfigFile)
	if err != nil {
		return fmt.Errorf("alerting.config_file %s: %w", a.cfg.ConfigFile, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if rt := a.rt.Load(); rt != nil {
		if err := a.apply(rt, def); err != nil {
			return fmt.Errorf("alerting.config_file %s: %w", a.cfg.ConfigFile, err)
		}
	}
	a.def = def
	return nil
}
