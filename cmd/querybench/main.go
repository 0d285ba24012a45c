// Command querybench measures the hub's PromQL query latency and rule
// evaluation time over a day of generated data, side by side with
// Prometheus and VictoriaMetrics holding the same samples. See
// bench/query.sh and docs/benchmarks.md.
package main

import (
	"context"
	"os"

	"github.com/bureauhub/bureauhub/bench/benchenv"
	"github.com/bureauhub/bureauhub/bench/querybench"
)

func main() {
	benchenv.Main[querybench.Config]("querybench", func(ctx context.Context, cfg querybench.Config, _ []string) error {
		return querybench.Run(ctx, cfg, os.Stderr)
	})
}
