package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bureauhub/bureauhub/hub/refsvc/healthcode"
)

const exampleConfig = "../../hub/refsvc/healthcode/testdata/healthcode.yml"

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := LoadConfig(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HealthCode.Population != 100_000 || cfg.HealthCode.Capacity.ServiceTime != 20*time.Millisecond || cfg.HealthCode.Cache.TTL != 10*time.Second {
		t.Fatalf("example config read as %+v", cfg)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"empty file", "", "healthcode.store_path: required"},
		{"unknown field", "healthcode:\n  store_path: x\n  colour: red\n", "field colour not found"},
		{"population", "healthcode:\n  store_path: x\n  population: -3\n", "healthcode.population:"},
		{"cache size", "healthcode:\n  store_path: x\n  cache: {size: -1}\n", "healthcode.cache.size:"},
		{"capacity", "healthcode:\n  store_path: x\n  capacity: {concurrency: -1}\n", "healthcode.capacity.concurrency:"},
		{"clock", "clock: {speedup: -1}\nhealthcode:\n  store_path: x\n", "clock.speedup:"},
		{"shutdown timeout", "shutdown_timeout: -1s\nhealthcode:\n  store_path: x\n", "shutdown_timeout:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "healthcode.yml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// TestServe runs the binary's server on a small population: it becomes
// ready, answers scans and metrics, and stops cleanly when ctx ends.
func TestServe(t *testing.T) {
	cfg, err := LoadConfig(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.HealthCode.StorePath = filepath.Join(t.TempDir(), "data", "healthcode.db")
	cfg.HealthCode.Population = 1000
	cfg.HealthCode.Capacity.ServiceTime = time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, slog.New(slog.DiscardHandler), ln) }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		if resp, err := http.Get(base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	status, body := get("/api/v1/codes/" + healthcode.PersonID(999))
	var code healthcode.Code
	if status != http.StatusOK || json.Unmarshal([]byte(body), &code) != nil || code.ID != healthcode.PersonID(999) {
		t.Fatalf("scan: %d %s", status, body)
	}
	if status, _ := get("/-/healthy"); status != http.StatusOK {
		t.Fatalf("/-/healthy: %d", status)
	}
	status, body = get("/metrics")
	for _, want := range []string{"healthcode_scan_duration_seconds_count 1", "healthcode_population 1000", "refsvc_capacity_inflight_requests", "go_goroutines"} {
		if status != http.StatusOK || !strings.Contains(body, want) {
			t.Fatalf("/metrics lacks %q: %d", want, status)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v after shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after ctx ended")
	}
}
