// Command ingestbench measures end-to-end ingestion throughput of the hub
// and ClickHouse against VictoriaMetrics and Prometheus fed the same load,
// and the bytes each stores per sample. See docs/benchmarks.md and
// bench/run.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/bureauhub/bureauhub/bench/ingest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ingestbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ingestbench", flag.ContinueOnError)
	var cfg ingest.Config
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	command := strings.Join(append([]string{"ingestbench"}, args...), " ")
	return ingest.Run(ctx, cfg, command, os.Stdout, os.Stderr)
}
