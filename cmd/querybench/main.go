// Command querybench measures the hub's PromQL query latency and rule
// evaluation time over a day of generated data, side by side with
// Prometheus and VictoriaMetrics holding the same samples. See
// bench/query.sh and docs/benchmarks.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/bureauhub/bureauhub/bench/querybench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "querybench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("querybench", flag.ContinueOnError)
	var cfg querybench.Config
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return querybench.Run(ctx, cfg, os.Stderr)
}
