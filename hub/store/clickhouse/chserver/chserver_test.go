package chserver_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chserver"
)

// startServer starts a server in a temporary directory, stopped in Cleanup.
// Without a ClickHouse binary it skips, except in CI, where it fails.
func startServer(t *testing.T, opts chserver.Options) *chserver.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping clickhouse-server test in -short mode")
	}
	t.Parallel()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	began := time.Now()
	srv, err := chserver.Start(t.Context(), opts)
	if errors.Is(err, chserver.ErrBinaryNotFound) {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatalf("%v; CI must install Debian's clickhouse-server (apt-get install clickhouse-server)", err)
		}
		t.Skipf("%v; install Debian's clickhouse-server to run this test", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("clickhouse-server ready in %v on tcp %s, http %s", time.Since(began).Round(time.Millisecond), srv.Addr(), srv.HTTPAddr())
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	return srv
}

func TestServerStoresAcrossRestart(t *testing.T) {
	srv := startServer(t, chserver.Options{})
	ctx := t.Context()

	version, err := srv.Query(ctx, "SELECT version()")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ClickHouse version %s", strings.TrimSpace(version))

	// LowCardinality needs the experimental setting on 18.16, for the CREATE only.
	_, err = srv.QueryWithSettings(ctx, `
		CREATE TABLE default.t (
			ts DateTime,
			a LowCardinality(String),
			b UInt64
		) ENGINE = MergeTree() PARTITION BY toYYYYMMDD(ts) ORDER BY (a, ts)`,
		map[string]string{"allow_experimental_low_cardinality_type": "1"})
	if err != nil {
		t.Fatal(err)
	}

	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr: []string{srv.Addr()},
		Auth: clickhouse.Auth{Database: "default", Username: "default"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// 18.16 needs the column list: without it clickhouse-go sees 0 columns.
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO t (ts, a, b)")
	if err != nil {
		t.Fatal(err)
	}
	const rows = 1000
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range rows {
		if err := batch.Append(base.Add(time.Duration(i)*time.Second), fmt.Sprintf("host-%d", i%7), uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}

	const countSQL = "SELECT count(), uniqExact(a), sum(b), any(toTypeName(a)) FROM default.t"
	const want = "1000\t7\t499500\tLowCardinality(String)\n"
	if got, err := srv.Query(ctx, countSQL); err != nil || got != want {
		t.Fatalf("before restart: Query(%q) = %q, %v; want %q", countSQL, got, err, want)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM t").Scan(&n); err != nil || n != rows {
		t.Fatalf("native count = %d, %v; want %d", n, err, rows)
	}

	addr, httpAddr := srv.Addr(), srv.HTTPAddr()
	began := time.Now()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped in %v", time.Since(began).Round(time.Millisecond))
	if err := srv.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := srv.Query(ctx, "SELECT 1"); err == nil {
		t.Fatal("Query succeeded on a stopped server")
	}

	began = time.Now()
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("restarted in %v", time.Since(began).Round(time.Millisecond))
	if srv.Addr() != addr || srv.HTTPAddr() != httpAddr {
		t.Errorf("addresses after Restart = %s, %s; want %s, %s", srv.Addr(), srv.HTTPAddr(), addr, httpAddr)
	}
	if got, err := srv.Query(ctx, countSQL); err != nil || got != want {
		t.Fatalf("after restart: Query(%q) = %q, %v; want %q", countSQL, got, err, want)
	}
	// The driver reconnects on its own once the server is back.
	if err := conn.QueryRow(ctx, "SELECT count() FROM t").Scan(&n); err != nil || n != rows {
		t.Fatalf("native count after restart = %d, %v; want %d", n, err, rows)
	}
}

func TestQueryReportsClickHouseError(t *testing.T) {
	srv := startServer(t, chserver.Options{})
	_, err := srv.Query(t.Context(), "SELEC 1")
	if err == nil || !strings.Contains(err.Error(), "Syntax error") {
		t.Fatalf("Query(SELEC 1) error = %v; want ClickHouse's syntax error", err)
	}
}

func TestRestartRunningServer(t *testing.T) {
	srv := startServer(t, chserver.Options{})
	ctx := t.Context()
	if _, err := srv.Query(ctx, "CREATE TABLE default.kv (k String) ENGINE = TinyLog"); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("restarted in %v", time.Since(began).Round(time.Millisecond))
	if got, err := srv.Query(ctx, "EXISTS TABLE default.kv"); err != nil || got != "1\n" {
		t.Fatalf("EXISTS TABLE after Restart = %q, %v; want 1", got, err)
	}
}

func TestStartCanceled(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping clickhouse-server test in -short mode")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	srv, err := chserver.Start(ctx, chserver.Options{Dir: t.TempDir()})
	if errors.Is(err, chserver.ErrBinaryNotFound) {
		t.Skip(err)
	}
	if err == nil {
		srv.Stop()
		t.Fatal("Start succeeded with a canceled context")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Start error = %v; want context.Canceled", err)
	}
}

func TestStartFails(t *testing.T) {
	tests := []struct {
		name     string
		opts     chserver.Options
		wantIs   error
		wantText string
	}{
		{
			name:     "missing binary path",
			opts:     chserver.Options{Binary: "/nonexistent/clickhouse-server"},
			wantIs:   chserver.ErrBinaryNotFound,
			wantText: "/nonexistent/clickhouse-server",
		},
		{
			name:     "binary not in PATH",
			opts:     chserver.Options{Binary: "no-such-clickhouse-server"},
			wantIs:   chserver.ErrBinaryNotFound,
			wantText: "no-such-clickhouse-server",
		},
		{
			name:     "no dir",
			opts:     chserver.Options{},
			wantText: "Options.Dir is required",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name != "no dir" {
				tt.opts.Dir = t.TempDir()
			}
			srv, err := chserver.Start(t.Context(), tt.opts)
			if err == nil {
				srv.Stop()
				t.Fatal("Start succeeded")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Start error %v; want errors.Is %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Start error %q; want it to mention %q", err, tt.wantText)
			}
		})
	}
}

// TestStartReportsServerError checks that a server that cannot start is
// reported with its own words, here by taking its port first.
func TestStartReportsServerError(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping clickhouse-server test in -short mode")
	}
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := t.TempDir()
	srv, err := chserver.Start(t.Context(), chserver.Options{
		Dir:     dir,
		TCPPort: l.Addr().(*net.TCPAddr).Port,
	})
	if errors.Is(err, chserver.ErrBinaryNotFound) {
		t.Skip(err)
	}
	if err == nil {
		srv.Stop()
		t.Fatal("Start succeeded on a taken port")
	}
	t.Log(err)
	for _, want := range []string{"exited before it was ready", "Address already in use", filepath.Join("log", "clickhouse-server.err.log")} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start error does not mention %q", want)
		}
	}
}

// TestPIDAndOptimizeFinal: PID names the running server process (0 once
// stopped), and OptimizeFinal leaves one part per partition after several
// inserts made several.
func TestPIDAndOptimizeFinal(t *testing.T) {
	srv := startServer(t, chserver.Options{})
	pid := srv.PID()
	if pid <= 0 {
		t.Fatalf("PID() = %d while running", pid)
	}
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || !strings.Contains(string(cmdline), srv.Dir()) {
		t.Fatalf("process %d is not this server (%q, %v)", pid, cmdline, err)
	}
	ctx := t.Context()
	for _, q := range []string{
		"CREATE DATABASE d",
		"CREATE TABLE d.t (k UInt32) ENGINE = MergeTree() ORDER BY k",
		"INSERT INTO d.t (k) VALUES (1)",
		"INSERT INTO d.t (k) VALUES (2)",
		"INSERT INTO d.t (k) VALUES (3)",
	} {
		if _, err := srv.Query(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := srv.OptimizeFinal(ctx, "d", "t"); err != nil {
		t.Fatal(err)
	}
	out, err := srv.Query(ctx, "SELECT count() FROM system.parts WHERE database = 'd' AND table = 't' AND active")
	if err != nil || strings.TrimSpace(out) != "1" {
		t.Errorf("active parts after OptimizeFinal: %q (%v), want 1", out, err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := srv.PID(); got != 0 {
		t.Errorf("PID() = %d after Stop, want 0", got)
	}
}
