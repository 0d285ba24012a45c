package host

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bureauhub/bureauhub/hub/auth"
	"github.com/bureauhub/bureauhub/hub/refsvc"
)

// echoService is a minimal refsvc.Service: each replica answers with its
// ID, optionally blocking until gate is closed, and counts its requests.
type echoService struct {
	gate    chan struct{}
	served  sync.Map // replica id -> *atomic.Int64
	closed  atomic.Int32
	running atomic.Int32
}

func (e *echoService) NewReplica(r refsvc.Replica) (http.Handler, error) {
	n := &atomic.Int64{}
	e.served.Store(r.ID, n)
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "echo_requests_total", Help: "Requests."})
	r.Registerer.MustRegister(c)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/slow" && e.gate != nil {
			<-e.gate
		}
		n.Add(1)
		c.Inc()
		fmt.Fprint(w, r.ID)
	}), nil
}

func (e *echoService) Run(ctx context.Context) error {
	e.running.Add(1)
	<-ctx.Done()
	return nil
}

func (e *echoService) Close() error { e.closed.Add(1); return nil }

const (
	ownerToken = "consular-token-0123456789"
	otherToken = "health-token-0123456789ab"
	crossToken = "databureau-token-0123456789"
)

type fixture struct {
	host *Host
	svc  *echoService
	api  *httptest.Server
	addr string
}

func start(t *testing.T, cfg ServiceConfig, svc *echoService) *fixture {
	t.Helper()
	authn, err := auth.New([]auth.TenantConfig{
		{Name: "consular", Token: ownerToken, Role: auth.RoleBureau},
		{Name: "health", Token: otherToken, Role: auth.RoleBureau},
		{Name: "databureau", Token: crossToken, Role: auth.RoleCrossBureau},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Name, cfg.Tenant, cfg.ListenAddress = "echo", "consular", "127.0.0.1:0"
	cfg.SetDefaults()
	if err := cfg.Validate("services[0]"); err != nil {
		t.Fatal(err)
	}
	h, err := New([]Hosted{{Config: cfg, Service: svc}}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if svc.closed.Load() != 1 {
			t.Errorf("service closed %d times, want once", svc.closed.Load())
		}
	})
	api := httptest.NewServer(h.Handler(func(r *http.Request) (auth.Principal, error) {
		return authn.Authenticate(auth.BearerToken(r.Header.Get("Authorization")))
	}))
	t.Cleanup(api.Close)
	f := &fixture{host: h, svc: svc, api: api}
	waitFor(t, "load balancer address", func() bool {
		st, _ := h.Status("echo")
		f.addr = st.Address
		return f.addr != "" && len(st.Replicas) == cfg.Replicas
	})
	return f
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fixture) call(t *testing.T, method, path, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, f.api.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (f *fixture) ready() int {
	st, _ := f.host.Status("echo")
	return st.Ready
}

func (f *fixture) sdTargets(t *testing.T) []string {
	t.Helper()
	code, body := f.call(t, "GET", "/api/v1/sd", ownerToken, "")
	if code != 200 {
		t.Fatalf("sd: %d %s", code, body)
	}
	var groups []TargetGroup
	if err := json.Unmarshal([]byte(body), &groups); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, g := range groups {
		if g.Labels["service"] != "echo" || !strings.HasPrefix(g.Labels["replica"], "echo-") {
			t.Fatalf("target group labels %v", g.Labels)
		}
		out = append(out, g.Targets...)
	}
	sort.Strings(out)
	return out
}

func (f *fixture) liveAddrs() []string {
	st, _ := f.host.Status("echo")
	var out []string
	for _, r := range st.Replicas {
		if r.State != StateDraining {
			out = append(out, r.Address)
		}
	}
	sort.Strings(out)
	return out
}

func TestScaleThroughAPIAndServiceDiscovery(t *testing.T) {
	f := start(t, ServiceConfig{Replicas: 2, MaxReplicas: 5, WarmUp: 50 * time.Millisecond}, &echoService{})
	waitFor(t, "2 ready replicas", func() bool { return f.ready() == 2 })
	if got, want := f.sdTargets(t), f.liveAddrs(); strings.Join(got, ",") != strings.Join(want, ",") || len(got) != 2 {
		t.Fatalf("sd targets %v, live replicas %v", got, want)
	}

	if code, body := f.call(t, "PUT", "/api/v1/services/echo/replicas", ownerToken, `{"replicas": 4}`); code != 200 {
		t.Fatalf("scale up: %d %s", code, body)
	}
	waitFor(t, "4 ready replicas", func() bool { return f.ready() == 4 })
	if got := f.sdTargets(t); len(got) != 4 || strings.Join(got, ",") != strings.Join(f.liveAddrs(), ",") {
		t.Fatalf("after scale up, sd targets %v, live %v", got, f.liveAddrs())
	}
	// Every replica serves its own /metrics with its replica label.
	for _, addr := range f.liveAddrs() {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), `echo_requests_total{replica="echo-`) {
			t.Fatalf("replica %s /metrics lacks its labelled metric:\n%s", addr, b)
		}
	}

	if code, body := f.call(t, "POST", "/api/v1/services/echo/replicas", crossToken, `{"replicas": 1}`); code != 200 {
		t.Fatalf("scale down by the data bureau: %d %s", code, body)
	}
	waitFor(t, "1 replica left", func() bool { st, _ := f.host.Status("echo"); return len(st.Replicas) == 1 })
	if got := f.sdTargets(t); len(got) != 1 || got[0] != f.liveAddrs()[0] {
		t.Fatalf("after scale down, sd targets %v, live %v", got, f.liveAddrs())
	}

	tests := []struct {
		name, method, path, token, body string
		code                            int
		contains                        string
	}{
		{"no token", "GET", "/api/v1/services", "", "", 401, "token"},
		{"bad token", "GET", "/api/v1/services", "not-a-token-at-all-xx", "", 401, "token"},
		{"other bureau scales", "PUT", "/api/v1/services/echo/replicas", otherToken, `{"replicas": 2}`, 403, "another bureau"},
		{"other bureau discovers", "GET", "/api/v1/sd?service=echo", otherToken, "", 403, "another bureau"},
		{"unknown service", "GET", "/api/v1/services/nope", ownerToken, "", 404, `is not hosted`},
		{"above max", "PUT", "/api/v1/services/echo/replicas", ownerToken, `{"replicas": 6}`, 400, "max_replicas 5"},
		{"below min", "PUT", "/api/v1/services/echo/replicas", ownerToken, `{"replicas": 0}`, 400, "min_replicas 1"},
		{"missing field", "PUT", "/api/v1/services/echo/replicas", ownerToken, `{}`, 400, "replicas: required"},
		{"unknown field", "PUT", "/api/v1/services/echo/replicas", ownerToken, `{"replica": 2}`, 400, "unknown field"},
		{"not json", "PUT", "/api/v1/services/echo/replicas", ownerToken, `three`, 400, "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := f.call(t, tt.method, tt.path, tt.token, tt.body)
			if code != tt.code || !strings.Contains(body, tt.contains) {
				t.Fatalf("got %d %s, want %d containing %q", code, body, tt.code, tt.contains)
			}
		})
	}
	// The other bureau's listing and discovery show nothing of echo.
	if code, body := f.call(t, "GET", "/api/v1/sd", otherToken, ""); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("other bureau's sd: %d %s", code, body)
	}
	if code, body := f.call(t, "GET", "/api/v1/services", otherToken, ""); code != 200 || strings.Contains(body, "echo") {
		t.Fatalf("other bureau's services: %d %s", code, body)
	}
	if f.svc.running.Load() != 1 {
		t.Fatalf("service Run called %d times, want once", f.svc.running.Load())
	}
}

func TestWarmUpKeepsNewReplicaOutOfRotation(t *testing.T) {
	f := start(t, ServiceConfig{Replicas: 1, WarmUp: 300 * time.Millisecond}, &echoService{})
	// Before the first replica is ready the balancer has nowhere to send.
	resp, err := http.Get("http://" + f.addr + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if f.ready() == 0 && resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("request before warm-up: %d, want 503", resp.StatusCode)
	}
	st, _ := f.host.Status("echo")
	if r := st.Replicas[0]; r.State == StateStarting {
		resp, err := http.Get("http://" + r.Address + "/-/ready")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable && f.ready() == 0 {
			t.Fatalf("/-/ready during warm-up: %d, want 503", resp.StatusCode)
		}
	}
	waitFor(t, "ready", func() bool { return f.ready() == 1 })
	st, _ = f.host.Status("echo")
	if d := st.Replicas[0].ReadyAt.Sub(st.Replicas[0].StartedAt); d < 300*time.Millisecond {
		t.Fatalf("replica ready after %v, before its 300ms warm-up", d)
	}
	resp, err = http.Get("http://" + f.addr + "/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "echo-1" {
		t.Fatalf("after warm-up: %d %q", resp.StatusCode, b)
	}
}

// TestScaleDownDrainsInFlight holds requests inside replicas while the
// service is scaled from 4 to 1: every held request must still complete,
// and requests sent during and after the change must all succeed.
func TestScaleDownDrainsInFlight(t *testing.T) {
	svc := &echoService{gate: make(chan struct{})}
	f := start(t, ServiceConfig{Replicas: 4, WarmUp: time.Millisecond, DrainTimeout: 10 * time.Second}, svc)
	waitFor(t, "4 ready replicas", func() bool { return f.ready() == 4 })

	const held = 40
	var wg sync.WaitGroup
	results := make(chan int, 1000)
	for i := 0; i < held; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get("http://" + f.addr + "/slow")
			if err != nil {
				results <- -1
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			results <- resp.StatusCode
		}()
	}
	waitFor(t, "requests in flight on every replica", func() bool {
		st, _ := f.host.Status("echo")
		total, busy := 0, 0
		for _, r := range st.Replicas {
			total += r.InFlight
			if r.InFlight > 0 {
				busy++
			}
		}
		return total == held && busy == 4
	})
	if err := f.host.Scale("echo", 1); err != nil {
		t.Fatal(err)
	}
	// Fresh requests during the drain go to the remaining replica.
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get("http://" + f.addr + "/fast")
			if err != nil {
				results <- -1
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			results <- resp.StatusCode
		}()
	}
	st, _ := f.host.Status("echo")
	draining := 0
	for _, r := range st.Replicas {
		if r.State == StateDraining {
			draining++
		}
	}
	if draining != 3 {
		t.Fatalf("%d replicas draining, want 3 (they must wait for their in-flight requests)", draining)
	}
	close(svc.gate)
	wg.Wait()
	close(results)
	ok := 0
	for code := range results {
		if code != 200 {
			t.Fatalf("a request failed across the scale-down: %d", code)
		}
		ok++
	}
	if ok != held+20 {
		t.Fatalf("%d requests succeeded, want %d", ok, held+20)
	}
	waitFor(t, "drained replicas to stop", func() bool { st, _ := f.host.Status("echo"); return len(st.Replicas) == 1 })
	if got := f.sdTargets(t); len(got) != 1 {
		t.Fatalf("sd after drain: %v", got)
	}
}
