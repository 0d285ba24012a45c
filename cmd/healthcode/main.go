// Command healthcode runs the health-code scan reference service standalone:
// one replica on a listen address, with /metrics, /-/ready (503 while the
// population is being seeded) and /-/healthy. The hub hosts the same
// service with many replicas; see hub/refsvc/healthcode and docs/refsvc.md.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gopkg.in/yaml.v3"

	"github.com/bureauhub/bureauhub/hub/refsvc"
	"github.com/bureauhub/bureauhub/hub/refsvc/healthcode"
	"github.com/bureauhub/bureauhub/hub/refsvc/simclock"
	"github.com/bureauhub/bureauhub/internal/daemon"
)

func main() { daemon.Main("healthcode", run) }

// Config is the standalone service's configuration file.
type Config struct {
	// ListenAddress serves the API, /metrics, /-/ready and /-/healthy.
	ListenAddress string `yaml:"listen_address"`
	// ShutdownTimeout is how long in-flight requests get after SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Clock is the simulated clock codes are coloured by.
	Clock simclock.Config `yaml:"clock"`
	// HealthCode is the service.
	HealthCode healthcode.Config `yaml:"healthcode"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.ListenAddress == "" {
		c.ListenAddress = "127.0.0.1:8090"
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	c.HealthCode.SetDefaults()
}

// Validate names the first invalid field.
func (c *Config) Validate() error {
	if c.ShutdownTimeout < 0 {
		return fmt.Errorf("shutdown_timeout: must not be negative, got %s", c.ShutdownTimeout)
	}
	if err := c.Clock.Validate("clock"); err != nil {
		return err
	}
	return c.HealthCode.Validate("healthcode")
}

// LoadConfig reads, defaults and validates the configuration file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &cfg, nil
}

func run(ctx context.Context, args []string) error {
	opts, err := daemon.Parse("healthcode", "healthcode.yml", args)
	if err != nil {
		return err
	}
	cfg, err := LoadConfig(opts.ConfigFile)
	if err != nil {
		return err
	}
	if opts.CheckOnly {
		fmt.Println("config OK")
		return nil
	}
	ln, err := net.Listen("tcp", cfg.ListenAddress)
	if err != nil {
		return fmt.Errorf("listen_address: %w", err)
	}
	return serve(ctx, cfg, opts.Logger, ln)
}

// serve runs the service on ln until ctx ends. It listens before the
// population is seeded, answering 503 until it is ready.
func serve(ctx context.Context, cfg *Config, logger *slog.Logger, ln net.Listener) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var api atomic.Pointer[http.Handler] // set once the replica is ready
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "OK") })
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if api.Load() == nil {
			http.Error(w, "seeding", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "OK")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h := api.Load()
		if h == nil {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, `{"error":"service: not ready, seeding the population","reason":"not_ready"}`)
			return
		}
		(*h).ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("listening", "address", ln.Addr().String())

	stopServer := func() error {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		err := srv.Shutdown(sctx)
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		if err != nil {
			return fmt.Errorf("shut down http server: %w", err)
		}
		return nil
	}

	svc, err := healthcode.New(cfg.HealthCode, logger, reg, simclock.New(cfg.Clock))
	if err != nil {
		return errors.Join(err, stopServer())
	}
	h, err := svc.NewReplica(refsvc.Replica{ID: "healthcode-0", Registerer: reg})
	if err != nil {
		return errors.Join(err, stopServer(), svc.Close())
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- svc.Run(runCtx) }()
	api.Store(&h)
	logger.Info("ready")

	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case serr := <-served:
		served <- serr // Serve failed by itself; stopServer reports it
	}
	err = stopServer()
	stopRun()
	err = errors.Join(err, <-ran)
	if c, ok := h.(io.Closer); ok {
		err = errors.Join(err, c.Close())
	}
	return errors.Join(err, svc.Close())
}
