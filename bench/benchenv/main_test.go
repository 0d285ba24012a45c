package benchenv

import (
	"context"
	"flag"
	"strings"
	"testing"
)

type testConfig struct{ N int }

func (c *testConfig) RegisterFlags(fs *flag.FlagSet) { fs.IntVar(&c.N, "n", 1, "a number") }

func TestParseAndRun(t *testing.T) {
	var got testConfig
	run := func(_ context.Context, c testConfig, _ []string) error { got = c; return nil }
	if err := parseAndRun[testConfig](context.Background(), "x", []string{"-n", "7"}, run); err != nil || got.N != 7 {
		t.Fatalf("parseAndRun = %v, config %+v; want N 7", err, got)
	}
	if err := parseAndRun[testConfig](context.Background(), "x", []string{"extra"}, run); err == nil || !strings.Contains(err.Error(), "unexpected arguments") {
		t.Errorf("positional argument: %v, want an error naming it", err)
	}
}
