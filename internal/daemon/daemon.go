// Package daemon holds the start-up every bureauhub daemon shares: its
// common flags, its slog logger, and turning a run function's error into an
// exit code on SIGINT/SIGTERM-aware context.
package daemon

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// Options are the flags every daemon takes.
type Options struct {
	ConfigFile string
	CheckOnly  bool
	Logger     *slog.Logger
}

// Parse reads the common flags (-config.file, -log.level, -config.check)
// and builds a JSON logger on stderr at the chosen level.
func Parse(name, defaultConfig string, args []string) (Options, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	configFile := fs.String("config.file", defaultConfig, "path to the YAML configuration")
	logLevel := fs.String("log.level", "info", "debug, info, warn or error")
	checkOnly := fs.Bool("config.check", false, "validate the configuration and exit")
	if err := fs.Parse(args); err != nil {
		return Options{}, err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return Options{}, fmt.Errorf("-log.level: %w", err)
	}
	return Options{
		ConfigFile: *configFile,
		CheckOnly:  *checkOnly,
		Logger:     slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}, nil
}

// Main runs run with a context that ends on SIGINT or SIGTERM and exits
// with status 1, printing the error, if it fails. It is the one place a
// daemon exits.
func Main(name string, run func(ctx context.Context, args []string) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}
