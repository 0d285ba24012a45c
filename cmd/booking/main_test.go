package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestExampleConfig(t *testing.T) {
	cfg, err := loadConfig("booking.yml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Booking.Location != "Asia/Shanghai" || len(cfg.Booking.Releases) != 4 || cfg.Clock.Speedup != 288 {
		t.Errorf("example config read as %+v", cfg)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name, yaml, field string
	}{
		{"missing store path", "booking: {}\n", "booking.store.path"},
		{"bad speedup", "clock: {speedup: -1}\nbooking: {store: {path: x.db}}\n", "clock.speedup"},
		{"bad listen address", "listen_address: nowhere\nbooking: {store: {path: x.db}}\n", "listen_address"},
		{"bad release", "booking: {store: {path: x.db}, releases: [{at: '25:00', fraction: 1}]}\n", "booking.releases[0].at"},
		{"unknown field", "booking: {store: {path: x.db}, slots: 3}\n", "field slots not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "booking.yml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := loadConfig(path)
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %v, want one naming %s", err, tt.field)
			}
		})
	}
}

func TestCutFlag(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		value     string
		rest      []string
		wantError bool
	}{
		{"absent", []string{"-config.file", "x.yml"}, "", []string{"-config.file", "x.yml"}, false},
		{"separate", []string{"-http.listen-address", ":1", "-config.check"}, ":1", []string{"-config.check"}, false},
		{"equals, double dash", []string{"--http.listen-address=:2"}, ":2", nil, false},
		{"missing value", []string{"-http.listen-address"}, "", nil, true},
		{"after --", []string{"--", "-http.listen-address=:3"}, "", []string{"--", "-http.listen-address=:3"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, rest, err := cutFlag(tt.args, listenFlag)
			if (err != nil) != tt.wantError || v != tt.value || !slices.Equal(rest, tt.rest) {
				t.Errorf("cutFlag(%q) = %q, %q, %v", tt.args, v, rest, err)
			}
		})
	}
}

// TestRun starts the binary's run, waits until ready, uses the API and
// stops it as SIGTERM would.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "booking.yml")
	yml := "booking:\n  store: {path: " + filepath.Join(dir, "booking.db") + ", no_sync: true}\n  capacity: {service_time: 1ms}\n"
	if err := os.WriteFile(cfgPath, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-config.file", cfgPath, "-log.level", "error", "-http.listen-address", addr})
	}()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _ := get("/-/ready"); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not ready within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, tt := range []struct {
		path, want string
	}{
		{"/-/healthy", "OK"},
		{"/api/v1/consulates", `"guangzhou"`},
		{"/api/v1/slots?consulate=beijing&visa_type=tourist&limit=1", `"available"`},
		{"/metrics", `booking_requests_total{code="200",endpoint="consulates"} 1`},
	} {
		if code, body := get(tt.path); code != http.StatusOK || !strings.Contains(body, tt.want) {
			t.Errorf("GET %s: %d, body lacks %s:\n%.500s", tt.path, code, tt.want, body)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}
