package console

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bureauhub/bureauhub/hub/auth"
	"github.com/bureauhub/bureauhub/hub/autoscale"
	"github.com/bureauhub/bureauhub/hub/query"
	"github.com/bureauhub/bureauhub/hub/refsvc/host"
	"github.com/bureauhub/bureauhub/hub/site"
)

var tokens = map[string]string{
	"consular":   "consular-token-0123456789",
	"health":     "health-token-0123456789ab",
	"databureau": "databureau-token-01234567",
}

func newAuthn(tb testing.TB) *auth.Authenticator {
	tb.Helper()
	a, err := auth.New([]auth.TenantConfig{
		{Name: "consular", Token: tokens["consular"]},
		{Name: "health", Token: tokens["health"]},
		{Name: "databureau", Token: tokens["databureau"], Role: auth.RoleCrossBureau},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

type fakeAgents []site.AgentStatus

func (f fakeAgents) Agents(tenant string) []site.AgentStatus {
	out := []site.AgentStatus{}
	for _, a := range f {
		if tenant == "" || a.Tenant == tenant {
			out = append(out, a)
		}
	}
	return out
}

// fakeAPI serves the hub's JSON APIs over canned data, filtered by the
// caller's token as the real APIs filter, and records the paths called.
type fakeAPI struct {
	mux   *http.ServeMux
	mu    sync.Mutex
	calls []string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.calls = append(f.calls, r.URL.Path)
	f.mu.Unlock()
	f.mux.ServeHTTP(w, r)
}

func (f *fakeAPI) called(prefix string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			return true
		}
	}
	return false
}

func newFakeAPI(tb testing.TB, authn *auth.Authenticator, now time.Time) *fakeAPI {
	tb.Helper()
	f := &fakeAPI{mux: http.NewServeMux()}
	f.mux.Handle(AgentsPath, AgentsHandler(fakeAgents{
		{Tenant: "consular", AgentID: "consular-agent-aaaa", LastDelivery: now.Add(-3 * time.Second), LastCurrent: now.Add(-3 * time.Second), NewestSample: now.Add(-4 * time.Second), Live: true},
		{Tenant: "health", AgentID: "health-agent-bbbb", LastDelivery: now.Add(-time.Hour), LastCurrent: now.Add(-time.Hour), NewestSample: now.Add(-time.Hour)},
	}, authn))
	// scoped serves, for each tenant's items, those the caller may read.
	scoped := func(envelope bool, items func() []map[string]any) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			p, err := query.Authenticate(authn, r)
			if err != nil {
				http.Error(w, `{"status":"error","error":"unauthorized"}`, http.StatusUnauthorized)
				return
			}
			out := []map[string]any{}
			for _, it := range items() {
				if p.CanReadAll() || it["tenant"] == p.Tenant {
					delete(it, "tenant")
					out = append(out, it["item"].(map[string]any))
				}
			}
			var body any = out
			if envelope {
				body = map[string]any{"status": "success", "data": out}
			}
			_ = json.NewEncoder(w).Encode(body)
		}
	}
	item := func(tenant string, v map[string]any) map[string]any {
		return map[string]any{"tenant": tenant, "item": v}
	}
	f.mux.HandleFunc("GET /api/v1/query", func(w http.ResponseWriter, r *http.Request) {
		expr := r.URL.Query().Get("query")
		scoped(true, func() []map[string]any {
			if !strings.Contains(expr, "bureauhub_agent_buffer_samples") {
				return nil
			}
			return []map[string]any{
				item("consular", map[string]any{"metric": map[string]string{"bureau": "consular", "instance": "consular-vm-1"}, "value": []any{1, "1234"}}),
				item("health", map[string]any{"metric": map[string]string{"bureau": "health", "instance": "health-vm-1"}, "value": []any{1, "99"}}),
			}
		})(w, r)
	})
	f.mux.HandleFunc("GET /api/v2/alerts", scoped(false, func() []map[string]any {
		return []map[string]any{
			item("consular", map[string]any{"labels": map[string]string{"alertname": "BookingSuccessBelowObjective", "bureau": "consular"},
				"annotations": map[string]string{"summary": "bookings failing"}, "startsAt": now.Add(-time.Minute), "fingerprint": "a1",
				"status": map[string]any{"state": "active", "silencedBy": []string{}, "inhibitedBy": []string{}}}),
			item("health", map[string]any{"labels": map[string]string{"alertname": "ScanLatencyAboveObjective", "bureau": "health"},
				"startsAt": now.Add(-time.Minute), "fingerprint": "b2",
				"status": map[string]any{"state": "suppressed", "silencedBy": []string{"sil-1"}, "inhibitedBy": []string{}}}),
		}
	}))
	f.mux.HandleFunc("GET /api/v2/silences", scoped(false, func() []map[string]any {
		return []map[string]any{item("health", map[string]any{"id": "sil-1", "status": map[string]string{"state": "active"},
			"matchers": []map[string]any{{"name": "alertname", "value": "ScanLatencyAboveObjective", "isRegex": false, "isEqual": true}},
			"startsAt": now.Add(-time.Minute), "endsAt": now.Add(time.Hour), "createdBy": "oncall-health", "comment": "maintenance"})}
	}))
	f.mux.HandleFunc("GET /api/v1/alerts/history", scoped(true, func() []map[string]any {
		return []map[string]any{item("consular", map[string]any{"time": now.Add(-time.Minute), "tenant": "consular", "event": "firing",
			"labels": map[string]string{"alertname": "BookingSuccessBelowObjective", "bureau": "consular"}, "status": "firing"})}
	}))
	f.mux.HandleFunc("GET "+autoscale.RecommendationsPath, scoped(true, func() []map[string]any {
		b, _ := json.Marshal([]autoscale.TargetStatus{
			{Target: "booking-scaler", Tenant: "consular", Mode: "dry-run", Current: 1, Ready: 1, Recommended: 3, Min: 1, Max: 4,
				Decision: &autoscale.Decision{Time: now, Current: 1, Recommended: 3, Explanation: autoscale.Explanation{Term: "reactive", ObservedRate: 55, ReactiveFloor: 3}}},
			{Target: "healthcode-scaler", Tenant: "health", Mode: "on", Current: 2, Ready: 2, Recommended: 2, Min: 1, Max: 6},
		})
		var ts []map[string]any
		_ = json.Unmarshal(b, &ts)
		return []map[string]any{item("consular", ts[0]), item("health", ts[1])}
	}))
	f.mux.HandleFunc("GET "+autoscale.ActionsPath, scoped(true, func() []map[string]any {
		return []map[string]any{item("consular", map[string]any{"time": now.Add(-time.Minute), "tenant": "consular", "target": "booking-scaler",
			"event": "action", "mode": "dry-run", "current_replicas": 1, "replicas": 3, "outcome": "dry_run",
			"explanation": `{"term":"reactive","observed_rate":55,"reactive_floor":3,"notes":["scale-up needed"]}`})}
	}))
	f.mux.HandleFunc("GET /api/v1/services", scoped(true, func() []map[string]any {
		b, _ := json.Marshal([]host.ServiceStatus{
			{Name: "booking", Tenant: "consular", Address: "127.0.0.1:1", Desired: 1, Ready: 1, Min: 1, Max: 4},
			{Name: "healthcode", Tenant: "health", Address: "127.0.0.1:2", Desired: 2, Ready: 2, Min: 1, Max: 6},
		})
		var ss []map[string]any
		_ = json.Unmarshal(b, &ss)
		return []map[string]any{item("consular", ss[0]), item("health", ss[1])}
	}))
	f.mux.HandleFunc("GET /api/v1/forecasts", scoped(true, func() []map[string]any { return nil }))
	return f
}

// queryShape rewraps the fake query handler's list into the query API's
// {resultType, result} data.
type queryShape struct{ next http.Handler }

func (q queryShape) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/query" {
		q.next.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	q.next.ServeHTTP(rec, r)
	var env struct {
		Status string `json:"status"`
		Data   []any  `json:"data"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &env) != nil {
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "vector", "result": env.Data}})
}

type testConsole struct {
	*Console
	api *fakeAPI
	srv *httptest.Server
	now time.Time
}

func newTestConsole(tb testing.TB, avail Available, members Members) *testConsole {
	tb.Helper()
	authn := newAuthn(tb)
	now := time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
	api := newFakeAPI(tb, authn, now)
	cfg := Config{}
	cfg.SetDefaults()
	if err := cfg.Validate("console"); err != nil {
		tb.Fatal(err)
	}
	c, err := New(cfg, slog.New(slog.DiscardHandler), Deps{API: queryShape{api}, Authn: authn, Self: "127.0.0.1:9301", Members: members, Available: avail})
	if err != nil {
		tb.Fatal(err)
	}
	c.now = func() time.Time { return now }
	mux := http.NewServeMux()
	mux.Handle(Prefix, c.Handler())
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	return &testConsole{Console: c, api: api, srv: srv, now: now}
}

var all = Available{Alerting: true, Autoscale: true, Services: true, Forecast: true}

// client does not follow redirects, so tests see them.
var client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (tc *testConsole) get(tb testing.TB, path string, hdr map[string]string) (int, http.Header, string) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, tc.srv.URL+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func bearer(tenant string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + tokens[tenant]}
}

func TestPagesShowOnlyWhatTheTokenMayRead(t *testing.T) {
	tc := newTestConsole(t, all, nil)
	type want struct{ in, out []string }
	for _, tt := range []struct {
		name, tenant, path string
		want               want
	}{
		{"agents bureau", "consular", "/console/agents", want{
			in:  []string{"consular-agent-aaaa", "consular-vm-1", "1234", "live"},
			out: []string{"health-agent-bbbb", "health-vm-1"}}},
		{"agents cross-bureau", "databureau", "/console/agents", want{
			in: []string{"consular-agent-aaaa", "health-agent-bbbb", "health-vm-1", "silent"}}},
		{"alerts bureau", "consular", "/console/alerts", want{
			in:  []string{"BookingSuccessBelowObjective", "bookings failing", "No alert is silenced"},
			out: []string{"ScanLatencyAboveObjective", "sil-1"}}},
		{"alerts other bureau", "health", "/console/alerts", want{
			in:  []string{"ScanLatencyAboveObjective", "sil-1", "oncall-health", "Nothing is firing"},
			out: []string{"BookingSuccessBelowObjective"}}},
		{"alerts cross-bureau", "databureau", "/console/alerts", want{
			in: []string{"BookingSuccessBelowObjective", "ScanLatencyAboveObjective", "sil-1"}}},
		{"capacity bureau", "consular", "/console/capacity", want{
			in:  []string{"booking-scaler", "decided by reactive", "scale-up needed", "dry_run", "booking"},
			out: []string{"healthcode-scaler", "healthcode"}}},
		{"capacity cross-bureau", "databureau", "/console/capacity", want{
			in: []string{"booking-scaler", "healthcode-scaler", "healthcode"}}},
		{"overview bureau", "consular", "/console/", want{
			in: []string{"<b class=\"ok\">1</b> live", "1 bureau", "<b class=\"bad\">1</b> firing", "1 recommending a change", "1 hosted service", "1 hub"}}},
		{"overview cross-bureau", "databureau", "/console/", want{
			in: []string{"2 bureaus", "2 autoscaled targets", "1 silenced or inhibited", "2 hosted services"}}},
		{"cluster", "consular", "/console/cluster", want{in: []string{"single hub", "127.0.0.1:9301", "this hub"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, hdr, body := tc.get(t, tt.path, bearer(tt.tenant))
			if code != http.StatusOK {
				t.Fatalf("GET %s: %d %s", tt.path, code, body)
			}
			if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
				t.Errorf("Content-Type %q", ct)
			}
			for _, s := range tt.want.in {
				if !strings.Contains(body, s) {
					t.Errorf("page lacks %q:\n%s", s, body)
				}
			}
			for _, s := range tt.want.out {
				if strings.Contains(body, s) {
					t.Errorf("page shows %q, which %s may not read", s, tt.tenant)
				}
			}
		})
	}
}

func TestComponentsNotConfigured(t *testing.T) {
	tc := newTestConsole(t, Available{}, nil)
	for _, path := range []string{"/console/", "/console/agents", "/console/alerts", "/console/capacity", "/console/cluster"} {
		code, _, body := tc.get(t, path, bearer("databureau"))
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		if path != "/console/agents" && path != "/console/cluster" && !strings.Contains(body, "Not configured on this hub.") {
			t.Errorf("%s does not say what is not configured:\n%s", path, body)
		}
	}
	for _, p := range []string{"/api/v2/", "/api/v1/alerts/history", "/api/v1/recommendations", "/api/v1/autoscale", "/api/v1/services", "/api/v1/forecasts"} {
		if tc.api.called(p) {
			t.Errorf("the console called %s, which is not configured", p)
		}
	}
}

func TestFailingAPIShownOnPage(t *testing.T) {
	tc := newTestConsole(t, all, nil)
	broken := http.NewServeMux()
	broken.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"status":"error","errorType":"internal","error":"clickhouse is down"}`, http.StatusInternalServerError)
	})
	tc.deps.API = broken
	for _, path := range []string{"/console/", "/console/agents", "/console/alerts", "/console/capacity"} {
		code, _, body := tc.get(t, path, bearer("consular"))
		if code != http.StatusOK || !strings.Contains(body, "Could not load") || !strings.Contains(body, "clickhouse is down") {
			t.Errorf("GET %s: %d, want the page with the API's error:\n%s", path, code, body)
		}
	}
}

func TestClusterMembers(t *testing.T) {
	tc := newTestConsole(t, all, staticMembers{
		{Name: "hub-b", Address: "10.0.0.2:9301", State: "suspect"},
		{Name: "hub-a", Address: "10.0.0.1:9301", State: "alive", Self: true},
	})
	_, _, body := tc.get(t, "/console/cluster", bearer("consular"))
	a, b := strings.Index(body, "hub-a"), strings.Index(body, "hub-b")
	if a < 0 || b < 0 || a > b || !strings.Contains(body, "suspect") || strings.Contains(body, "single hub") {
		t.Errorf("members not listed by name with their state:\n%s", body)
	}
}

type staticMembers []Member

func (s staticMembers) Members() []Member { return append([]Member(nil), s...) }

func TestSecurityHeaders(t *testing.T) {
	tc := newTestConsole(t, all, nil)
	for _, path := range []string{"/console/login", "/console/agents", "/console/static/console.css"} {
		code, hdr, _ := tc.get(t, path, bearer("consular"))
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d", path, code)
		}
		csp := hdr.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if hdr.Get("Cache-Control") != "no-store" || hdr.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", path, hdr)
		}
	}
	if _, hdr, body := tc.get(t, "/console/static/console.css", nil); !strings.HasPrefix(hdr.Get("Content-Type"), "text/css") || !strings.Contains(body, "bureauhub console") {
		t.Errorf("stylesheet not served: %v", hdr)
	}
}

func TestTemplatesEscape(t *testing.T) {
	tc := newTestConsole(t, all, nil)
	evil := "<script>alert(1)</script>"
	api := http.NewServeMux()
	api.Handle("/", tc.deps.API)
	api.Handle(AgentsPath, AgentsHandler(fakeAgents{{Tenant: "consular", AgentID: evil}}, tc.deps.Authn))
	tc.deps.API = api
	_, _, body := tc.get(t, "/console/agents", bearer("consular"))
	if strings.Contains(body, evil) || !strings.Contains(body, "&lt;script&gt;") {
		t.Errorf("agent ID not escaped:\n%s", body)
	}
}

func TestAgentsAPI(t *testing.T) {
	authn := newAuthn(t)
	h := AgentsHandler(fakeAgents{{Tenant: "consular", AgentID: "c1"}, {Tenant: "health", AgentID: "h1"}}, authn)
	for _, tt := range []struct {
		name, method, query string
		hdr                 map[string]string
		code                int
		ids                 string
	}{
		{"bureau lists its own", "GET", "", bearer("consular"), 200, "c1"},
		{"bureau asks for itself", "GET", "?tenant=consular", bearer("consular"), 200, "c1"},
		{"bureau asks for another", "GET", "?tenant=health", bearer("consular"), 403, ""},
		{"cross-bureau lists all", "GET", "", bearer("databureau"), 200, "c1,h1"},
		{"cross-bureau picks one", "GET", "?tenant=health", bearer("databureau"), 200, "h1"},
		{"basic auth password", "GET", "", map[string]string{"Authorization": "Basic " + basic("grafana", tokens["health"])}, 200, "h1"},
		{"no token", "GET", "", nil, 401, ""},
		{"unknown token", "GET", "", map[string]string{"Authorization": "Bearer nope-nope-nope-nope"}, 401, ""},
		{"console cookie is no API credential", "GET", "", map[string]string{"Cookie": cookieName + "=" + b64(tokens["databureau"])}, 401, ""},
		{"POST", "POST", "", bearer("consular"), 405, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, AgentsPath+tt.query, nil)
			for k, v := range tt.hdr {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.code {
				t.Fatalf("code %d, want %d: %s", rec.Code, tt.code, rec.Body)
			}
			if tt.code != 200 {
				return
			}
			var resp struct {
				Status string             `json:"status"`
				Data   []site.AgentStatus `json:"data"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || resp.Status != "success" {
				t.Fatalf("body %s: %v", rec.Body, err)
			}
			var ids []string
			for _, a := range resp.Data {
				ids = append(ids, a.AgentID)
			}
			if got := strings.Join(ids, ","); got != tt.ids {
				t.Errorf("agents %q, want %q", got, tt.ids)
			}
		})
	}
}

func TestAgentsAPIOverWatcher(t *testing.T) {
	cfg := site.Config{}
	cfg.SetDefaults()
	w := site.New(cfg, nil, slog.New(slog.DiscardHandler), nil)
	now := time.Now()
	w.Observe("health", "h1", now.UnixMilli(), now)
	w.Observe("consular", "c1", now.UnixMilli(), now)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", AgentsPath, nil)
	req.Header.Set("Authorization", "Bearer "+tokens["health"])
	AgentsHandler(w, newAuthn(t)).ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"agent_id":"h1"`) || strings.Contains(rec.Body.String(), "c1") ||
		!strings.Contains(rec.Body.String(), `"live":true`) {
		t.Errorf("%d %s", rec.Code, rec.Body)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"defaults", func(*Config) {}, ""},
		{"session", func(c *Config) { c.SessionTTL = -1 }, "console.session_ttl"},
		{"link", func(c *Config) { c.LoginLinkTTL = time.Hour }, "console.login_link_ttl"},
		{"max links", func(c *Config) { c.MaxLoginLinks = -1 }, "console.max_login_links"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			c.SetDefaults()
			tt.mod(&c)
			err := c.Validate("console")
			if (err == nil) != (tt.want == "") || (err != nil && !strings.HasPrefix(err.Error(), tt.want+":")) {
				t.Errorf("Validate() = %v, want an error on %q", err, tt.want)
			}
		})
	}
}

func basic(user, pw string) string {
	req := httptest.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, pw)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

func formBody(kv ...string) io.Reader {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return strings.NewReader(v.Encode())
}
