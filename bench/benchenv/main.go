package benchenv

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Flagged is a benchmark's config: it registers its flags.
type Flagged[C any] interface {
	*C
	RegisterFlags(fs *flag.FlagSet)
}

// Main is a benchmark command's main: it parses the config's flags (no
// positional arguments), runs until SIGINT or SIGTERM cancels ctx, and
// exits 1 with name and the error when run fails.
func Main[C any, P Flagged[C]](name string, run func(ctx context.Context, cfg C, args []string) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := parseAndRun[C, P](ctx, name, os.Args[1:], run)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

func parseAndRun[C any, P Flagged[C]](ctx context.Context, name string, args []string, run func(context.Context, C, []string) error) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var cfg C
	P(&cfg).RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return run(ctx, cfg, args)
}
