// Command agent runs a bureau's bureauhub agent: it collects host metrics,
// scrapes applications, accepts remote_write, buffers on disk and ships to
// the hub.
package main

import (
	"context"
	"fmt"

	"github.com/bureauhub/bureauhub/agent"
	"github.com/bureauhub/bureauhub/internal/daemon"
)

func main() { daemon.Main("agent", run) }

func run(ctx context.Context, args []string) error {
	opts, err := daemon.Parse("agent", "agent.yml", args)
	if err != nil {
		return err
	}
	cfg, err := agent.LoadConfig(opts.ConfigFile, opts.Logger)
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
