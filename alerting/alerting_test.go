package alerting

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// docConfig is the routing tree of Alertmanager's configuration
// documentation (docs/configuration.md, "Example"), with intervals scaled
// down and the offhours/holidays time intervals replaced by one that is
// always in force, plus the documentation's inhibit rule and a route for
// the silence case.
const docConfig = `
route:
  receiver: default-receiver
  group_wait: 200ms
  group_interval: 1m
  repeat_interval: 4h
  group_by: [cluster, alertname]
  routes:
  - receiver: silence-test
    group_by: [test]
    matchers: [test="silence"]
  - receiver: database-pager
    group_wait: 100ms
    matchers:
    - service=~"mysql|cassandra"
  - receiver: frontend-pager
    group_by: [product, environment]
    matchers:
    - team="frontend"
  - receiver: dev-pager
    matchers:
      - service="inhouse-service"
    mute_time_intervals:
      - always
    continue: true
  - receiver: on-call-pager
    matchers:
      - service="inhouse-service"
    active_time_intervals:
      - always
time_intervals:
- name: always
  time_intervals:
  - times:
    - start_time: "00:00"
      end_time: "24:00"
inhibit_rules:
- source_matchers: [severity="critical"]
  target_matchers: [severity="warning"]
  equal: [alertname, cluster]
receivers:
- name: default-receiver
  webhook_configs: [{url: "{{HOOK}}/default-receiver"}]
- name: database-pager
  webhook_configs: [{url: "{{HOOK}}/database-pager"}]
- name: frontend-pager
  webhook_configs: [{url: "{{HOOK}}/frontend-pager"}]
- name: dev-pager
  webhook_configs: [{url: "{{HOOK}}/dev-pager"}]
- name: on-call-pager
  webhook_configs: [{url: "{{HOOK}}/on-call-pager"}]
- name: silence-test
  webhook_configs: [{url: "{{HOOK}}/silence-test"}]
`

// TestRouting checks which receiver each alert of the documentation's
// example reaches, through Alertmanager's webhook integration.
func TestRouting(t *testing.T) {
	h := newHook(t)
	in := start(t, h, docConfig, options{})
	cases := []struct {
		name     string
		alert    testAlert
		receiver string
	}{
		{"regex matcher", firing("alertname", "DBDown", "service", "mysql", "cluster", "c1"), "database-pager"},
		{"regex matcher second value", firing("alertname", "DBDown", "service", "cassandra", "cluster", "c1"), "database-pager"},
		{"team route", firing("alertname", "FEDown", "team", "frontend", "product", "shop", "environment", "prod"), "frontend-pager"},
		{"active time interval", firing("alertname", "InHouse", "service", "inhouse-service"), "on-call-pager"},
		{"fallback to root", firing("alertname", "Other", "cluster", "c9"), "default-receiver"},
	}
	for _, c := range cases {
		in.post(t, tokenData, c.alert)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			waitFor(t, 10*time.Second, c.receiver+" notified of "+c.alert.Labels["alertname"], func() bool {
				for _, m := range h.messages(c.receiver) {
					for _, a := range m.Alerts {
						if a.Labels["alertname"] == c.alert.Labels["alertname"] && a.Labels["service"] == c.alert.Labels["service"] {
							return true
						}
					}
				}
				return false
			})
		})
	}
	// dev-pager matched the in-house alert too (continue: true) but its
	// mute time interval is always in force.
	waitFor(t, 10*time.Second, "dev-pager's notification muted", func() bool {
		return gathered(t, in, "alertmanager_notifications_suppressed_total", "reason", notify.SuppressedReasonMuteTimeInterval) > 0
	})
	if got := h.messages("dev-pager"); len(got) != 0 {
		t.Errorf("dev-pager notified during its mute time interval: %+v", got)
	}
	for _, m := range h.messages("default-receiver") {
		if slices.Contains(labelsOf(m, "service"), "mysql") {
			t.Errorf("database alert reached the default receiver too")
		}
	}
}

// TestGrouping checks the root route's group_by [cluster, alertname].
func TestGrouping(t *testing.T) {
	h := newHook(t)
	in := start(t, h, docConfig, options{})
	in.post(t, tokenData,
		firing("alertname", "HighLatency", "cluster", "c1", "instance", "i1"),
		firing("alertname", "HighLatency", "cluster", "c1", "instance", "i2"),
		firing("alertname", "HighLatency", "cluster", "c2", "instance", "i1"),
	)
	waitFor(t, 10*time.Second, "two groups notified", func() bool { return len(h.messages("default-receiver")) >= 2 })
	got := map[string][]string{}
	for _, m := range h.messages("default-receiver") {
		inst := labelsOf(m, "instance")
		sort.Strings(inst)
		got[m.GroupLabels["cluster"]+"/"+m.GroupLabels["alertname"]] = inst
	}
	want := map[string][]string{"c1/HighLatency": {"i1", "i2"}, "c2/HighLatency": {"i1"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("groups: got %v, want %v", got, want)
	}
}

// TestInhibition checks the documentation's inhibit rule: a critical alert
// mutes warnings with the same alertname and cluster, not others.
func TestInhibition(t *testing.T) {
	h := newHook(t)
	in := start(t, h, docConfig, options{})
	in.post(t, tokenData,
		firing("alertname", "DiskFull", "cluster", "c1", "severity", "critical"),
		firing("alertname", "DiskFull", "cluster", "c1", "severity", "warning"),
		firing("alertname", "DiskFull", "cluster", "c2", "severity", "warning"),
	)
	waitFor(t, 10*time.Second, "both groups notified", func() bool { return len(h.messages("default-receiver")) >= 2 })
	got := map[string][]string{}
	for _, m := range h.messages("default-receiver") {
		got[m.GroupLabels["cluster"]] = labelsOf(m, "severity")
	}
	want := map[string][]string{"c1": {"critical"}, "c2": {"warning"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("severities notified per cluster: got %v, want %v", got, want)
	}
	// The API shows the inhibited warning as suppressed.
	code, body := in.do(t, http.MethodGet, `/api/v2/alerts?filter=severity="warning"&filter=cluster="c1"`, tokenData, nil)
	if code != http.StatusOK || !strings.Contains(string(body), `"inhibitedBy":["`) || !strings.Contains(string(body), `"state":"suppressed"`) {
		t.Errorf("GET inhibited alert: %d %s", code, body)
	}
}

// TestSilence checks that a silence by matcher keeps its alert out of the
// notification and that the API reports it silenced.
func TestSilence(t *testing.T) {
	h := newHook(t)
	in := start(t, h, docConfig, options{})
	id := createSilence(t, in, tokenData, `alertname`, `Noisy`)
	in.post(t, tokenData,
		firing("alertname", "Noisy", "test", "silence"),
		firing("alertname", "Quiet", "test", "silence"),
	)
	waitFor(t, 10*time.Second, "silence-test notified", func() bool { return len(h.messages("silence-test")) >= 1 })
	if got := labelsOf(h.messages("silence-test")[0], "alertname"); fmt.Sprint(got) != "[Quiet]" {
		t.Errorf("notified alerts: got %v, want [Quiet]", got)
	}
	code, body := in.do(t, http.MethodGet, `/api/v2/alerts?filter=alertname="Noisy"&silenced=false`, tokenData, nil)
	if code != http.StatusOK || string(body) != "[]\n" {
		t.Errorf("silenced=false still lists the silenced alert: %d %s", code, body)
	}
	code, body = in.do(t, http.MethodGet, `/api/v2/alerts?filter=alertname="Noisy"`, tokenData, nil)
	if code != http.StatusOK || !strings.Contains(string(body), id) {
		t.Errorf("alert not silenced by %s: %d %s", id, code, body)
	}
}

// createSilence silences name=value for an hour and returns its ID.
func createSilence(tb testing.TB, in *instance, token, name, value string) string {
	tb.Helper()
	now := time.Now().UTC()
	code, body := in.do(tb, http.MethodPost, "/api/v2/silences", token, map[string]any{
		"matchers":  []map[string]any{{"name": name, "value": value, "isRegex": false, "isEqual": true}},
		"startsAt":  now.Format(time.RFC3339),
		"endsAt":    now.Add(time.Hour).Format(time.RFC3339),
		"createdBy": "test",
		"comment":   "test",
	})
	if code != http.StatusOK {
		tb.Fatalf("create silence: %d %s", code, body)
	}
	var resp struct {
		SilenceID string `json:"silenceID"`
	}
	if err := json.Unmarshal(body, &resp); err != nil || resp.SilenceID == "" {
		tb.Fatalf("create silence: %s: %v", body, err)
	}
	return resp.SilenceID
}

const immediateConfig = `
route:
  receiver: slow
  group_wait: 100ms
  group_interval: 1m
  repeat_interval: 1h
  group_by: [alertname]
  routes:
  - receiver: fast
    matchers: [route="fast"]
    send_resolved_immediately: true
  - receiver: slow
    matchers: [route="slow"]
receivers:
- name: fast
  webhook_configs: [{url: "{{HOOK}}/fast"}]
- name: slow
  webhook_configs: [{url: "{{HOOK}}/slow"}]
`

// TestResolvedImmediately checks that with a group_interval of a minute a
// resolved alert on a flagged route is notified within seconds, and on an
// unflagged route is not.
func TestResolvedImmediately(t *testing.T) {
	h := newHook(t)
	in := start(t, h, immediateConfig, options{})
	fast := firing("alertname", "Fast", "route", "fast")
	fast2 := firing("alertname", "Fast", "route", "fast", "instance", "other")
	slow := firing("alertname", "Slow", "route", "slow")
	in.post(t, tokenData, fast, fast2, slow)
	waitFor(t, 10*time.Second, "firing notifications", func() bool {
		return len(h.messages("fast")) == 1 && len(h.messages("slow")) == 1
	})
	resolvedAt := time.Now()
	in.post(t, tokenData, resolved(fast), resolved(slow))
	waitFor(t, 10*time.Second, "resolved notification on the flagged route", func() bool { return len(h.messages("fast")) == 2 })
	if took := time.Since(resolvedAt); took > 20*time.Second {
		t.Errorf("resolved notification took %s", took)
	}
	m := h.messages("fast")[1]
	statuses := map[string]string{}
	for _, a := range m.Alerts {
		statuses[a.Labels["instance"]] = a.Status
	}
	if statuses[""] != "resolved" || statuses["other"] != "firing" {
		t.Errorf("immediate notification: got statuses %v, want the resolved alert resolved and the other firing", statuses)
	}
	// The unflagged route waits for its group_interval (a minute).
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if n := len(h.messages("slow")); n != 1 {
			t.Fatalf("unflagged route sent %d notifications before its group_interval", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The group's own flush later finds nothing new: no duplicate.
	if n := len(h.messages("fast")); n != 2 {
		t.Errorf("flagged route: %d notifications, want 2", n)
	}
	if got := testutil.ToFloat64(in.a.m.immediate); got < 1 {
		t.Errorf("immediate flushes: %v", got)
	}
}

const failingConfig = `
route:
  receiver: ok
  group_wait: 100ms
  group_interval: 1m
  group_by: [alertname]
  routes:
  - receiver: broken
    matchers: [alertname="Broken"]
    continue: true
  - receiver: hanging
    matchers: [alertname="Hanging"]
    continue: true
  - receiver: ok
receivers:
- name: ok
  webhook_configs: [{url: "{{HOOK}}/ok"}]
- name: broken
  webhook_configs: [{url: "{{HOOK}}/broken"}]
- name: hanging
  webhook_configs: [{url: "{{HOOK}}/hanging", timeout: 300ms}]
`

// TestFailingReceivers checks that a receiver answering 500 is retried and
// counted, a hanging one times out, and neither keeps another receiver of
// the same alert from its notification.
func TestFailingReceivers(t *testing.T) {
	h := newHook(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	h.behave = func(w http.ResponseWriter, r *http.Request) bool {
		switch r.URL.Path {
		case "/broken":
			http.Error(w, "boom", http.StatusInternalServerError)
			return true
		case "/hanging":
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return true
		}
		return false
	}
	in := start(t, h, failingConfig, options{})
	in.post(t, tokenData, firing("alertname", "Broken"), firing("alertname", "Hanging"))
	waitFor(t, 10*time.Second, "ok receiver notified of both alerts", func() bool {
		return len(h.messages("ok")) == 2
	})
	for _, rcv := range []string{"broken", "hanging"} {
		t.Run(rcv, func(t *testing.T) {
			attempts := in.a.m.attempts.WithLabelValues(rcv, "webhook[0]")
			failures := in.a.m.failures.WithLabelValues(rcv, "webhook[0]")
			waitFor(t, 15*time.Second, rcv+" retried", func() bool {
				return h.hitCount(rcv) >= 2 && testutil.ToFloat64(failures) >= 2
			})
			if a, f := testutil.ToFloat64(attempts), testutil.ToFloat64(failures); a < f || f < 2 {
				t.Errorf("attempts %v, failures %v", a, f)
			}
		})
	}
}
