package alerting

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	promrules "github.com/prometheus/prometheus/rules"
)

const plainConfig = `
route:
  receiver: all
  group_wait: 100ms
  group_interval: 1m
  group_by: [bureau, alertname]
receivers:
- name: all
  webhook_configs: [{url: "{{HOOK}}/all"}]
`

func alertsSeen(tb testing.TB, in *instance, token, query string) []string {
	tb.Helper()
	code, body := in.do(tb, http.MethodGet, "/api/v2/alerts"+query, token, nil)
	if code != http.StatusOK {
		tb.Fatalf("GET alerts: %d %s", code, body)
	}
	var as models.GettableAlerts
	if err := json.Unmarshal(body, &as); err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, a.Labels["bureau"]+"/"+a.Labels["alertname"])
	}
	sort.Strings(out)
	return out
}

func silencesSeen(tb testing.TB, in *instance, token string) []string {
	tb.Helper()
	code, body := in.do(tb, http.MethodGet, "/api/v2/silences", token, nil)
	if code != http.StatusOK {
		tb.Fatalf("GET silences: %d %s", code, body)
	}
	var ss models.GettableSilences
	if err := json.Unmarshal(body, &ss); err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, s := range ss {
		out = append(out, *s.ID)
	}
	sort.Strings(out)
	return out
}

func TestTenancy(t *testing.T) {
	h := newHook(t)
	in := start(t, h, plainConfig, options{})
	// A bureau's alerts get its label, whatever it claims.
	in.post(t, tokenA, firing("alertname", "AOnly"), firing("alertname", "AClaimsB", "bureau", "b"))
	in.post(t, tokenB, firing("alertname", "BOnly"))

	t.Run("alerts", func(t *testing.T) {
		for _, c := range []struct {
			token string
			want  string
		}{
			{tokenA, "[a/AClaimsB a/AOnly]"},
			{tokenB, "[b/BOnly]"},
			{tokenData, "[a/AClaimsB a/AOnly b/BOnly]"},
		} {
			if got := alertsSeen(t, in, c.token, ""); strings.Join(got, " ") != strings.Trim(c.want, "[]") {
				t.Errorf("token %s sees %v, want %s", c.token[:15], got, c.want)
			}
		}
		// A bureau cannot widen its view with its own bureau filter.
		if got := alertsSeen(t, in, tokenA, `?filter=bureau="b"`); len(got) != 0 {
			t.Errorf("bureau a filtering on bureau b sees %v", got)
		}
	})

	// Bureau a silences alertname=BOnly: the silence gets bureau="a", so
	// b's alert stays active.
	silA := createSilence(t, in, tokenA, "alertname", "BOnly")
	silB := createSilence(t, in, tokenB, "alertname", "BOnly")
	silData := createSilence(t, in, tokenData, "alertname", "Nothing")

	t.Run("silence scoped to its bureau", func(t *testing.T) {
		code, body := in.do(t, http.MethodGet, "/api/v2/silence/"+silA, tokenA, nil)
		if code != http.StatusOK || !strings.Contains(string(body), `"name":"bureau","value":"a"`) {
			t.Errorf("bureau a's silence: %d %s", code, body)
		}
	})
	t.Run("silences listed", func(t *testing.T) {
		for _, c := range []struct {
			token string
			want  []string
		}{
			{tokenA, []string{silA}},
			{tokenB, []string{silB}},
			{tokenData, []string{silA, silB, silData}},
		} {
			want := append([]string(nil), c.want...)
			sort.Strings(want)
			if got := silencesSeen(t, in, c.token); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("token %s sees silences %v, want %v", c.token[:15], got, want)
			}
		}
	})
	t.Run("other bureau's silence hidden", func(t *testing.T) {
		if code, _ := in.do(t, http.MethodGet, "/api/v2/silence/"+silB, tokenA, nil); code != http.StatusNotFound {
			t.Errorf("a reads b's silence: %d", code)
		}
		if code, _ := in.do(t, http.MethodDelete, "/api/v2/silence/"+silB, tokenA, nil); code != http.StatusNotFound {
			t.Errorf("a expires b's silence: %d", code)
		}
		if code, _ := in.do(t, http.MethodDelete, "/api/v2/silence/"+silData, tokenA, nil); code != http.StatusNotFound {
			t.Errorf("a expires the data bureau's silence: %d", code)
		}
		// Updating b's silence by ID is refused too.
		now := time.Now().UTC()
		code, _ := in.do(t, http.MethodPost, "/api/v2/silences", tokenA, map[string]any{
			"id":       silB,
			"matchers": []map[string]any{{"name": "alertname", "value": "x", "isRegex": false}},
			"startsAt": now.Format(time.RFC3339), "endsAt": now.Add(time.Hour).Format(time.RFC3339),
			"createdBy": "a", "comment": "takeover",
		})
		if code != http.StatusNotFound {
			t.Errorf("a updates b's silence: %d", code)
		}
		code, body := in.do(t, http.MethodGet, "/api/v2/silence/"+silB, tokenData, nil)
		if code != http.StatusOK || !strings.Contains(string(body), `"state":"active"`) {
			t.Errorf("b's silence after a's attempts: %d %s", code, body)
		}
	})
	t.Run("silence mutes only its bureau", func(t *testing.T) {
		// a's silence does not silence b's BOnly; b's does.
		code, body := in.do(t, http.MethodGet, `/api/v2/alerts?filter=alertname="BOnly"`, tokenData, nil)
		if code != http.StatusOK || strings.Contains(string(body), silA) || !strings.Contains(string(body), silB) {
			t.Errorf("BOnly silenced by: %d %s (a's %s, b's %s)", code, body, silA, silB)
		}
	})
	t.Run("owner and data bureau expire", func(t *testing.T) {
		if code, body := in.do(t, http.MethodDelete, "/api/v2/silence/"+silA, tokenA, nil); code != http.StatusOK {
			t.Errorf("a expires its silence: %d %s", code, body)
		}
		if code, body := in.do(t, http.MethodDelete, "/api/v2/silence/"+silB, tokenData, nil); code != http.StatusOK {
			t.Errorf("data bureau expires b's silence: %d %s", code, body)
		}
	})
	t.Run("unauthenticated", func(t *testing.T) {
		if code, _ := in.do(t, http.MethodGet, "/api/v2/alerts", "", nil); code != http.StatusUnauthorized {
			t.Errorf("no token: %d", code)
		}
		if code, _ := in.do(t, http.MethodGet, "/api/v2/alerts", "not-a-token-at-all-xx", nil); code != http.StatusUnauthorized {
			t.Errorf("unknown token: %d", code)
		}
	})
}

// TestSilencesSurviveRestart stops an instance and starts another on the
// same data directory.
func TestSilencesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	h := newHook(t)
	first := start(t, h, plainConfig, options{dir: dir})
	id := createSilence(t, first, tokenA, "alertname", "Kept")
	first.stop()
	second := start(t, h, plainConfig, options{dir: dir})
	if got := silencesSeen(t, second, tokenA); len(got) != 1 || got[0] != id {
		t.Fatalf("silences after restart: %v, want [%s]", got, id)
	}
	// Still in force: a's alert is silenced.
	second.post(t, tokenA, firing("alertname", "Kept"))
	code, body := second.do(t, http.MethodGet, `/api/v2/alerts?filter=alertname="Kept"`, tokenA, nil)
	if code != http.StatusOK || !strings.Contains(string(body), id) {
		t.Errorf("alert not silenced after restart: %d %s", code, body)
	}
}

func TestMalformedPosts(t *testing.T) {
	in := start(t, newHook(t), plainConfig, options{})
	now := time.Now().UTC()
	cases := []struct {
		name, path, body, reason string
	}{
		{"not json", "/api/v2/alerts", `[{"labels":`, "parse body"},
		{"not a list", "/api/v2/alerts", `{"labels":{"a":"b"}}`, "cannot unmarshal object"},
		{"no labels", "/api/v2/alerts", `[{"annotations":{"x":"y"}}]`, "labels"},
		{"empty labels", "/api/v2/alerts", `[{"labels":{}}]`, "at least one label pair required"},
		{"ends before start", "/api/v2/alerts", `[{"labels":{"alertname":"x"},"startsAt":"` + now.Format(time.RFC3339) +
			`","endsAt":"` + now.Add(-time.Hour).Format(time.RFC3339) + `"}]`, "start time must be before end time"},
		{"bad label name", "/api/v2/alerts", `[{"labels":{"":"x"}}]`, "invalid label set"},
		{"bad time", "/api/v2/alerts", `[{"labels":{"a":"b"},"startsAt":"yesterday"}]`, "parse body"},
		{"silence without matchers", "/api/v2/silences", `{"startsAt":"` + now.Format(time.RFC3339) + `","endsAt":"` +
			now.Add(time.Hour).Format(time.RFC3339) + `","createdBy":"x","comment":"x"}`, "matchers"},
		{"silence ending in the past", "/api/v2/silences", `{"matchers":[{"name":"a","value":"b","isRegex":false}],"startsAt":"` +
			now.Add(-2*time.Hour).Format(time.RFC3339) + `","endsAt":"` + now.Add(-time.Hour).Format(time.RFC3339) +
			`","createdBy":"x","comment":"x"}`, "end time can't be in the past"},
	}
	for _, c := range cases {
		for _, token := range []string{tokenA, tokenData} {
			t.Run(c.name+"/"+token[:15], func(t *testing.T) {
				code, body := in.do(t, http.MethodPost, c.path, token, c.body)
				if code != http.StatusBadRequest || !strings.Contains(string(body), c.reason) {
					t.Errorf("got %d %s, want 400 with %q", code, body, c.reason)
				}
			})
		}
	}
	if got := alertsSeen(t, in, tokenData, ""); len(got) != 0 {
		t.Errorf("malformed posts stored alerts: %v", got)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name, config, field string
	}{
		{"unknown field", "route:\n  receiver: x\n  group_wiat: 1s\nreceivers: [{name: x}]\n", "group_wiat"},
		{"unknown receiver", "route:\n  receiver: nobody\nreceivers: [{name: x}]\n", `"nobody"`},
		{"flag not a bool", "route:\n  receiver: x\n  routes:\n  - receiver: x\n    send_resolved_immediately: soon\nreceivers: [{name: x}]\n",
			"route.routes[0].send_resolved_immediately"},
		{"extension not a list", "route:\n  receiver: x\nreceivers:\n- name: x\n  dingtalk_configs: {url: y}\n", "receivers[0].dingtalk_configs"},
		{"bad webhook", "route:\n  receiver: x\nreceivers:\n- name: x\n  webhook_configs: [{}]\n", "url"},
		{"bad matcher", "route:\n  receiver: x\n  routes:\n  - receiver: x\n    matchers: ['a=~\"(\"']\nreceivers: [{name: x}]\n", "missing closing )"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseDefinition([]byte(c.config))
			if err == nil || !strings.Contains(err.Error(), c.field) {
				t.Errorf("got %v, want an error naming %s", err, c.field)
			}
		})
	}

	t.Run("reload keeps the old config", func(t *testing.T) {
		h := newHook(t)
		in := start(t, h, plainConfig, options{})
		if err := os.WriteFile(in.cfg.ConfigFile, []byte("route:\n  receiver: gone\nreceivers: [{name: x}]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		err := in.a.Reload()
		if err == nil || !strings.Contains(err.Error(), "gone") {
			t.Fatalf("reload of an invalid config: %v", err)
		}
		in.post(t, tokenA, firing("alertname", "AfterBadReload"))
		waitFor(t, 10*time.Second, "old receiver still notified", func() bool { return len(h.messages("all")) == 1 })
		code, body := in.do(t, http.MethodGet, "/api/v2/status", tokenA, nil)
		if code != http.StatusOK || !strings.Contains(string(body), "receiver: all") {
			t.Errorf("status after failed reload: %d %s", code, body)
		}
	})
}

// TestStatusMasksSecrets checks that the status API shows the config with
// secrets masked.
func TestStatusMasksSecrets(t *testing.T) {
	cfg := plainConfig + "- name: secret\n  webhook_configs: [{url: \"http://user:hunter2@example.com/hook\"}]\n"
	in := start(t, newHook(t), cfg, options{})
	code, body := in.do(t, http.MethodGet, "/api/v2/status", tokenData, nil)
	var st models.AlertmanagerStatus
	if code != http.StatusOK || json.Unmarshal(body, &st) != nil || st.Config == nil || st.Config.Original == nil {
		t.Fatalf("status: %d %s", code, body)
	}
	if cfg := *st.Config.Original; strings.Contains(cfg, "hunter2") || !strings.Contains(cfg, "url: <secret>") {
		t.Errorf("status config:\n%s", cfg)
	}
}

// TestRuleAlerts checks the rules Notifier: conversion as Prometheus's
// SendAlerts, the tenant's bureau label, and delivery.
func TestRuleAlerts(t *testing.T) {
	h := newHook(t)
	in := start(t, h, plainConfig, options{})
	fired := time.Now().Add(-time.Minute)
	ra := &promrules.Alert{
		State:       promrules.StateFiring,
		Labels:      labels.FromStrings("alertname", "HighLoad", "bureau", "other", "instance", "i1"),
		Annotations: labels.FromStrings("summary", "load is high"),
		ActiveAt:    fired.Add(-time.Minute), FiredAt: fired, ValidUntil: time.Now().Add(4 * time.Minute),
	}
	in.a.Notify(context.Background(), "a", []*promrules.Alert{ra})
	waitFor(t, 10*time.Second, "rule alert notified", func() bool { return len(h.messages("all")) == 1 })
	got := h.messages("all")[0].Alerts[0]
	if got.Labels["bureau"] != "a" || got.Labels["exported_bureau"] != "other" || got.Annotations["summary"] != "load is high" ||
		!got.StartsAt.Equal(fired) || got.Status != "firing" || !strings.Contains(got.GeneratorURL, "ALERTS") {
		t.Errorf("notified alert: %+v", got)
	}
	if got := alertsSeen(t, in, tokenB, ""); len(got) != 0 {
		t.Errorf("bureau b sees a's rule alert: %v", got)
	}
	ra.State, ra.ResolvedAt = promrules.StateInactive, time.Now()
	in.a.NotifyExpr(context.Background(), "a", `up == 0`, []*promrules.Alert{ra})
	if got := alertsSeen(t, in, tokenA, ""); len(got) != 0 {
		t.Errorf("resolved rule alert still listed: %v", got)
	}
}

// TestBureauhubReceivers checks that a receiver's bureauhub kinds
// (alerting/receivers) are stripped from Alertmanager's config, built into
// the pipeline next to Alertmanager's own, and masked in the status.
func TestBureauhubReceivers(t *testing.T) {
	const cfg = `
route:
  receiver: im
  group_wait: 100ms
  group_interval: 1m
receivers:
- name: im
  webhook_configs: [{url: "{{HOOK}}/im-webhook"}]
  dingtalk_configs:
  - url: "{{HOOK}}/dingtalk?access_token=topsecret"
    secret: signsecret
`
	h := newHook(t)
	h.behave = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/dingtalk" {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"errcode":0,"errmsg":"ok"}`))
		return true
	}
	in := start(t, h, cfg, options{})
	in.post(t, tokenA, firing("alertname", "ToIM"))
	// The attempt is counted when the integration's Notify returns, just
	// after the receiving server has answered: wait for the count too.
	waitFor(t, 10*time.Second, "both integrations notified and the attempt counted", func() bool {
		return h.hitCount("dingtalk") >= 1 && len(h.messages("im-webhook")) >= 1 &&
			testutil.ToFloat64(in.a.m.attempts.WithLabelValues("im", "dingtalk[0]")) >= 1
	})
	if a, f := testutil.ToFloat64(in.a.m.attempts.WithLabelValues("im", "dingtalk[0]")), testutil.ToFloat64(in.a.m.failures.WithLabelValues("im", "dingtalk[0]")); a != 1 || f != 0 {
		t.Errorf("dingtalk attempts %v failures %v, want 1 and 0", a, f)
	}
	code, body := in.do(t, http.MethodGet, "/api/v2/status", tokenData, nil)
	var st models.AlertmanagerStatus
	if code != http.StatusOK || json.Unmarshal(body, &st) != nil || st.Config == nil || st.Config.Original == nil {
		t.Fatalf("status: %d %s", code, body)
	}
	if c := *st.Config.Original; strings.Contains(c, "topsecret") || strings.Contains(c, "signsecret") || !strings.Contains(c, "dingtalk_configs") {
		t.Errorf("status config:\n%s", c)
	}
	if _, err := ParseDefinition([]byte("route: {receiver: x}\nreceivers:\n- name: x\n  dingtalk_configs: [{}]\n")); err == nil ||
		!strings.Contains(err.Error(), "receivers[0].dingtalk_configs[0]") {
		t.Errorf("invalid dingtalk config: %v", err)
	}
}
