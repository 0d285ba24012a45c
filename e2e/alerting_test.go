package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bureauhub/bureauhub/hub/refsvc/loadgen"
)

// webhookSink is a real local webhook receiver recording Alertmanager v4
// payloads.
type webhookSink struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []webhookMsg
}

type webhookMsg struct {
	Path     string
	Version  string            `json:"version"`
	Status   string            `json:"status"`
	Receiver string            `json:"receiver"`
	GroupKey string            `json:"groupKey"`
	Common   map[string]string `json:"commonLabels"`
	Alerts   []struct {
		Status string            `json:"status"`
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
}

func newWebhookSink(t *testing.T) *webhookSink {
	s := &webhookSink{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m webhookMsg
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("webhook body is not v4 JSON: %v: %s", err, b)
		}
		m.Path = r.URL.Path
		s.mu.Lock()
		s.got = append(s.got, m)
		s.mu.Unlock()
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// matching returns the notifications to path whose common alertname is
// name, split by status.
func (s *webhookSink) matching(path, name string) (firing, resolved int, all []webhookMsg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.got {
		if m.Path != path || m.Common["alertname"] != name {
			continue
		}
		all = append(all, m)
		if m.Status == "firing" {
			firing++
		} else {
			resolved++
		}
	}
	return firing, resolved, all
}

func (s *webhookSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

func (s *webhookSink) dump() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, _ := json.Marshal(s.got)
	return string(b)
}

// stable waits for d and fails if anything arrives at the sink meanwhile:
// "exactly one" needs a period in which nothing more comes.
func (s *webhookSink) stable(t *testing.T, d time.Duration) {
	t.Helper()
	n := s.count()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if s.count() != n {
			t.Fatalf("unexpected notification after the expected ones: %s", s.dump())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// alertingConfig writes a policy routing each bureau to its own path on
// the sink and returns the hub's alerting section.
func (e *env) alertingConfig(t *testing.T, sink *webhookSink, groupWait string) string {
	t.Helper()
	policy := fmt.Sprintf(`route:
  receiver: databureau
  group_by: [bureau, alertname]
  group_wait: %s
  group_interval: 2s
  repeat_interval: 1h
  send_resolved_immediately: true
  routes:
    - matchers: ['bureau="health"']
      receiver: health
    - matchers: ['bureau="transport"']
      receiver: transport
inhibit_rules:
  - source_matchers: ['alertname="BureauUnreachable"']
    target_matchers: ['alertname!="BureauUnreachable"']
    equal: [bureau]
receivers:
  - name: databureau
    webhook_configs: [{url: %q}]
  - name: health
    webhook_configs: [{url: %q}]
  - name: transport
    webhook_configs: [{url: %q}]
`, groupWait, sink.srv.URL+"/databureau", sink.srv.URL+"/health", sink.srv.URL+"/transport")
	p := filepath.Join(e.dir, "policy.yml")
	if err := os.WriteFile(p, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("alerting: {config_file: %s, data_dir: %s, status_interval: 1s}\n", p, filepath.Join(e.dir, "alerting"))
}

// scanLatencyRules are the shipped SLI and ScanLatencyAboveObjective
// rules with windows short enough for a test (10 s instead of 5 m, no
// `for`).
const scanLatencyRules = `groups:
  - name: e2e-slis
    interval: 1s
    rules:
      - record: bureau:healthcode_scan_latency_seconds:p99_10s
        expr: histogram_quantile(0.99, sum by (bureau, le) (rate(healthcode_scan_duration_seconds_bucket[10s])))
      - alert: ScanLatencyAboveObjective
        expr: bureau:healthcode_scan_latency_seconds:p99_10s > 0.5
        labels: {severity: critical}
        annotations: {summary: "scan p99 {{ $value }}"}
`

// TestAlertOnOverloadedHealthCode overloads the hosted health-code
// service with the load generator: the scan-latency rule fires from the
// scraped data and the health bureau's webhook gets exactly one
// notification for the group, then exactly one resolved notification once
// the load stops.
func TestAlertOnOverloadedHealthCode(t *testing.T) {
	e := newEnv(t)
	sink := newWebhookSink(t)
	rulesFile := filepath.Join(e.dir, "slis.rules.yml")
	if err := os.WriteFile(rulesFile, []byte(scanLatencyRules), 0o644); err != nil {
		t.Fatal(err)
	}
	hp := freePort(t)
	healthURL := fmt.Sprintf("http://127.0.0.1:%d", hp)
	e.hubTop = fmt.Sprintf(`rules: {evaluation_interval: 1s, resend_delay: 1s, files: [%q]}
services:
  data_dir: %s
  healthcode:
    hosting: {tenant: health, listen_address: "127.0.0.1:%d", replicas: 1, warm_up: 100ms}
    config: {population: 2000, capacity: {concurrency: 2, service_time: 50ms, queue_length: 400, queue_timeout: 3s}}
`, rulesFile, e.dir, hp) + e.alertingConfig(t, sink, "1s")
	e.startHub()
	ap := freePort(t)
	e.startAgent("agent-health", e.agentConfig("health", "health-vm-1", ap, t.TempDir(),
		"global: {scrape_interval: 1s}\nscrape_configs:\n"+e.sdScrape("healthcode", "health")), ap)
	waitFor(t, 30*time.Second, func() (bool, string) {
		v, ok, body := e.instant(t, "health", `count(up{job="healthcode"} == 1)`)
		return ok && v == 1, "healthcode replica not scraped yet: " + body
	})

	// 120 scans/s against one replica that serves 40/s: queueing pushes
	// the p99 past 500 ms.
	cfg := loadgen.Config{}
	cfg.SetDefaults()
	cfg.Scenario, cfg.SteadyTarget = loadgen.ScenarioSteady, loadgen.TargetHealthcode
	cfg.Targets.Healthcode = healthURL
	cfg.Rate, cfg.Duration, cfg.Timeout = 120, 60*time.Second, 5*time.Second
	cfg.Healthcode.Population, cfg.Healthcode.UpdateFraction = 2000, 0
	cfg.Clients.Retries, cfg.Clients.RefreshProbability = 0, 0
	ctx, stopLoad := context.WithCancel(context.Background())
	loadDone := make(chan error, 1)
	go func() {
		_, err := loadgen.Run(ctx, cfg, slog.New(slog.DiscardHandler), nil)
		loadDone <- err
	}()
	defer func() { stopLoad(); <-loadDone }()

	waitFor(t, 45*time.Second, func() (bool, string) {
		firing, _, _ := sink.matching("/health", "ScanLatencyAboveObjective")
		v, _, _ := e.instant(t, "health", `bureau:healthcode_scan_latency_seconds:p99_10s`)
		return firing >= 1, fmt.Sprintf("no firing notification yet (p99 %v); got %s", v, sink.dump())
	})
	stopLoad()
	if err := <-loadDone; err != nil {
		t.Fatalf("load generator: %v", err)
	}
	loadDone <- nil
	waitFor(t, 60*time.Second, func() (bool, string) {
		_, resolved, _ := sink.matching("/health", "ScanLatencyAboveObjective")
		return resolved >= 1, "no resolved notification yet: " + sink.dump()
	})
	sink.stable(t, 5*time.Second)
	firing, resolved, all := sink.matching("/health", "ScanLatencyAboveObjective")
	if firing != 1 || resolved != 1 {
		t.Fatalf("want exactly one firing and one resolved notification, got %d and %d: %+v", firing, resolved, all)
	}
	if all[0].Version != "4" || all[0].Receiver != "health" || all[0].Alerts[0].Labels["bureau"] != "health" {
		t.Fatalf("notification: %+v", all[0])
	}
	if n := sink.count(); n != 2 {
		t.Fatalf("%d notifications in all, want 2: %s", n, sink.dump())
	}
	// The history holds the firing and resolved states and both deliveries.
	code, body := e.apiGet(t, "health", "/api/v1/alerts/history?match[]="+url.QueryEscape(`{alertname="ScanLatencyAboveObjective"}`))
	if code != 200 || !strings.Contains(body, `"firing"`) || !strings.Contains(body, `"resolved"`) {
		t.Fatalf("alert history: %d %s", code, body)
	}
}

// hostSilentRule is a per-host alert: a host whose metrics stopped within
// the last minute. During a site outage every host of the bureau fires it.
const hostSilentRule = `groups:
  - name: e2e-hosts
    interval: 1s
    rules:
      - alert: HostSilent
        expr: |
          max by (bureau, instance) (max_over_time(node_time_seconds[1m]))
          unless
          max by (bureau, instance) (max_over_time(node_time_seconds[4s]))
        labels: {severity: warning}
        annotations: {summary: "{{ $labels.instance }} silent"}
`

// TestBureauUnreachable stops every agent of one bureau: its ops get one
// BureauUnreachable notification and no per-host alert; when the agents
// come back and deliver their data, it resolves.
func TestBureauUnreachable(t *testing.T) {
	e := newEnv(t)
	sink := newWebhookSink(t)
	rulesFile := filepath.Join(e.dir, "hosts.rules.yml")
	if err := os.WriteFile(rulesFile, []byte(hostSilentRule), 0o644); err != nil {
		t.Fatal(err)
	}
	e.hubTop = fmt.Sprintf("rules: {evaluation_interval: 1s, resend_delay: 1s, files: [%q]}\nsite: {silence_after: 2s, catch_up_lag: 3s, interval: 500ms, resolve_after: 8s}\n", rulesFile) +
		e.alertingConfig(t, sink, "3s")
	e.startHub()

	type agentSpec struct {
		name, instance, cfg string
		port                int
	}
	var specs []agentSpec
	for i := 1; i <= 3; i++ {
		port := freePort(t)
		inst := fmt.Sprintf("transport-vm-%d", i)
		specs = append(specs, agentSpec{"agent-" + inst, inst,
			e.agentConfig("transport", inst, port, t.TempDir(), "host_metrics: {interval: 1s}\n"), port})
	}
	var agents []*agentProc
	for _, s := range specs {
		agents = append(agents, e.startAgent(s.name, s.cfg, s.port))
	}
	waitFor(t, 30*time.Second, func() (bool, string) {
		v, ok, body := e.instant(t, "transport", `count(max_over_time(node_time_seconds[4s]))`)
		return ok && v == 3, "hosts reporting: " + body
	})

	for _, a := range agents {
		if err := a.Stop(20 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, func() (bool, string) {
		firing, _, _ := sink.matching("/transport", "BureauUnreachable")
		return firing == 1, "no BureauUnreachable yet: " + sink.dump()
	})
	// The per-host alerts fire too (the rule sees the silence) but are
	// inhibited: wait until all three are active, then beyond group_wait.
	waitFor(t, 30*time.Second, func() (bool, string) {
		code, body := e.apiGet(t, "transport", "/api/v2/alerts?filter="+url.QueryEscape(`alertname="HostSilent"`))
		return code == 200 && strings.Count(body, `"HostSilent"`) == 3 && strings.Count(body, `"suppressed"`) == 3,
			fmt.Sprintf("HostSilent alerts: %d %s", code, body)
	})
	sink.stable(t, 5*time.Second)
	if f, _, all := sink.matching("/transport", "HostSilent"); f != 0 {
		t.Fatalf("per-host flood: %d HostSilent notifications: %+v", f, all)
	}

	for _, s := range specs {
		e.startAgent(s.name+"-again", s.cfg, s.port)
	}
	waitFor(t, 60*time.Second, func() (bool, string) {
		_, resolved, _ := sink.matching("/transport", "BureauUnreachable")
		return resolved == 1, "BureauUnreachable not resolved yet: " + sink.dump()
	})
	firing, resolved, _ := sink.matching("/transport", "BureauUnreachable")
	if firing != 1 || resolved != 1 {
		t.Fatalf("BureauUnreachable: %d firing and %d resolved notifications, want 1 and 1: %s", firing, resolved, sink.dump())
	}
	if f, _, all := sink.matching("/transport", "HostSilent"); f != 0 {
		t.Fatalf("HostSilent notified after the agents came back: %+v", all)
	}
	if v := metricValue(t, e.hubURL(), "bureauhub_bureau_unreachable", map[string]string{"tenant": "transport"}); v != 0 {
		t.Fatalf("bureauhub_bureau_unreachable{transport} = %v after recovery", v)
	}
}
