// Command alertbench measures the hub's alerting: pipeline latency from a
// surge in scraped data to the webhook beside Prometheus + Alertmanager,
// and notification throughput with many active alerts beside
// Alertmanager. See bench/alerting.sh and docs/benchmarks.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/bureauhub/bureauhub/bench/alertbench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "alertbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("alertbench", flag.ContinueOnError)
	var cfg alertbench.Config
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return alertbench.Run(ctx, cfg, os.Stderr)
}
