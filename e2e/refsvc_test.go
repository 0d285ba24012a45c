package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bureauhub/bureauhub/hub/refsvc/healthcode"
)

// instant runs an instant query as tenant and returns the first sample's
// value; ok is false when the result is empty or the query failed.
func (e *env) instant(t *testing.T, tenant, expr string) (float64, bool, string) {
	t.Helper()
	code, body := e.apiGet(t, tenant, "/api/v1/query?query="+url.QueryEscape(expr))
	if code != 200 {
		return 0, false, fmt.Sprintf("%d %s", code, body)
	}
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("query %s: %v: %s", expr, err, body)
	}
	if len(r.Data.Result) == 0 {
		return 0, false, "empty result"
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil, body
}

func (e *env) apiDo(t *testing.T, tenant, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, e.hubURL()+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+readToken(t, e.tokens[tenant]))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// servicesConfig hosts the health-code and booking services on free ports
// with a short warm-up, their stores in the test's directory.
func (e *env) servicesConfig(t *testing.T) (healthURL, bookingURL string) {
	hp, bp := freePort(t), freePort(t)
	e.hubTop += fmt.Sprintf(`services:
  data_dir: %s
  healthcode:
    hosting: {tenant: health, listen_address: "127.0.0.1:%d", replicas: 2, max_replicas: 6, warm_up: 300ms, drain_timeout: 5s}
    config: {population: 2000, capacity: {concurrency: 8, service_time: 2ms}}
  booking:
    hosting: {tenant: consular, listen_address: "127.0.0.1:%d", replicas: 1, max_replicas: 4, warm_up: 300ms, drain_timeout: 5s}
    config: {store: {no_sync: true}}
`, e.dir, hp, bp)
	return fmt.Sprintf("http://127.0.0.1:%d", hp), fmt.Sprintf("http://127.0.0.1:%d", bp)
}

// sdScrape is an agent scrape config discovering a hosted service's
// replicas through the hub's HTTP SD endpoint with the bureau's token.
func (e *env) sdScrape(service, tenant string) string {
	return fmt.Sprintf(`  - job_name: %s
    scrape_interval: 1s
    scrape_timeout: 900ms
    http_sd_configs:
      - url: %s/api/v1/sd?service=%s
        refresh_interval: 1s
        authorization: {credentials_file: %s}
`, service, e.hubURL(), service, e.tokens[tenant])
}

// TestHostedServicesScrapedThroughHTTPSD runs the hub with both reference
// services, each bureau's agent discovering its service's replicas through
// the hub and federating their business metrics back; scaling through the
// API changes what the agent scrapes, and one bureau cannot discover or
// scale the other's service.
func TestHostedServicesScrapedThroughHTTPSD(t *testing.T) {
	e := newEnv(t)
	healthURL, bookingURL := e.servicesConfig(t)
	e.startHub()

	hp, cp := freePort(t), freePort(t)
	e.startAgent("agent-health", e.agentConfig("health", "health-vm-1", hp, t.TempDir(),
		"global: {scrape_interval: 1s}\nscrape_configs:\n"+e.sdScrape("healthcode", "health")), hp)
	e.startAgent("agent-consular", e.agentConfig("consular", "consular-vm-1", cp, t.TempDir(),
		"global: {scrape_interval: 1s}\nscrape_configs:\n"+e.sdScrape("booking", "consular")), cp)

	// Scans through the stable address reach the replicas.
	waitFor(t, 30*time.Second, func() (bool, string) {
		resp, err := http.Get(healthURL + "/api/v1/codes/" + healthcode.PersonID(7))
		if err != nil {
			return false, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200 && strings.Contains(string(b), `"colour"`), fmt.Sprintf("scan: %d %s", resp.StatusCode, b)
	})
	for i := 0; i < 50; i++ {
		resp, err := http.Get(healthURL + "/api/v1/codes/" + healthcode.PersonID(i))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	resp, err := http.Get(bookingURL + "/api/v1/consulates")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	upReplicas := func(tenant, job string, want int) {
		t.Helper()
		expr := fmt.Sprintf(`count(up{job=%q} == 1)`, job)
		waitFor(t, 60*time.Second, func() (bool, string) {
			v, ok, body := e.instant(t, tenant, expr)
			return ok && int(v) == want, fmt.Sprintf("%s as %s = %v (%s), want %d", expr, tenant, v, body, want)
		})
	}
	upReplicas("health", "healthcode", 2)
	upReplicas("consular", "booking", 1)
	// Business metrics of each replica arrive, labelled with the replica
	// and the bureau.
	waitFor(t, 60*time.Second, func() (bool, string) {
		v, ok, body := e.instant(t, "health", `sum(healthcode_scans_total{outcome="ok",bureau="health"})`)
		return ok && v >= 50, fmt.Sprintf("scans = %v (%s)", v, body)
	})
	if v, ok, _ := e.instant(t, "health", `count(count by (replica) (healthcode_scan_duration_seconds_count))`); !ok || v != 2 {
		t.Fatalf("scan latency series for %v replicas, want 2", v)
	}

	// Scale health-code to 4 through the API, then down to 1.
	if code, body := e.apiDo(t, "health", "PUT", "/api/v1/services/healthcode/replicas", `{"replicas": 4}`); code != 200 {
		t.Fatalf("scale up: %d %s", code, body)
	}
	upReplicas("health", "healthcode", 4)
	if code, body := e.apiDo(t, "health", "PUT", "/api/v1/services/healthcode/replicas", `{"replicas": 1}`); code != 200 {
		t.Fatalf("scale down: %d %s", code, body)
	}
	upReplicas("health", "healthcode", 1)

	// Tenancy: consular neither discovers nor scales health's service, and
	// its queries see no health-code data.
	if code, _ := e.apiDo(t, "consular", "GET", "/api/v1/sd?service=healthcode", ""); code != 403 {
		t.Fatalf("consular discovering healthcode: %d, want 403", code)
	}
	if code, _ := e.apiDo(t, "consular", "PUT", "/api/v1/services/healthcode/replicas", `{"replicas": 2}`); code != 403 {
		t.Fatalf("consular scaling healthcode: %d, want 403", code)
	}
	if v, ok, _ := e.instant(t, "consular", `count(healthcode_scans_total)`); ok {
		t.Fatalf("consular sees %v health-code series", v)
	}
	code, body := e.apiDo(t, "databureau", "GET", "/api/v1/services", "")
	if code != 200 || !strings.Contains(body, `"healthcode"`) || !strings.Contains(body, `"booking"`) {
		t.Fatalf("data bureau's service list: %d %s", code, body)
	}
	if v := metricValue(t, e.hubURL(), "bureauhub_refsvc_desired_replicas", map[string]string{"service": "healthcode"}); v != 1 {
		t.Fatalf("desired replicas metric %v, want 1", v)
	}
}
