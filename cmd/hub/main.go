// Command hub runs the bureauhub hub: it receives agents' batches over gRPC
// and stores them in ClickHouse.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/bureauhub/bureauhub/hub"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "hub:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("hub", flag.ContinueOnError)
	configFile := fs.String("config.file", "hub.yml", "path to the hub's YAML configuration")
	logLevel := fs.String("log.level", "info", "debug, info, warn or error")
	checkOnly := fs.Bool("config.check", false, "validate the configuration and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log.level: %w", err)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg, err := hub.LoadConfig(*configFile)
	if err != nil {
		return err
	}
	if *checkOnly {
		fmt.Println("config OK")
		return nil
	}
	h, err := hub.New(cfg, logger)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := h.Reload(); err != nil {
				logger.Error("rule reload on SIGHUP failed; keeping the previous rules", "err", err)
			}
		}
	}()
	return h.Run(ctx)
}
