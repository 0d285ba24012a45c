// Command alertbench measures the hub's alerting: pipeline latency from a
// surge in scraped data to the webhook beside Prometheus + Alertmanager,
// and notification throughput with many active alerts beside
// Alertmanager. See bench/alerting.sh and docs/benchmarks.md.
package main

import (
	"context"
	"os"

	"github.com/bureauhub/bureauhub/bench/alertbench"
	"github.com/bureauhub/bureauhub/bench/benchenv"
)

func main() {
	benchenv.Main[alertbench.Config]("alertbench", func(ctx context.Context, cfg alertbench.Config, _ []string) error {
		return alertbench.Run(ctx, cfg, os.Stderr)
	})
}
