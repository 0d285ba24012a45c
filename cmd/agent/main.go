// Command agent runs a bureau's bureauhub agent: it collects host metrics,
// scrapes applications, accepts remote_write, buffers on disk and ships to
// the hub.
package main

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/bureauhub/bureauhub/agent"
	"github.com/bureauhub/bureauhub/internal/daemon"
)

func main() {
	// The agent's heap is mostly short-lived scrape garbage: collect at
	// 30% growth rather than Go's 100%, as VictoriaMetrics's components
	// do (lib/cgroup), trading a little CPU for a footprint near
	// vmagent's, unless GOGC says otherwise.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(30)
	}
	daemon.Main("agent", run)
}

func run(ctx context.Context, args []string) error {
	opts, err := daemon.Parse("agent", "agent.yml", args)
	if err != nil {
		return err
	}
	cfg, err := agent.LoadConfig(opts.ConfigFile)
	if err != nil {
		return err
	}
	if opts.CheckOnly {
		fmt.Println("config OK")
		return nil
	}
	a, err := agent.New(cfg, opts.Logger)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
