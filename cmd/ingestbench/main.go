// Command ingestbench measures end-to-end ingestion throughput of the hub
// and ClickHouse against VictoriaMetrics and Prometheus fed the same load,
// and the bytes each stores per sample. See docs/benchmarks.md and
// bench/run.sh.
package main

import (
	"context"
	"os"
	"strings"

	"github.com/bureauhub/bureauhub/bench/benchenv"
	"github.com/bureauhub/bureauhub/bench/ingest"
)

func main() {
	benchenv.Main[ingest.Config]("ingestbench", func(ctx context.Context, cfg ingest.Config, args []string) error {
		command := strings.Join(append([]string{"ingestbench"}, args...), " ")
		return ingest.Run(ctx, cfg, command, os.Stdout, os.Stderr)
	})
}
