package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	fpb "github.com/bureauhub/bureauhub/api/federationpb"
)

func (e *env) apiGet(t *testing.T, tenant, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.hubURL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+readToken(t, e.tokens[tenant]))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type alertsResponse struct {
	Data struct {
		Alerts []struct {
			Labels   map[string]string `json:"labels"`
			State    string            `json:"state"`
			ActiveAt time.Time         `json:"activeAt"`
		} `json:"alerts"`
	} `json:"data"`
}

func (e *env) activeAlert(t *testing.T, tenant, name string) (state string, activeAt time.Time) {
	t.Helper()
	code, body := e.apiGet(t, tenant, "/api/v1/alerts")
	if code != 200 {
		return "", time.Time{}
	}
	var r alertsResponse
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("alerts: %v: %s", err, body)
	}
	for _, a := range r.Data.Alerts {
		if a.Labels["alertname"] == name {
			return a.State, a.ActiveAt
		}
	}
	return "", time.Time{}
}

const testRules = `groups:
  - name: e2e
    interval: 1s
    rules:
      - record: job:e2e_rules_metric:sum
        expr: sum by (job) (e2e_rules_metric)
      - alert: E2EHigh
        expr: e2e_rules_metric > 5
        for: 1h
        annotations: {summary: high}
`

// TestRulesEndToEnd runs rule evaluation in the hub process over data in
// ClickHouse: recording results are stored through ingestion in the
// tenant that owns the data, once per evaluation; alerts are per tenant;
// an alert's pending state survives a hub restart; an invalid reload keeps
// the previous rules and says why.
func TestRulesEndToEnd(t *testing.T) {
	e := newEnv(t)
	rulesFile := filepath.Join(e.dir, "e2e.rules.yml")
	if err := os.WriteFile(rulesFile, []byte(testRules), 0o644); err != nil {
		t.Fatal(err)
	}
	e.hubTop = fmt.Sprintf("rules: {evaluation_interval: 1s, files: [%q], for_grace_period: 1s, outage_tolerance: 1h}", rulesFile)
	e.startHub()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pushed := make(chan struct{})
	go func() {
		defer close(pushed)
		token := readToken(t, e.tokens["consular"])
		stream, err := e.openStream(t, token)
		for seq := uint64(1); ctx.Err() == nil; seq++ {
			if err != nil {
				// The hub restarts during the test: reconnect.
				stream, err = e.openStream(t, token)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			s := series("e2e_rules_metric", time.Now().UnixMilli(), "job", "booking")
			s.Samples[0].Value = 10
			err = stream.Send(&fpb.Batch{AgentId: "rules-test", Seq: seq, Encoding: fpb.Encoding_ENCODING_SNAPPY_PROMPB, Payload: encode(t, s), Samples: 1})
			if err == nil {
				_, err = stream.Recv()
			}

			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()

	waitFor(t, 30*time.Second, func() (bool, string) {
		state, _ := e.activeAlert(t, "consular", "E2EHigh")
		return state == "pending", fmt.Sprintf("E2EHigh state %q", state)
	})
	_, activeAt := e.activeAlert(t, "consular", "E2EHigh")
	if state, _ := e.activeAlert(t, "health", "E2EHigh"); state != "" {
		t.Errorf("tenant health sees consular's alert (state %q)", state)
	}
	if state, _ := e.activeAlert(t, "databureau", "E2EHigh"); state != "pending" {
		t.Errorf("the data bureau does not see consular's alert (state %q)", state)
	}

	// Recording results land in consular's tenant, once per evaluation.
	waitFor(t, 30*time.Second, func() (bool, string) {
		n, _ := e.stored("consular", "job:e2e_rules_metric:sum")
		return n >= 5, fmt.Sprintf("%d recorded samples", n)
	})
	n, d := e.stored("consular", "job:e2e_rules_metric:sum")
	if n != d {
		t.Errorf("recording rule: %d samples for %d distinct timestamps", n, d)
	}
	if m := e.queryUint("SELECT count() FROM {db}.series WHERE metric_name = 'job:e2e_rules_metric:sum' AND tenant != 'consular'"); m != 0 {
		t.Errorf("recording results written into %d other tenants' series", m)
	}
	// Each bureau's rule groups report their own metrics.
	for _, tn := range []string{"consular", "health"} {
		if n := metricValue(t, e.hubURL(), "prometheus_rule_group_iterations_total", map[string]string{"tenant": tn}); n < 1 {
			t.Errorf("no rule group iterations reported for tenant %s", tn)
		}
	}
	if m := e.queryUint("SELECT count() FROM {db}.series WHERE metric_name = 'ALERTS_FOR_STATE' AND tenant = 'consular'"); m == 0 {
		t.Errorf("no ALERTS_FOR_STATE series stored for consular")
	}

	// Restart: the pending alert keeps the time it has already spent
	// pending. Prometheus restores activeAt from ALERTS_FOR_STATE and moves
	// it forward by the downtime, so a restored alert's activeAt lies well
	// before the new process started, and a fresh one's after. The margin
	// (half the pending time, 7 s) absorbs a slow hub start.
	waitFor(t, 40*time.Second, func() (bool, string) {
		return time.Since(activeAt) > 14*time.Second, "alert pending for 14s"
	})
	pendingBefore := time.Since(activeAt)
	if err := e.hub.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	restartedAt := time.Now()
	e.startHub()
	waitFor(t, 30*time.Second, func() (bool, string) {
		state, at := e.activeAlert(t, "consular", "E2EHigh")
		return state == "pending" && at.Before(restartedAt.Add(-pendingBefore/2)),
			fmt.Sprintf("after restart: state %q activeAt %v; restarted at %v after %v pending", state, at, restartedAt, pendingBefore)
	})

	// An invalid file: reload is refused, naming the file, and the old
	// rules stay in force.
	if err := os.WriteFile(rulesFile, []byte("groups:\n  - name: e2e\n    rules:\n      - record: x\n        expr: sum(\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, e.hubURL()+"/-/reload", nil)
	req.Header.Set("Authorization", "Bearer "+readToken(t, e.tokens["databureau"]))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), rulesFile) {
		t.Errorf("invalid reload answered %d %q; want 400 naming %s", resp.StatusCode, body, rulesFile)
	}
	req, _ = http.NewRequest(http.MethodPost, e.hubURL()+"/-/reload", nil)
	req.Header.Set("Authorization", "Bearer "+readToken(t, e.tokens["consular"]))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 403 {
		t.Errorf("a bureau token may reload every tenant's rules: %v %v", resp.StatusCode, err)
	}
	if _, rules := e.apiGet(t, "consular", "/api/v1/rules"); !strings.Contains(rules, "job:e2e_rules_metric:sum") {
		t.Errorf("old rules gone after an invalid reload: %s", rules)
	}
	// A valid change through SIGHUP.
	if err := os.WriteFile(rulesFile, []byte(testRules+"      - record: job:e2e_rules_metric:max\n        expr: max by (job) (e2e_rules_metric)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(e.hub.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() (bool, string) {
		_, rules := e.apiGet(t, "consular", "/api/v1/rules")
		return strings.Contains(rules, "job:e2e_rules_metric:max"), "new rule not loaded after SIGHUP"
	})
	cancel()
	<-pushed
}
