package benchenv

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
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

func TestRerenderAndWorkDir(t *testing.T) {
	dir := t.TempDir()
	from := filepath.Join(dir, "r.json")
	if err := WriteJSON(from, map[string]int{"n": 3}); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	md := filepath.Join(dir, "r.md")
	err := Rerender(from, md, func(r *map[string]int) string { return fmt.Sprintf("n=%d\n", (*r)["n"]) }, &out)
	if b, _ := os.ReadFile(md); err != nil || string(b) != "n=3\n" || out.String() != "n=3\n" {
		t.Errorf("Rerender: %v, file %q, out %q; want n=3", err, b, out.String())
	}
	if err := Rerender(md, md, func(r *map[string]int) string { return "" }, &out); err == nil || !strings.Contains(err.Error(), md) {
		t.Errorf("Rerender of a non-JSON file: %v, want an error naming it", err)
	}
	w, err := WorkDir(filepath.Join(dir, "a", "b"), "x")
	if st, serr := os.Stat(w); err != nil || serr != nil || !st.IsDir() || !filepath.IsAbs(w) {
		t.Errorf("WorkDir: %q %v %v", w, err, serr)
	}
}
