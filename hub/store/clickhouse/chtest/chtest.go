// Package chtest gives a package's tests one shared throwaway ClickHouse
// server and a fresh database per test. Import it only from _test.go files:
//
//	func TestMain(m *testing.M) { chtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		db := chtest.NewDatabase(t)
//		conn := chtest.Open(t, db)
//		...
//	}
//
// With -short, or BUREAUHUB_SKIP_CLICKHOUSE=1, or no ClickHouse installed
// (outside CI), no server starts and the tests that need one skip.
// BUREAUHUB_CLICKHOUSE_BINARY picks the server binary.
package chtest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chserver"
)

// Environment variables read by Main.
const (
	// SkipEnv, set to 1 (or true), keeps Main from starting a server.
	SkipEnv = "BUREAUHUB_SKIP_CLICKHOUSE"
	// BinaryEnv names the server binary to run instead of the default
	// (see chserver.Options.Binary), for a ClickHouse installed elsewhere.
	BinaryEnv = "BUREAUHUB_CLICKHOUSE_BINARY"
)

// The shared server is package state because TestMain and the tests meet
// nowhere else. Main writes it before m.Run and tests only read it, so m.Run
// orders every access.
var (
	mainCalled bool
	shared     *chserver.Server
	skipReason string // why shared is nil
	dbSeq      atomic.Int64
)

// Main starts one server for the package's tests, runs them, stops the
// server and exits with the tests' code. Call it from TestMain.
//
// No server starts with -short or BUREAUHUB_SKIP_CLICKHOUSE=1, and none when
// ClickHouse is not installed, which is an error (exit 1) when CI=true so
// that CI cannot pass by skipping. A server that is installed but fails to
// start is always an error.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if !flag.Parsed() {
		flag.Parse() // testing.Short needs the flags
	}
	mainCalled = true
	switch {
	case testing.Short():
		skipReason = "ClickHouse tests skipped in -short mode"
		return m.Run()
	case envTrue(SkipEnv):
		skipReason = "ClickHouse tests skipped: " + SkipEnv + " is set"
		return m.Run()
	}

	dir, err := os.MkdirTemp("", "bureauhub-clickhouse-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "chtest: %v\n", err)
		return 1
	}
	srv, err := chserver.Start(context.Background(), chserver.Options{Dir: dir, Binary: os.Getenv(BinaryEnv)})
	if errors.Is(err, chserver.ErrBinaryNotFound) {
		os.RemoveAll(dir)
		if envTrue("CI") {
			fmt.Fprintf(os.Stderr, "chtest: %v\nchtest: CI must run the ClickHouse tests: install Debian's clickhouse-server (apt-get install clickhouse-server)\n", err)
			return 1
		}
		skipReason = "ClickHouse tests skipped: clickhouse-server is not installed (apt-get install clickhouse-server)"
		fmt.Fprintf(os.Stderr, "chtest: %v; skipping the tests that need ClickHouse (install Debian's clickhouse-server to run them)\n", err)
		return m.Run()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "chtest: %v\nchtest: server files kept in %s\n", err, dir)
		return 1
	}
	shared = srv

	code := m.Run()
	if err := srv.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "chtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	if code != 0 {
		// The server's logs may explain the failure.
		fmt.Fprintf(os.Stderr, "chtest: ClickHouse server files kept in %s\n", dir)
	} else {
		os.RemoveAll(dir)
	}
	return code
}

// Server returns the package's shared server. It skips the test when Main
// started none (-short, BUREAUHUB_SKIP_CLICKHOUSE, not installed) and fails
// it when TestMain does not call Main.
func Server(tb testing.TB) *chserver.Server {
	tb.Helper()
	if !mainCalled {
		tb.Fatal("chtest: no shared ClickHouse server: the package needs func TestMain(m *testing.M) { chtest.Main(m) }")
	}
	if shared == nil {
		tb.Skip(skipReason)
	}
	return shared
}

// NewDatabase creates an empty database on the shared server, named after
// the test, and drops it when the test ends. It returns the database name,
// which needs no quoting.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	srv := Server(tb)
	name := databaseName(tb.Name(), dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := srv.Query(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("chtest: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := srv.Query(ctx, "DROP DATABASE IF EXISTS "+name); err != nil {
			tb.Errorf("chtest: %v", err)
		}
	})
	return name
}

// Open returns a clickhouse-go native connection to database on the shared
// server, closed when the test ends.
func Open(tb testing.TB, database string) driver.Conn {
	tb.Helper()
	srv := Server(tb)
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{srv.Addr()},
		Auth:        clickhouse.Auth{Database: database, Username: "default"},
		DialTimeout: 10 * time.Second,
	})
	if err != nil {
		tb.Fatalf("chtest: open %s: %v", database, err)
	}
	tb.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := conn.Ping(ctx); err != nil {
		tb.Fatalf("chtest: ping %s: %v", database, err)
	}
	return conn
}

var notIdent = regexp.MustCompile(`[^a-z0-9_]+`)

// databaseName makes an identifier from the test name and a sequence number,
// the number keeping it unique among subtests with similar names.
func databaseName(testName string, seq int64) string {
	name := strings.Trim(notIdent.ReplaceAllString(strings.ToLower(testName), "_"), "_")
	if len(name) > 40 {
		name = name[:40]
	}
	return "test_" + name + "_" + strconv.FormatInt(seq, 10)
}

func envTrue(name string) bool {
	v, err := strconv.ParseBool(os.Getenv(name))
	return err == nil && v
}
