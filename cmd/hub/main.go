// Command hub runs the bureauhub hub: it receives agents' batches over gRPC,
// stores them in ClickHouse, answers PromQL and evaluates rules.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/bureauhub/bureauhub/hub"
	"github.com/bureauhub/bureauhub/internal/daemon"
)

func main() { daemon.Main("hub", run) }

func run(ctx context.Context, args []string) error {
	opts, err := daemon.Parse("hub", "hub.yml", args)
	if err != nil {
		return err
	}
	cfg, err := hub.LoadConfig(opts.ConfigFile)
	if err != nil {
		return err
	}
	if opts.CheckOnly {
		fmt.Println("config OK")
		return nil
	}
	h, err := hub.New(cfg, opts.Logger)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := h.Reload(); err != nil {
				opts.Logger.Error("rule reload on SIGHUP failed; keeping the previous rules", "err", err)
			}
		}
	}()
	return h.Run(ctx)
}
