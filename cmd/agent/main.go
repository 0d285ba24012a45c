// Command agent runs a bureau's bureauhub agent: it collects host metrics,
// scrapes applications, accepts remote_write, buffers on disk and ships to
// the hub.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/bureauhub/bureauhub/agent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	configFile := fs.String("config.file", "agent.yml", "path to the agent's YAML configuration")
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
	cfg, err := agent.LoadConfig(*configFile, logger)
	if err != nil {
		return err
	}
	if *checkOnly {
		fmt.Println("config OK")
		return nil
	}
	a, err := agent.New(cfg, logger)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
