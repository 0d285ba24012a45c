// Command loadgen is the surge load generator of the reference services: it
// replays a scenario (steady, healthcode-0740, visa-release) against the
// booking and health-code services on loopback, prints a summary and
// writes a per-second JSON report. See docs/refsvc.md and
// hub/refsvc/loadgen.
//
//	loadgen -scenario healthcode-0740 -target.healthcode http://127.0.0.1:8081 \
//	    -rate 200 -speedup 60 -window 07:00-09:00 -out surge.json
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gopkg.in/yaml.v3"

	"github.com/bureauhub/bureauhub/hub/refsvc/loadgen"
	"github.com/bureauhub/bureauhub/internal/daemon"
)

func main() { daemon.Main("loadgen", run) }

// options are the flags of the binary beyond loadgen.Config.
type options struct {
	configFile string
	out        string
	listen     string
	logLevel   string
}

// parse reads the flags. With -config.file, the YAML file gives the
// configuration and the flags given explicitly override it.
func parse(args []string) (loadgen.Config, options, error) {
	var cfg loadgen.Config
	cfg.SetDefaults()
	var opts options
	newFlags := func(cfg *loadgen.Config) *flag.FlagSet {
		fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
		fs.Usage = func() {
			fmt.Fprintf(fs.Output(), "Usage: loadgen [flags]\n\nGenerates open-loop load on the reference services and reports it per second.\n\n")
			fs.PrintDefaults()
		}
		fs.StringVar(&opts.configFile, "config.file", "", "optional YAML loadgen.Config; flags given explicitly override it")
		fs.StringVar(&opts.out, "out", "", "write the JSON report (per-second rows and totals) to this file")
		fs.StringVar(&opts.listen, "http.listen-address", "", "serve the generator's own /metrics on this address, e.g. 127.0.0.1:9099")
		fs.StringVar(&opts.logLevel, "log.level", "info", "debug, info, warn or error")
		cfg.RegisterFlags(fs)
		return fs
	}
	if err := newFlags(&cfg).Parse(args); err != nil {
		return cfg, opts, err
	}
	if opts.configFile != "" {
		raw, err := os.ReadFile(opts.configFile)
		if err != nil {
			return cfg, opts, fmt.Errorf("read config: %w", err)
		}
		var fromFile loadgen.Config
		if err := yaml.Unmarshal(raw, &fromFile); err != nil {
			return cfg, opts, fmt.Errorf("parse %s: %w", opts.configFile, err)
		}
		fromFile.SetDefaults()
		cfg = fromFile
		if err := newFlags(&cfg).Parse(args); err != nil {
			return cfg, opts, err
		}
	}
	return cfg, opts, nil
}

func run(ctx context.Context, args []string) error {
	cfg, opts, err := parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(opts.logLevel)); err != nil {
		return fmt.Errorf("-log.level: %w", err)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := cfg.Validate(); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if opts.listen != "" {
		stop, err := serveMetrics(opts.listen, reg, logger)
		if err != nil {
			return err
		}
		defer stop()
	}

	rep, err := loadgen.Run(ctx, cfg, logger, reg)
	if err != nil {
		return err
	}
	if opts.out != "" {
		if err := writeReport(opts.out, rep); err != nil {
			return err
		}
	}
	return rep.WriteSummary(os.Stdout)
}

// serveMetrics serves /metrics until the returned stop is called.
func serveMetrics(addr string, reg *prometheus.Registry, logger *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-http.listen-address: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server failed", "err", err)
		}
	}()
	logger.Info("serving metrics", "address", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

func writeReport(path string, rep *loadgen.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := rep.WriteJSON(f); err != nil {
		f.Close()
		return fmt.Errorf("write report: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
