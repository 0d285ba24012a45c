// Package scrape runs Prometheus's own discovery and scrape managers for the
// agent, with scrape_configs in Prometheus syntax, and hands every scrape's
// samples to the durable sink in one batch per scrape.
package scrape

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	promscrape "github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"

	"github.com/bureauhub/bureauhub/agent/sink"

	// Service discovery mechanisms the agent supports besides static_configs.
	_ "github.com/prometheus/prometheus/discovery/file"
	_ "github.com/prometheus/prometheus/discovery/http"
)

// Writer receives each scrape's series in a batch; *sink.Sink implements
// it.
type Writer interface {
	NewBatch(source string) *sink.Batch
	Unsupported(source, reason string, n int)
}

// LoadConfig parses a Prometheus configuration holding global and
// scrape_configs; Prometheus's own parser validates it and applies its
// defaults (interval, timeout, honor_labels, relabeling).
func LoadConfig(yamlText string, logger *slog.Logger) (*config.Config, error) {
	cfg, err := config.Load(yamlText, logger)
	if err != nil {
		return nil, err
	}
	if _, err := cfg.GetScrapeConfigs(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Manager owns the discovery and scrape managers.
type Manager struct {
	cfg    *config.Config
	w      Writer
	logger *slog.Logger
	reg    prometheus.Registerer

	mu      sync.Mutex
	scraper *promscrape.Manager // set by Run
}

// New returns a Manager; Run starts it. reg also gets per-target scrape
// health: bureauhub_agent_target_up and
// bureauhub_agent_target_scrape_duration_seconds{job, instance}.
func New(cfg *config.Config, w Writer, logger *slog.Logger, reg prometheus.Registerer) *Manager {
	m := &Manager{cfg: cfg, w: w, logger: logger, reg: reg}
	if reg != nil {
		reg.MustRegister(targetHealth{m})
	}
	return m
}

var (
	targetUpDesc = prometheus.NewDesc("bureauhub_agent_target_up",
		"1 if the last scrape of the target succeeded, 0 if it failed (unknown targets are not listed).", []string{"job", "instance"}, nil)
	targetDurationDesc = prometheus.NewDesc("bureauhub_agent_target_scrape_duration_seconds",
		"Duration of the last scrape of the target.", []string{"job", "instance"}, nil)
)

// targetHealth reports each active target's last scrape, read from
// Prometheus's scrape manager at collection time.
type targetHealth struct{ m *Manager }

func (t targetHealth) Describe(ch chan<- *prometheus.Desc) {
	ch <- targetUpDesc
	ch <- targetDurationDesc
}

func (t targetHealth) Collect(ch chan<- prometheus.Metric) {
	t.m.mu.Lock()
	sm := t.m.scraper
	t.m.mu.Unlock()
	if sm == nil {
		return
	}
	for job, targets := range sm.TargetsActive() {
		for _, tg := range targets {
			var up float64
			switch tg.Health() {
			case promscrape.HealthGood:
				up = 1
			case promscrape.HealthBad:
				up = 0
			default:
				continue // not scraped yet
			}
			inst := tg.DiscoveredLabels(labels.NewBuilder(labels.EmptyLabels())).Get("__address__")
			if v := tg.Labels(labels.NewBuilder(labels.EmptyLabels())).Get("instance"); v != "" {
				inst = v
			}
			ch <- prometheus.MustNewConstMetric(targetUpDesc, prometheus.GaugeValue, up, job, inst)
			ch <- prometheus.MustNewConstMetric(targetDurationDesc, prometheus.GaugeValue, tg.LastScrapeDuration().Seconds(), job, inst)
		}
	}
}

// Run scrapes until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	sm, err := promscrape.NewManager(&promscrape.Options{}, m.logger.With("component", "scrape"), nil, nil, appendable{m.w}, m.reg)
	if err != nil {
		return fmt.Errorf("create scrape manager: %w", err)
	}
	scfgs, err := m.cfg.GetScrapeConfigs()
	if err != nil {
		return err
	}
	if err := sm.ApplyConfig(m.cfg); err != nil {
		return fmt.Errorf("apply scrape config: %w", err)
	}
	m.mu.Lock()
	m.scraper = sm
	m.mu.Unlock()
	var wg sync.WaitGroup
	targets, err := m.discover(ctx, scfgs, &wg)
	if err != nil {
		return err
	}
	wg.Go(func() {
		if err := sm.Run(targets); err != nil {
			m.logger.Error("scrape manager stopped", "err", err)
		}
	})
	<-ctx.Done()
	sm.Stop()
	wg.Wait()
	return nil
}

// discover returns the channel of target groups the scrape manager reads.
// When every job lists only static targets there is nothing to discover:
// the groups are sent once and no discovery manager runs (its sender wakes
// every 100 ms forever, a third of an idle agent's CPU).
func (m *Manager) discover(ctx context.Context, scfgs []*config.ScrapeConfig, wg *sync.WaitGroup) (<-chan map[string][]*targetgroup.Group, error) {
	static := make(map[string][]*targetgroup.Group, len(scfgs))
	allStatic := true
	for _, sc := range scfgs {
		for _, c := range sc.ServiceDiscoveryConfigs {
			sc2, ok := c.(discovery.StaticConfig)
			if !ok {
				allStatic = false
				break
			}
			for i, tg := range sc2 {
				if tg.Source == "" {
					tg.Source = fmt.Sprint(i)
				}
				static[sc.JobName] = append(static[sc.JobName], tg)
			}
		}
	}
	if allStatic {
		ch := make(chan map[string][]*targetgroup.Group, 1)
		ch <- static
		return ch, nil
	}
	sdMetrics, err := discovery.CreateAndRegisterSDMetrics(m.reg)
	if err != nil {
		return nil, fmt.Errorf("register discovery metrics: %w", err)
	}
	dm := discovery.NewManager(ctx, m.logger.With("component", "discovery"), m.reg, sdMetrics, discovery.Name("scrape"))
	if dm == nil {
		return nil, errors.New("create discovery manager")
	}
	sd := make(map[string]discovery.Configs, len(scfgs))
	for _, sc := range scfgs {
		sd[sc.JobName] = sc.ServiceDiscoveryConfigs
	}
	if err := dm.ApplyConfig(sd); err != nil {
		return nil, fmt.Errorf("apply discovery config: %w", err)
	}
	wg.Go(func() {
		if err := dm.Run(); err != nil && ctx.Err() == nil {
			m.logger.Error("discovery manager stopped", "err", err)
		}
	})
	return dm.SyncCh(), nil
}

// appendable adapts Writer to Prometheus's storage.AppendableV2: each
// scrape's appender adds its series to a sink batch, which encodes and
// compresses them record by record as they come, and commits it in
// Commit. A scrape holds its compressed records and one record being
// encoded rather than a label and a sample slice per series (a
// 10,000-series scrape made 20,000 allocations and held 8 MB until Commit).
type appendable struct{ w Writer }

func (a appendable) AppenderV2(context.Context) storage.AppenderV2 {
	return &appender{w: a.w}
}

type appender struct {
	w    Writer
	b    *sink.Batch // nil until the first sample
	hist int
}

func (a *appender) Append(_ storage.SeriesRef, ls labels.Labels, _, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, _ storage.AppendV2Options) (storage.SeriesRef, error) {
	if h != nil || fh != nil {
		a.hist++
		return 0, nil
	}
	if a.b == nil {
		a.b = a.w.NewBatch("scrape")
	}
	a.b.Add(ls, t, v)
	// The scrape loop tracks staleness (and caches series) only for
	// non-zero refs, so return one that stands for ls: its hash. The
	// appender itself never reads refs; it always gets ls.
	if ref := storage.SeriesRef(ls.Hash()); ref != 0 {
		return ref, nil
	}
	return 1, nil
}

func (a *appender) Commit() error {
	if a.hist > 0 {
		a.w.Unsupported("scrape", "native_histogram", a.hist)
	}
	if a.b == nil {
		return nil
	}
	err := a.b.Commit()
	a.b = nil
	return err
}

func (a *appender) Rollback() error {
	if a.b != nil {
		a.b.Discard()
		a.b = nil
	}
	return nil
}
