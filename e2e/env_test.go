package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/bureauhub/bureauhub/hub/pki"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chtest"
)

func TestMain(m *testing.M) { chtest.Main(m) }

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds cmd/hub and cmd/agent once per test run.
func binaries(tb testing.TB) string {
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Dir(filepath.Dir(file))
		binDir, buildErr = os.MkdirTemp("", "bureauhub-e2e-bin")
		if buildErr == nil {
			buildErr = Build(root, binDir, "hub", "agent")
		}
	})
	if buildErr != nil {
		tb.Fatalf("build binaries: %v", buildErr)
	}
	return binDir
}

// env is one test's world: a fresh database on the shared ClickHouse, TLS
// material, tenant tokens and a hub.
type env struct {
	t        *testing.T
	dir      string
	db       string
	conn     driver.Conn
	certs    pki.Files
	tokens   map[string]string // tenant -> token file
	grpcPort int
	httpPort int
	hub      *Process
	hubExtra string // appended to the ingest section
	hubTop   string // appended at the top level
}

var tenants = []string{"consular", "health", "transport", "databureau"}

func newEnv(t *testing.T) *env {
	t.Helper()
	bin := binaries(t)
	_ = bin
	e := &env{t: t, dir: t.TempDir(), tokens: map[string]string{}}
	e.db = chtest.NewDatabase(t)
	e.conn = chtest.Open(t, e.db)
	var err error
	e.certs, err = pki.WriteDemoCerts(e.dir, []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tn := range tenants {
		p := filepath.Join(e.dir, tn+".token")
		if err := os.WriteFile(p, []byte(tn+"-token-0123456789abcdef\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		e.tokens[tn] = p
	}
	if e.grpcPort, err = FreePort(); err != nil {
		t.Fatal(err)
	}
	if e.httpPort, err = FreePort(); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) hubAddr() string { return fmt.Sprintf("127.0.0.1:%d", e.grpcPort) }
func (e *env) hubURL() string  { return fmt.Sprintf("http://127.0.0.1:%d", e.httpPort) }

func (e *env) hubConfig() string {
	var tb strings.Builder
	for _, tn := range tenants {
		role := "bureau"
		if tn == "databureau" {
			role = "cross_bureau"
		}
		fmt.Fprintf(&tb, "  - {name: %s, token_file: %s, role: %s}\n", tn, e.tokens[tn], role)
	}
	return fmt.Sprintf(`grpc_listen_address: %s
http_listen_address: 127.0.0.1:%d
tls: {cert_file: %s, key_file: %s}
shutdown_timeout: 20s
clickhouse: {addr: [%q], database: %s}
ingest:
  flush_interval: 100ms
%s
%s
tenants:
%s`, e.hubAddr(), e.httpPort, e.certs.CertFile, e.certs.KeyFile, chtest.Server(e.t).Addr(), e.db, e.hubExtra, e.hubTop, tb.String())
}

// startHub starts (or restarts) the hub and waits until it serves.
func (e *env) startHub() {
	e.t.Helper()
	cfg := filepath.Join(e.dir, "hub.yml")
	if err := os.WriteFile(cfg, []byte(e.hubConfig()), 0o644); err != nil {
		e.t.Fatal(err)
	}
	p, err := Start("hub", filepath.Join(binaries(e.t), "hub"), []string{"-config.file", cfg, "-log.level", "debug"}, e.dir)
	if err != nil {
		e.t.Fatal(err)
	}
	e.hub = p
	e.t.Cleanup(func() {
		if err := p.Stop(30 * time.Second); err != nil && !p.Exited() {
			e.t.Errorf("hub stop: %v", err)
		}
		if e.t.Failed() {
			e.t.Logf("hub log (tail):\n%s", tail(p.Log(), 40))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := WaitHTTP(ctx, e.hubURL()+"/-/healthy"); err != nil {
		e.t.Fatalf("hub: %v\n%s", err, tail(p.Log(), 40))
	}
}

// agentConfig returns an agent config for tenant; body adds sections.
func (e *env) agentConfig(tenant, instance string, httpPort int, bufDir, body string) string {
	return fmt.Sprintf(`identity: {bureau: %s, cloud: cloud-%s, cluster: k1, instance: %s}
http_listen_address: 127.0.0.1:%d
buffer: {dir: %s, max_bytes: 268435456, segment_bytes: 4194304}
hub:
  addresses: [%q]
  token_file: %s
  tls: {ca_file: %s, server_name: localhost}
  min_backoff: 50ms
  max_backoff: 1s
%s`, tenant, tenant, instance, httpPort, bufDir, e.hubAddr(), e.tokens[tenant], e.certs.CAFile, body)
}

type agentProc struct {
	*Process
	url string
}

func (e *env) startAgent(name, config string, httpPort int) *agentProc {
	e.t.Helper()
	cfg := filepath.Join(e.dir, name+".yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		e.t.Fatal(err)
	}
	p, err := Start(name, filepath.Join(binaries(e.t), "agent"), []string{"-config.file", cfg, "-log.level", "debug"}, e.dir)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = p.Stop(20 * time.Second)
		if e.t.Failed() {
			e.t.Logf("%s log (tail):\n%s", name, tail(p.Log(), 30))
		}
	})
	a := &agentProc{Process: p, url: fmt.Sprintf("http://127.0.0.1:%d", httpPort)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := WaitHTTP(ctx, a.url+"/-/healthy"); err != nil {
		e.t.Fatalf("%s: %v\n%s", name, err, tail(p.Log(), 30))
	}
	return a
}

func (e *env) queryUint(sql string, args ...any) uint64 {
	e.t.Helper()
	var n uint64
	sql = strings.ReplaceAll(sql, "{db}", e.db)
	if err := e.conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// waitFor polls cond until it holds or timeout passes; msg explains the
// last failed check.
func waitFor(tb testing.TB, timeout time.Duration, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	var msg string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, msg = cond(); ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("condition not met within %s: %s", timeout, msg)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func freePort(tb testing.TB) int {
	p, err := FreePort()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func chserverOf(tb testing.TB) interface {
	Stop() error
	Restart(context.Context) error
} {
	return chtest.Server(tb)
}
