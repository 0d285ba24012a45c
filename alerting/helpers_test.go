package alerting

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/alertmanager/notify/webhook"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bureauhub/bureauhub/hub/auth"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chtest"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// Tokens of the test tenants: bureaus a and b, and the data bureau.
const (
	tokenA    = "token-of-bureau-a-0123456789"
	tokenB    = "token-of-bureau-b-0123456789"
	tokenData = "token-of-data-bureau-0123456"
)

func testAuthn(tb testing.TB) *auth.Authenticator {
	tb.Helper()
	a, err := auth.New([]auth.TenantConfig{
		{Name: "a", Token: tokenA, Role: auth.RoleBureau},
		{Name: "b", Token: tokenB, Role: auth.RoleBureau},
		{Name: "data", Token: tokenData, Role: auth.RoleCrossBureau},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// hook is a webhook receiver server recording what each receiver (the
// URL path) gets.
type hook struct {
	srv  *httptest.Server
	mu   sync.Mutex
	msgs map[string][]webhook.Message
	hits map[string]int
	// behave, if set, answers for a path instead of 200.
	behave func(w http.ResponseWriter, r *http.Request) bool
}

func newHook(tb testing.TB) *hook {
	h := &hook{msgs: map[string][]webhook.Message{}, hits: map[string]int{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/")
		h.mu.Lock()
		h.hits[name]++
		behave := h.behave
		h.mu.Unlock()
		if behave != nil && behave(w, r) {
			return
		}
		var m webhook.Message
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			tb.Errorf("webhook %s: %v", name, err)
		}
		h.mu.Lock()
		h.msgs[name] = append(h.msgs[name], m)
		h.mu.Unlock()
	}))
	tb.Cleanup(h.srv.Close)
	return h
}

func (h *hook) messages(name string) []webhook.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]webhook.Message(nil), h.msgs[name]...)
}

func (h *hook) hitCount(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hits[name]
}

// url is the webhook URL of a receiver.
func (h *hook) url(name string) string { return h.srv.URL + "/" + name }

// instance is a running Alerting with its HTTP API.
type instance struct {
	a    *Alerting
	srv  *httptest.Server
	reg  *prometheus.Registry
	stop func()
	cfg  Config
}

type options struct {
	dir      string
	conn     driver.Conn
	database string
}

// start runs an Alerting over the config text (with {{HOOK}} replaced by
// the hook server's URL) until the test ends or stop is called.
func start(tb testing.TB, h *hook, config string, o options) *instance {
	tb.Helper()
	if o.dir == "" {
		o.dir = tb.TempDir()
	}
	file := filepath.Join(o.dir, "alertmanager.yml")
	if h != nil {
		config = strings.ReplaceAll(config, "{{HOOK}}", h.srv.URL)
	}
	if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
		tb.Fatal(err)
	}
	cfg := Config{ConfigFile: file, DataDir: filepath.Join(o.dir, "data"), StatusInterval: 200 * time.Millisecond,
		MaintenanceInterval: time.Minute}
	cfg.History.FlushInterval = 100 * time.Millisecond
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	a, err := New(cfg, logger, reg, testAuthn(tb), o.conn, o.database)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				tb.Errorf("Run did not return after its context ended")
			}
		})
	}
	tb.Cleanup(stop)
	srv := httptest.NewServer(a.Handler())
	tb.Cleanup(srv.Close)
	in := &instance{a: a, srv: srv, reg: reg, stop: stop, cfg: cfg}
	waitFor(tb, 10*time.Second, "alerting running", func() bool { return a.rt.Load() != nil })
	return in
}

// do sends a request with a token and returns the status and body.
func (in *instance) do(tb testing.TB, method, path, token string, body any) (int, []byte) {
	tb.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, in.srv.URL+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// testAlert is a posted alert: labels, and endsAt when resolved.
type testAlert struct {
	Labels   map[string]string `json:"labels"`
	StartsAt string            `json:"startsAt,omitempty"`
	EndsAt   string            `json:"endsAt,omitempty"`
}

func firing(ls ...string) testAlert {
	m := map[string]string{}
	for i := 0; i+1 < len(ls); i += 2 {
		m[ls[i]] = ls[i+1]
	}
	return testAlert{Labels: m}
}

func resolved(a testAlert) testAlert {
	a.StartsAt = time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)
	a.EndsAt = time.Now().UTC().Format(time.RFC3339Nano)
	return a
}

func (in *instance) post(tb testing.TB, token string, alerts ...testAlert) {
	tb.Helper()
	if code, body := in.do(tb, http.MethodPost, "/api/v2/alerts", token, alerts); code != http.StatusOK {
		tb.Fatalf("post alerts: %d %s", code, body)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alertNames lists the alertname (and other asked-for labels) of a
// notification's alerts, sorted as sent.
func labelsOf(m webhook.Message, name string) []string {
	var out []string
	for _, a := range m.Alerts {
		out = append(out, a.Labels[name])
	}
	return out
}

// gathered sums the samples of a metric family whose label has value.
func gathered(tb testing.TB, in *instance, family, label, value string) float64 {
	tb.Helper()
	mfs, err := in.reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}
