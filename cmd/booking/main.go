// Command booking runs the visa booking reference service
// (hub/refsvc/booking) standalone: one replica on -http.listen-address
// with /metrics, /-/ready and /-/healthy, until SIGINT or SIGTERM.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gopkg.in/yaml.v3"

	// Time zones for booking.location, whatever the machine has.
	_ "time/tzdata"

	"github.com/bureauhub/bureauhub/hub/refsvc"
	"github.com/bureauhub/bureauhub/hub/refsvc/booking"
	"github.com/bureauhub/bureauhub/hub/refsvc/simclock"
	"github.com/bureauhub/bureauhub/internal/daemon"
)

func main() { daemon.Main("booking", run) }

// config is the YAML file.
type config struct {
	// ListenAddress serves the API, /metrics and the probes.
	ListenAddress string `yaml:"listen_address"`
	// Clock is the simulated clock.
	Clock simclock.Config `yaml:"clock"`
	// Booking is the service.
	Booking booking.Config `yaml:"booking"`
}

func (c *config) setDefaults() {
	if c.ListenAddress == "" {
		c.ListenAddress = ":8090"
	}
	c.Booking.SetDefaults()
}

func (c *config) validate() error {
	if _, _, err := net.SplitHostPort(c.ListenAddress); err != nil {
		return fmt.Errorf("listen_address: %w", err)
	}
	if err := c.Clock.Validate("clock"); err != nil {
		return err
	}
	return c.Booking.Validate("booking")
}

func loadConfig(path string) (*config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cfg config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &cfg, nil
}

const listenFlag = "http.listen-address"

// cutFlag removes -name value, -name=value (or with --) from args, which
// daemon.Parse would refuse, and returns its value.
func cutFlag(args []string, name string) (value string, rest []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return value, append(rest, args[i:]...), nil
		}
		bare := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		switch {
		case bare == name:
			if i+1 >= len(args) {
				return "", nil, fmt.Errorf("flag needs an argument: -%s", name)
			}
			value = args[i+1]
			i++
		case strings.HasPrefix(bare, name+"=") && bare != a:
			value = strings.TrimPrefix(bare, name+"=")
		default:
			rest = append(rest, a)
		}
	}
	return value, rest, nil
}

func run(ctx context.Context, args []string) error {
	listen, args, err := cutFlag(args, listenFlag)
	if err != nil {
		return err
	}
	opts, err := daemon.Parse("booking", "booking.yml", args)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(opts.ConfigFile)
	if err != nil {
		return err
	}
	if listen != "" {
		cfg.ListenAddress = listen
		if err := cfg.validate(); err != nil {
			return fmt.Errorf("-%s: %w", listenFlag, err)
		}
	}
	if opts.CheckOnly {
		fmt.Println("config OK")
		return nil
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	svc, err := booking.New(cfg.Booking, opts.Logger, reg, simclock.New(cfg.Clock))
	if err != nil {
		return err
	}
	api, err := svc.NewReplica(refsvc.Replica{ID: "booking-0", Registerer: reg})
	if err != nil {
		svc.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "OK") })
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !svc.Ready() {
			http.Error(w, "starting: applying scheduled releases", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "OK")
	})
	mux.Handle("/api/", api)

	ln, err := net.Listen("tcp", cfg.ListenAddress)
	if err != nil {
		svc.Close()
		return fmt.Errorf("listen: %w", err)
	}
	opts.Logger.Info("booking service listening", "address", ln.Addr().String(), "store", cfg.Booking.Store.Path)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runErr := make(chan error, 1)
	go func() { runErr <- svc.Run(runCtx) }()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	var firstErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		firstErr = fmt.Errorf("serve: %w", err)
	case err := <-runErr:
		runErr <- err // read again below
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && firstErr == nil {
		firstErr = fmt.Errorf("shut down http: %w", err)
	}
	stopRun()
	if err := <-runErr; err != nil && firstErr == nil {
		firstErr = fmt.Errorf("booking service: %w", err)
	}
	if err := svc.Close(); err != nil && firstErr == nil {
		firstErr = err
	}
	if errors.Is(firstErr, http.ErrServerClosed) {
		firstErr = nil
	}
	return firstErr
}
