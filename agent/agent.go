// Package agent assembles a bureau's agent: host metrics, Prometheus
// scrapes and remote_write all go through the identity-labelling sink into
// the durable buffer, which the shipper drains into the hub.
package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/prompb"
	"gopkg.in/yaml.v3"

	"github.com/bureauhub/bureauhub/agent/buffer"
	"github.com/bureauhub/bureauhub/agent/hostmetrics"
	"github.com/bureauhub/bureauhub/agent/remotewrite"
	"github.com/bureauhub/bureauhub/agent/scrape"
	"github.com/bureauhub/bureauhub/agent/ship"
	"github.com/bureauhub/bureauhub/agent/sink"
)

// HostMetricsConfig configures collection of the agent's own host.
type HostMetricsConfig struct {
	// Enabled defaults to true.
	Enabled  *bool         `yaml:"enabled"`
	Interval time.Duration `yaml:"interval"`
	// Job is the job label of host series; node_exporter dashboards
	// expect "node".
	Job                string `yaml:"job"`
	hostmetrics.Config `yaml:",inline"`
}

// Config is the agent's configuration file. Besides its own sections it
// takes Prometheus's global and scrape_configs sections, in Prometheus's
// syntax (agent/scrape parses them).
type Config struct {
	Identity sink.Identity `yaml:"identity"`
	// HTTPListenAddress serves /metrics and the remote_write endpoint
	// /api/v1/write.
	HTTPListenAddress string            `yaml:"http_listen_address"`
	Buffer            buffer.Config     `yaml:"buffer"`
	Hub               ship.Config       `yaml:"hub"`
	HostMetrics       HostMetricsConfig `yaml:"host_metrics"`
	// MaxBatchSamples splits large writes into several buffer records
	// (default 2,000, Prometheus's remote_write max_samples_per_send). The
	// agent encodes one record at a time and keeps the encoding buffers
	// for the next, so their size is this times the bytes of a sample
	// with its labels: 50,000 held 12 MB of a 10,000-series agent's
	// 25 MB heap.
	MaxBatchSamples int `yaml:"max_batch_samples"`

	Global        yaml.Node `yaml:"global"`
	ScrapeConfigs yaml.Node `yaml:"scrape_configs"`

	// scrape is the parsed global and scrape_configs sections.
	scrape *scrape.Config
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.HTTPListenAddress == "" {
		c.HTTPListenAddress = "127.0.0.1:9101"
	}
	if c.Identity.Instance == "" {
		c.Identity.Instance, _ = os.Hostname()
	}
	if c.MaxBatchSamples == 0 {
		c.MaxBatchSamples = 2_000
	}
	c.Buffer.SetDefaults()
	c.Hub.SetDefaults()
	if c.HostMetrics.Enabled == nil {
		t := true
		c.HostMetrics.Enabled = &t
	}
	if c.HostMetrics.Interval == 0 {
		c.HostMetrics.Interval = 15 * time.Second
	}
	if c.HostMetrics.Job == "" {
		c.HostMetrics.Job = "node"
	}
	c.HostMetrics.Config.SetDefaults()
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	if err := c.Identity.Validate(); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(c.HTTPListenAddress); err != nil {
		return fmt.Errorf("http_listen_address: %w", err)
	}
	if err := c.Buffer.Validate(); err != nil {
		return err
	}
	if err := c.Hub.Validate(); err != nil {
		return err
	}
	if c.MaxBatchSamples < 1 {
		return errors.New("max_batch_samples: must be positive")
	}
	if *c.HostMetrics.Enabled {
		if c.HostMetrics.Interval < time.Second {
			return errors.New("host_metrics.interval: must be at least 1s")
		}
		if err := c.HostMetrics.Config.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// LoadConfig reads, defaults and validates an agent config file. Unknown
// fields are errors.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := ParseConfig(b, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig parses config text; relative file paths in scrape configs
// are resolved against dir.
func ParseConfig(b []byte, dir string) (*Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// The scrape package reads global and scrape_configs from the same
	// text, with Prometheus's own config types (yaml.v2), so that its
	// errors give the file's line numbers.
	sc, err := scrape.ParseConfig(b, dir)
	if err != nil {
		return nil, err
	}
	cfg.scrape = sc
	return &cfg, nil
}

// Agent is a configured agent.
type Agent struct {
	cfg    *Config
	logger *slog.Logger
	reg    *prometheus.Registry
}

// New returns an agent for a config from LoadConfig or ParseConfig.
func New(cfg *Config, logger *slog.Logger) (*Agent, error) {
	if cfg.scrape == nil {
		return nil, errors.New("config was not built by LoadConfig or ParseConfig")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Agent{cfg: cfg, logger: logger, reg: reg}, nil
}

// Run collects and ships until ctx ends, then stops intake first, so that
// everything accepted is in the buffer before it closes.
func (a *Agent) Run(ctx context.Context) error {
	q, err := buffer.Open(a.cfg.Buffer, a.logger.With("component", "buffer"), a.reg)
	if err != nil {
		return fmt.Errorf("open buffer: %w", err)
	}
	defer q.Close()
	sk, err := sink.New(q, a.cfg.Identity, a.cfg.MaxBatchSamples, a.reg)
	if err != nil {
		return err
	}
	shipper, err := ship.New(a.cfg.Hub, q, a.logger.With("component", "ship"), a.reg)
	if err != nil {
		return err
	}
	rw, err := remotewrite.New(sk, a.logger.With("component", "remote_write"), a.reg)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", a.cfg.HTTPListenAddress)
	if err != nil {
		return fmt.Errorf("listen http_listen_address: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	mux.Handle("/api/v1/write", rw)
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	intakeCtx, stopIntake := context.WithCancel(ctx)
	defer stopIntake()
	shipCtx, stopShip := context.WithCancel(context.WithoutCancel(ctx))
	defer stopShip()

	var intake, shipping sync.WaitGroup
	errs := make(chan error, 4)
	intake.Go(func() {
		if err := hs.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("serve http: %w", err)
		}
	})
	if *a.cfg.HostMetrics.Enabled {
		hc, err := hostmetrics.New(a.cfg.HostMetrics.Config, a.logger.With("component", "hostmetrics"))
		if err != nil {
			return err
		}
		intake.Go(func() { a.collectHost(intakeCtx, hc, sk) })
	}
	if len(a.cfg.scrape.ScrapeConfigs) > 0 {
		sm := scrape.New(a.cfg.scrape, sk, a.logger.With("component", "scrape"), a.reg)
		intake.Go(func() {
			if err := sm.Run(intakeCtx); err != nil {
				errs <- err
			}
		})
	}
	shipping.Go(func() {
		if err := shipper.Run(shipCtx); err != nil {
			errs <- err
		}
	})
	a.logger.Info("agent started", "http", lis.Addr().String(), "bureau", a.cfg.Identity.Bureau,
		"hubs", a.cfg.Hub.Addresses, "buffer", a.cfg.Buffer.Dir, "agent_id", q.ID())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	stopIntake()
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(shutCtx)
	intake.Wait()
	stopShip()
	shipping.Wait()
	a.logger.Info("agent stopped", "unacked_records", q.Stats().Records)
	return runErr
}

// collectHost gathers host metrics every interval, aligned to the
// interval, and writes them to the sink.
func (a *Agent) collectHost(ctx context.Context, hc *hostmetrics.Collector, sk *sink.Sink) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(hc); err != nil {
		a.logger.Error("register host collector", "err", err)
		return
	}
	extra := []prompb.Label{{Name: "job", Value: a.cfg.HostMetrics.Job}}
	interval := a.cfg.HostMetrics.Interval
	for {
		next := time.Now().Truncate(interval).Add(interval)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		mfs, err := reg.Gather()
		if err != nil {
			a.logger.Warn("gather host metrics", "err", err)
		}
		series := familiesToSeries(mfs, next.UnixMilli(), extra)
		if err := sk.Write("host", series); err != nil {
			a.logger.Error("write host metrics to buffer", "err", err)
		}
	}
}
