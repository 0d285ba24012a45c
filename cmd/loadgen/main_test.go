package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bureauhub/bureauhub/hub/refsvc/loadgen"
)

func TestParseFlagsOverrideConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "loadgen.yml")
	yml := "scenario: healthcode-0740\nrate: 50\ntimeout: 3s\nwindow: {from: 7h, to: 9h}\ntargets: {healthcode: 'http://127.0.0.1:8081'}\n"
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		args      []string
		wantRate  float64
		wantFrom  time.Duration
		wantSpeed float64
	}{
		{"file only", []string{"-config.file", path}, 50, 7 * time.Hour, 0},
		{"flags override the file", []string{"-config.file", path, "-rate", "80", "-window", "07:30-08:00", "-speedup", "60"}, 80, 7*time.Hour + 30*time.Minute, 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := parse(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Scenario != loadgen.ScenarioHealthcode740 || cfg.Rate != tt.wantRate || cfg.Window.From != tt.wantFrom ||
				cfg.Clock.Speedup != tt.wantSpeed || cfg.Timeout != 3*time.Second || cfg.MaxOutstanding != 20000 {
				t.Errorf("got %+v", cfg)
			}
			if err := cfg.Validate(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestRefusesRemoteTarget(t *testing.T) {
	cfg, _, err := parse([]string{"-target.healthcode", "http://10.1.2.3:80"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err == nil {
		t.Fatal("a non-loopback target was accepted without -allow-remote")
	}
	cfg, _, _ = parse([]string{"-target.healthcode", "http://10.1.2.3:80", "-allow-remote"})
	if err := cfg.Validate(); err != nil {
		t.Fatalf("with -allow-remote: %v", err)
	}
}
