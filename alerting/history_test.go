package alerting

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/bureauhub/bureauhub/alerting/history"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chtest"
)

func historyRows(tb testing.TB, in *instance, token string, q url.Values) (int, []history.Record) {
	tb.Helper()
	code, body := in.do(tb, http.MethodGet, "/api/v1/alerts/history?"+q.Encode(), token, nil)
	if code != http.StatusOK {
		return code, nil
	}
	var resp struct {
		Status string           `json:"status"`
		Data   []history.Record `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		tb.Fatalf("%s: %v", body, err)
	}
	return code, resp.Data
}

// TestHistory runs alerts through the pipeline with a real ClickHouse and
// reads the history API back.
func TestHistory(t *testing.T) {
	db := chtest.NewDatabase(t)
	conn := chtest.Open(t, db)
	h := newHook(t)
	in := start(t, h, plainConfig, options{conn: conn, database: db})
	begin := time.Now().Add(-time.Second)

	silB := createSilence(t, in, tokenB, "alertname", "BMuted")
	in.post(t, tokenA, firing("alertname", "AFire", "severity", "page"))
	in.post(t, tokenB, firing("alertname", "BMuted"))
	waitFor(t, 10*time.Second, "a's notification", func() bool { return len(h.messages("all")) == 1 })
	in.post(t, tokenA, resolved(firing("alertname", "AFire", "severity", "page")))

	events := func(rs []history.Record) []string {
		var out []string
		for _, r := range rs {
			e := fmt.Sprintf("%s:%s:%s", r.Tenant, r.Labels["alertname"], r.Event)
			if r.Event == history.EventNotification {
				e += fmt.Sprintf(":%s:%s:%v", r.Receiver, r.Integration, r.Success)
			}
			if !slices.Contains(out, e) {
				out = append(out, e)
			}
		}
		return out
	}
	var rows []history.Record
	waitFor(t, 20*time.Second, "a's history", func() bool {
		_, rows = historyRows(t, in, tokenA, url.Values{"start": {begin.Format(time.RFC3339Nano)}})
		ev := events(rows)
		return slices.Contains(ev, "a:AFire:resolved") && slices.Contains(ev, "a:AFire:notification:all:webhook[0]:true")
	})
	for _, r := range rows {
		if r.Tenant != "a" {
			t.Errorf("bureau a reads a row of %s", r.Tenant)
		}
	}
	if ev := events(rows); !slices.Contains(ev, "a:AFire:firing") {
		t.Errorf("a's events: %v", ev)
	}
	waitFor(t, 20*time.Second, "b's silenced event", func() bool {
		_, rows = historyRows(t, in, tokenData, url.Values{"tenant": {"b"}, "start": {begin.Format(time.RFC3339Nano)}})
		for _, r := range rows {
			if r.Event == history.EventSilenced && slices.Equal(r.SuppressedBy, []string{silB}) {
				return true
			}
		}
		return false
	})

	cases := []struct {
		name  string
		token string
		q     url.Values
		code  int
		want  func([]history.Record) bool
	}{
		{"bureau cannot read another tenant", tokenA, url.Values{"tenant": {"b"}}, http.StatusForbidden, nil},
		{"bureau b sees only b", tokenB, url.Values{"start": {begin.Format(time.RFC3339Nano)}}, http.StatusOK,
			func(rs []history.Record) bool {
				return len(rs) > 0 && !slices.ContainsFunc(rs, func(r history.Record) bool { return r.Tenant != "b" })
			}},
		{"data bureau sees all", tokenData, url.Values{"start": {begin.Format(time.RFC3339Nano)}}, http.StatusOK,
			func(rs []history.Record) bool {
				return slices.ContainsFunc(rs, func(r history.Record) bool { return r.Tenant == "a" }) &&
					slices.ContainsFunc(rs, func(r history.Record) bool { return r.Tenant == "b" })
			}},
		{"matchers", tokenData, url.Values{"match[]": {`{event_free="", severity="page"}`}, "start": {begin.Format(time.RFC3339Nano)}}, http.StatusOK,
			func(rs []history.Record) bool {
				return len(rs) > 0 && !slices.ContainsFunc(rs, func(r history.Record) bool { return r.Labels["alertname"] != "AFire" })
			}},
		{"time range before the alerts", tokenData, url.Values{"start": {fmt.Sprint(begin.Add(-time.Hour).Unix())}, "end": {fmt.Sprint(begin.Add(-time.Minute).Unix())}},
			http.StatusOK, func(rs []history.Record) bool { return len(rs) == 0 }},
		{"bad matcher", tokenData, url.Values{"match[]": {`{a=~"("}`}}, http.StatusBadRequest, nil},
		{"bad time", tokenData, url.Values{"start": {"yesterday"}}, http.StatusBadRequest, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, rs := historyRows(t, in, c.token, c.q)
			if code != c.code {
				t.Fatalf("status %d, want %d", code, c.code)
			}
			if c.want != nil && !c.want(rs) {
				t.Errorf("rows: %v", events(rs))
			}
		})
	}
}
