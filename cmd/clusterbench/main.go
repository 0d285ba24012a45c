// Command clusterbench measures what a hub cluster costs (ingest
// throughput and rule-evaluation latency of one hub alone beside the same
// hub as one of three) and how fast a rule group fails over when its
// owner is SIGKILLed. See bench/cluster.sh and docs/benchmarks.md.
package main

import (
	"context"
	"os"

	"github.com/bureauhub/bureauhub/bench/benchenv"
	"github.com/bureauhub/bureauhub/bench/clusterbench"
)

func main() {
	benchenv.Main[clusterbench.Config]("clusterbench", func(ctx context.Context, cfg clusterbench.Config, _ []string) error {
		return clusterbench.Run(ctx, cfg, os.Stderr)
	})
}
