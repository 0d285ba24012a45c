// Command clusterbench measures what a hub cluster costs (ingest
// throughput and rule-evaluation latency of one hub alone beside the same
// hub as one of three) and how fast a rule group fails over when its
// owner is SIGKILLed. See bench/cluster.sh and docs/benchmarks.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/bureauhub/bureauhub/bench/clusterbench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "clusterbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("clusterbench", flag.ContinueOnError)
	var cfg clusterbench.Config
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return clusterbench.Run(ctx, cfg, os.Stderr)
}
