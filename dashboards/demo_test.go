package dashboards_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bureauhub/bureauhub/e2e"
	"github.com/bureauhub/bureauhub/hub/refsvc/loadgen"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chtest"
)

// noDataAllowed are the panel queries that may come back empty from the
// demo, each with the reason. Keep it short: a panel here is not checked
// against real data.
var noDataAllowed = map[string]string{}

// demoBureaus run one agent each; databureau is the cross-bureau reader.
var demoBureaus = []string{"consular", "health", "transport"}

// demo is a hub with both hosted services, rules, alerting, forecasts and
// dry-run autoscaling, and an agent per bureau scraping its service's
// replicas (HTTP SD), itself and the hub.
type demo struct {
	dir     string
	tokens  map[string]string // tenant -> token file
	hubURL  string
	urls    map[string]string // service -> load balancer URL
	procs   []*e2e.Process
	webhook *httptest.Server
}

func moduleRoot(t testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	return filepath.Dir(filepath.Dir(file))
}

func freePort(t testing.TB) int {
	t.Helper()
	p, err := e2e.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// dashboardsTestRules adds one alert that is always firing, as
// Alertmanager setups' Watchdog alert is, so that the firing-alert panels
// and annotations have something to show and notifications flow.
const dashboardsTestRules = `groups:
  - name: dashboards-test
    interval: 2s
    rules:
      - alert: DashboardsWatchdog
        expr: vector(1)
        labels: {severity: none}
        annotations: {summary: "Always firing, so the alert panels have data."}
`

func startDemo(t *testing.T) *demo {
	t.Helper()
	ch := chtest.Server(t) // skips without ClickHouse
	db := chtest.NewDatabase(t)
	root := moduleRoot(t)
	d := &demo{dir: t.TempDir(), tokens: map[string]string{}, urls: map[string]string{}}

	bin := filepath.Join(d.dir, "bin")
	if err := e2e.Build(root, bin, "hub", "agent"); err != nil {
		t.Fatal(err)
	}
	var tenants strings.Builder
	for _, tn := range append(append([]string{}, demoBureaus...), "databureau") {
		p := filepath.Join(d.dir, tn+".token")
		if err := os.WriteFile(p, []byte(tn+"-token-0123456789abcdef\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		d.tokens[tn] = p
		role := "bureau"
		if tn == "databureau" {
			role = "cross_bureau"
		}
		fmt.Fprintf(&tenants, "  - {name: %s, token_file: %s, role: %s}\n", tn, p, role)
	}
	d.webhook = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(d.webhook.Close)
	write := func(name, body string) string {
		p := filepath.Join(d.dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	policy := write("policy.yml", fmt.Sprintf(`route:
  receiver: ops
  group_by: [bureau, alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: ops
    webhook_configs: [{url: %q}]
`, d.webhook.URL))
	testRules := write("dashboards-test.rules.yml", dashboardsTestRules)

	grpcPort, httpPort, hcPort, bkPort, gossipPort := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	d.hubURL = fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	d.urls["healthcode"] = fmt.Sprintf("http://127.0.0.1:%d", hcPort)
	d.urls["booking"] = fmt.Sprintf("http://127.0.0.1:%d", bkPort)
	// The forecasts and the autoscaler read the services' request rates;
	// the small default capacities make the dry-run autoscaler want more
	// replicas, so would-be actions are recorded.
	if err := os.Mkdir(filepath.Join(d.dir, "services"), 0o755); err != nil {
		t.Fatal(err)
	}
	hubCfg := write("hub.yml", fmt.Sprintf(`grpc_listen_address: 127.0.0.1:%d
http_listen_address: 127.0.0.1:%d
insecure_plaintext: true
shutdown_timeout: 20s
clickhouse: {addr: [%q], database: %s}
ingest: {flush_interval: 200ms}
rules: {evaluation_interval: 2s, resend_delay: 2s, files: [%q, %q]}
alerting: {config_file: %s, data_dir: %s, status_interval: 1s}
# A cluster of one, so the hub exports its cluster metrics.
cluster: {bind_address: "127.0.0.1:%d", insecure: true, settle: 100ms}
services:
  data_dir: %s
  healthcode:
    hosting: {tenant: health, listen_address: "127.0.0.1:%d", replicas: 2, max_replicas: 6, warm_up: 300ms, drain_timeout: 5s}
    config: {population: 2000, seed_time: "2026-11-01T00:00:00Z", capacity: {concurrency: 8, service_time: 5ms}}
  booking:
    hosting: {tenant: consular, listen_address: "127.0.0.1:%d", replicas: 1, max_replicas: 4, warm_up: 300ms, drain_timeout: 5s}
    config: {store: {no_sync: true}, releases: [{at: "00:00", fraction: 0.5}]}
forecast:
  signals:
    - {name: healthcode_scans, tenant: health, expr: "sum(rate(healthcode_scans_total[20s]))", period: 2m, step: 5s}
    - {name: booking_requests, tenant: consular, expr: "sum(rate(booking_requests_total[20s]))", period: 2m, step: 5s}
autoscale:
  targets:
    - name: healthcode
      tenant: health
      service: healthcode
      signal: healthcode_scans
      rate_expr: sum(rate(healthcode_scans_total[20s]))
      latency_expr: histogram_quantile(0.99, sum by (le) (rate(healthcode_scan_duration_seconds_bucket[20s])))
      slo_latency: 500ms
      mode: dry-run
      max: 6
      warm_up: 1s
      sync_interval: 2s
      capacity: {default_per_replica: 5}
    - name: booking
      tenant: consular
      service: booking
      signal: booking_requests
      rate_expr: sum(rate(booking_requests_total[20s]))
      mode: dry-run
      max: 4
      warm_up: 1s
      sync_interval: 2s
      capacity: {default_per_replica: 2, learn: false}
tenants:
%s`, grpcPort, httpPort, ch.Addr(), db,
		filepath.Join(root, "rules", "*.yml"), testRules,
		policy, filepath.Join(d.dir, "alerting"), gossipPort, filepath.Join(d.dir, "services"),
		hcPort, bkPort, tenants.String()))
	d.start(t, "hub", filepath.Join(bin, "hub"), hubCfg, d.hubURL)

	service := map[string]string{"consular": "booking", "health": "healthcode"}
	for _, b := range demoBureaus {
		port := freePort(t)
		self := fmt.Sprintf("127.0.0.1:%d", port)
		scrape := fmt.Sprintf(`  - job_name: bureauhub-hub
    static_configs: [{targets: ["127.0.0.1:%d"]}]
  - job_name: bureauhub-agent
    static_configs: [{targets: [%q]}]
`, httpPort, self)
		if s, ok := service[b]; ok {
			scrape += fmt.Sprintf(`  - job_name: %s
    http_sd_configs:
      - url: %s/api/v1/sd?service=%s
        refresh_interval: 2s
        authorization: {credentials_file: %s}
`, s, d.hubURL, s, d.tokens[b])
		}
		cfg := write("agent-"+b+".yml", fmt.Sprintf(`identity: {bureau: %s, cloud: cloud-%s, cluster: k1, instance: %s-vm-1}
http_listen_address: %s
buffer: {dir: %s, max_bytes: 268435456, segment_bytes: 4194304}
hub:
  addresses: ["127.0.0.1:%d"]
  token_file: %s
  insecure_plaintext: true
  min_backoff: 50ms
  max_backoff: 1s
host_metrics: {interval: 5s}
global: {scrape_interval: 2s, scrape_timeout: 1500ms}
scrape_configs:
%s`, b, b, b, self, filepath.Join(d.dir, "buffer-"+b), grpcPort, d.tokens[b], scrape))
		d.start(t, "agent-"+b, filepath.Join(bin, "agent"), cfg, "http://"+self)
	}
	return d
}

// start runs a hub or agent with its config and waits until it is healthy;
// it is stopped when the test ends, its log shown if the test failed.
func (d *demo) start(t *testing.T, name, bin, cfg, url string) {
	t.Helper()
	p, err := e2e.Start(name, bin, []string{"-config.file", cfg}, d.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(30 * time.Second); err != nil && !p.Exited() {
			t.Errorf("%s stop: %v", name, err)
		}
		if t.Failed() {
			t.Logf("%s log (tail):\n%s", name, tail(p.Log(), 30))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go func() { // give up at once if the process exits
		for !p.Exited() && ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond)
		}
		cancel()
	}()
	if err := e2e.WaitHTTP(ctx, url+"/-/healthy"); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, tail(p.Log(), 30))
	}
	d.procs = append(d.procs, p)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// load runs the load generator's steady scenario against both services
// until ctx ends.
func (d *demo) load(ctx context.Context, t *testing.T) (wait func()) {
	var wg sync.WaitGroup
	for _, target := range []string{loadgen.TargetHealthcode, loadgen.TargetBooking} {
		cfg := loadgen.Config{}
		cfg.SetDefaults()
		cfg.Scenario, cfg.SteadyTarget = loadgen.ScenarioSteady, target
		cfg.Targets.Healthcode, cfg.Targets.Booking = d.urls["healthcode"], d.urls["booking"]
		cfg.Rate, cfg.Duration, cfg.Timeout = 30, 3*time.Minute, 2*time.Second
		cfg.Healthcode.Population = 2000
		wg.Go(func() {
			if _, err := loadgen.Run(ctx, cfg, slog.New(slog.DiscardHandler), nil); err != nil && ctx.Err() == nil {
				t.Errorf("load generator (%s): %v", target, err)
			}
		})
	}
	return wg.Wait
}

// get runs a GET on the hub's API as tenant.
func (d *demo) get(tenant, path string, params url.Values) (int, []byte, error) {
	tok, err := os.ReadFile(d.tokens[tenant])
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequest(http.MethodGet, d.hubURL+path+"?"+params.Encode(), nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// queryRange runs expr over the last few minutes as the data bureau and
// reports how many series came back and whether any point is a number
// (not NaN): a panel whose every point is NaN draws nothing.
func (d *demo) queryRange(expr string) (series int, finite bool, err error) {
	end := time.Now()
	code, body, err := d.get("databureau", "/api/v1/query_range", url.Values{
		"query": {expr},
		"start": {strconv.FormatInt(end.Add(-3*time.Minute).Unix(), 10)},
		"end":   {strconv.FormatInt(end.Unix(), 10)},
		"step":  {"5"},
	})
	if err != nil {
		return 0, false, err
	}
	if code != http.StatusOK {
		return 0, false, fmt.Errorf("status %d: %s", code, body)
	}
	var r struct {
		Data struct {
			Result []struct {
				Values [][2]any `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, false, fmt.Errorf("%w: %s", err, body)
	}
	for _, s := range r.Data.Result {
		for _, v := range s.Values {
			if f, err := strconv.ParseFloat(fmt.Sprint(v[1]), 64); err == nil && !math.IsNaN(f) {
				finite = true
			}
		}
	}
	return len(r.Data.Result), finite, nil
}

// TestPanelsReturnData runs every panel and annotation query of every
// dashboard against a hub loaded with demo data, with the variables set
// to every bureau, and requires a series with at least one number from
// each (bar the noDataAllowed list). The test ends as soon as every query
// has data.
func TestPanelsReturnData(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ClickHouse, a hub, agents and the load generator")
	}
	dashboards := loadDashboards(t)
	var pending []query
	for _, f := range sortedKeys(dashboards) {
		d := dashboards[f]
		defined := definedVars(d)
		for _, q := range queries(f, d) {
			q.Expr, _ = substitute(q.Expr, defined)
			pending = append(pending, q)
		}
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			q, _ := variableQuery(v)
			pending = append(pending, query{File: f, Panel: "variable " + v.Name, RefID: "label_values", Expr: q})
		}
	}

	start := time.Now()
	d := startDemo(t)
	t.Logf("demo up in %s", time.Since(start).Round(time.Second))
	ctx, stop := context.WithCancel(context.Background())
	wait := d.load(ctx, t)
	defer wait()
	defer stop()

	// Data keeps arriving, and rates need two scrapes in their window:
	// poll until every query has data or the deadline passes.
	deadline := time.Now().Add(100 * time.Second)
	last := map[string]string{}
	onlyAllowed := func() bool {
		for _, q := range pending {
			if _, ok := noDataAllowed[q.String()]; !ok {
				return false
			}
		}
		return true
	}
	for !onlyAllowed() && time.Now().Before(deadline) {
		time.Sleep(3 * time.Second)
		var still []query
		for _, q := range pending {
			ok, why := d.hasData(q)
			if !ok {
				last[q.String()] = why
				still = append(still, q)
			}
		}
		if len(still) < len(pending) {
			t.Logf("%s: %d queries without data yet", time.Since(start).Round(time.Second), len(still))
			if len(still) <= 3 {
				for _, q := range still {
					t.Logf("  %s", q)
				}
			}
		}
		pending = still
	}
	t.Logf("queries checked %s after start", time.Since(start).Round(time.Second))
	for _, q := range pending {
		if reason, ok := noDataAllowed[q.String()]; ok {
			t.Logf("%s: no data, allowed: %s", q, reason)
			continue
		}
		t.Errorf("%s: %s\n%s", q, last[q.String()], q.Expr)
	}
	for k := range noDataAllowed {
		found := false
		for _, q := range pending {
			found = found || q.String() == k
		}
		if !found {
			t.Errorf("%s is allowed to have no data but has data, or is gone: drop it from noDataAllowed", k)
		}
	}
}

// hasData runs one query; label_values variables go through the label
// values API, as Grafana's Prometheus data source sends them.
func (d *demo) hasData(q query) (bool, string) {
	if q.RefID == "label_values" {
		sel, label, err := parseLabelValues(q.Expr)
		if err != nil {
			return false, err.Error()
		}
		params := url.Values{}
		if sel != "" {
			params.Set("match[]", sel)
		}
		code, body, err := d.get("databureau", "/api/v1/label/"+label+"/values", params)
		if err != nil || code != http.StatusOK {
			return false, fmt.Sprintf("%d %s %v", code, body, err)
		}
		var r struct {
			Data []string `json:"data"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return false, err.Error()
		}
		if label == "bureau" {
			for _, b := range demoBureaus {
				if !contains(r.Data, b) {
					return false, fmt.Sprintf("values %v lack %s", r.Data, b)
				}
			}
		}
		return len(r.Data) > 0, fmt.Sprintf("no values: %s", body)
	}
	n, finite, err := d.queryRange(q.Expr)
	switch {
	case err != nil:
		return false, err.Error()
	case n == 0:
		return false, "empty result"
	case !finite:
		return false, fmt.Sprintf("%d series, every point NaN", n)
	}
	return true, ""
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
