package autoscale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chtest"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func TestAuditTrailInClickHouse(t *testing.T) {
	db := chtest.NewDatabase(t)
	conn := chtest.Open(t, db)
	booking := &fakeActuator{desired: 2, ready: 2}
	scan := &fakeActuator{desired: 1, ready: 1}
	h := newHarness(t, Config{Targets: []TargetConfig{testTarget("booking", "visa", ModeOn), testTarget("scan", "health", ModeOn)}},
		Deps{Actuators: map[string]Actuator{"booking": booking, "scan": scan}, Conn: conn, Database: db,
			FiringAlerts: func(tenant string) []string {
				if tenant == "visa" {
					return []string{"BookingLatencyHigh"}
				}
				return nil
			}})
	ctx := context.Background()
	audit := h.a.Audit()
	for range 2 { // CREATE TABLE IF NOT EXISTS runs again at every start
		if err := audit.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// t0: both scale up (visa ahead of its forecast, health reactively).
	h.world.rate["visa"], h.world.rate["health"] = 8, 12
	h.world.latency["visa"] = 0.2
	h.world.forecast["visa/booking_rate"] = surge("visa", "booking_rate")
	h.a.Sync(ctx)
	// t0+1m: the outcome of t0's actions is due (warm-up 30 s + sync 15 s).
	h.clock.Advance(time.Minute)
	h.world.rate["visa"] = 30
	delete(h.world.forecast, "visa/booking_rate") // past the surge: the load needs the 6 it has
	booking.ready = 6
	h.a.Sync(ctx)
	// t0+2h: booking scales up again (reactively).
	h.clock.Advance(2 * time.Hour)
	h.world.rate["visa"] = 60
	h.a.Sync(ctx)
	audit.Flush(ctx)
	if got := int(testutil.ToFloat64(audit.written)); got == 0 {
		t.Fatal("no events written")
	}

	srv := httptest.NewServer(h.a.Handler(func(r *http.Request) (func(string) bool, error) {
		switch r.Header.Get("Authorization") {
		case "Bearer visa":
			return func(t string) bool { return t == "visa" }, nil
		case "Bearer data":
			return func(string) bool { return true }, nil
		}
		return nil, errors.New("bad token")
	}))
	defer srv.Close()
	get := func(token string, params url.Values) (int, []Event) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+ActionsPath+"?"+params.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var body struct {
			Data []Event `json:"data"`
		}
		if resp.StatusCode == 200 {
			if err := json.Unmarshal(b, &body); err != nil {
				t.Fatalf("decode %s: %v", b, err)
			}
		}
		return resp.StatusCode, body.Data
	}
	unix := func(tm time.Time) string { return fmt.Sprint(tm.Unix()) }
	all := url.Values{"start": {unix(t0.Add(-time.Minute))}, "end": {unix(t0.Add(3 * time.Hour))}}
	summary := func(es []Event) []string {
		var out []string
		for _, e := range es {
			out = append(out, fmt.Sprintf("%s/%s/%s/%s/%d", e.Time.Sub(t0), e.Tenant, e.Kind, e.Outcome, e.Replicas))
		}
		return out
	}

	t.Run("all tenants", func(t *testing.T) {
		code, es := get("data", all)
		want := []string{"0s/health/action/ok/3", "0s/visa/action/ok/6", "1m0s/health/outcome/slo_unknown/3",
			"1m0s/visa/outcome/slo_met/6", "2h1m0s/visa/action/ok/12"}
		if code != 200 || !slices.Equal(summary(es), want) {
			t.Fatalf("%d %v\nwant %v", code, summary(es), want)
		}
		a := es[1]
		if a.Target != "booking" || a.Mode != ModeOn || a.Term != TermForecast || a.Current != 2 || a.Recommended != 6 ||
			!slices.Equal(a.FiringAlerts, []string{"BookingLatencyHigh"}) || float64(a.ObservedRate) != 8 || a.ActionID == "" {
			t.Fatalf("action row %+v", a)
		}
		var ex Explanation
		if err := json.Unmarshal([]byte(a.Explanation), &ex); err != nil || ex.Term != TermForecast || ex.ReactiveFloor != 2 ||
			ex.Forecast == nil || float64(ex.Forecast.Peak) != 30 {
			t.Fatalf("explanation %s: %v", a.Explanation, err)
		}
		if o := es[3]; o.ActionID != a.ActionID || o.Ready != 6 || o.SLOMet != 1 {
			t.Fatalf("outcome row %+v does not follow action %s", o, a.ActionID)
		}
	})
	t.Run("tenant and target filters", func(t *testing.T) {
		p := url.Values{"tenant": {"visa"}, "target": {"booking"}, "start": all["start"], "end": all["end"]}
		if code, es := get("data", p); code != 200 || len(es) != 3 || es[0].Tenant != "visa" || es[2].Tenant != "visa" {
			t.Fatalf("%d %v", code, summary(es))
		}
		p.Set("target", "scan")
		if code, es := get("data", p); code != 200 || len(es) != 0 {
			t.Fatalf("visa's scan: %d %v", code, summary(es))
		}
	})
	t.Run("time filter", func(t *testing.T) {
		p := url.Values{"start": {t0.Add(90 * time.Minute).Format(time.RFC3339)}, "end": all["end"]}
		if code, es := get("data", p); code != 200 || !slices.Equal(summary(es), []string{"2h1m0s/visa/action/ok/12"}) {
			t.Fatalf("%d %v", code, summary(es))
		}
		p = url.Values{"start": all["start"], "end": {unix(t0.Add(30 * time.Second))}}
		if code, es := get("data", p); code != 200 || len(es) != 2 {
			t.Fatalf("%d %v", code, summary(es))
		}
	})
	t.Run("tenancy", func(t *testing.T) {
		if code, es := get("visa", all); code != 200 || len(es) != 3 || slices.ContainsFunc(es, func(e Event) bool { return e.Tenant != "visa" }) {
			t.Fatalf("visa sees %d %v", code, summary(es))
		}
		p := url.Values{"tenant": {"health"}, "start": all["start"], "end": all["end"]}
		if code, _ := get("visa", p); code != http.StatusForbidden {
			t.Fatalf("visa reading health: %d", code)
		}
	})
	t.Run("decisions", func(t *testing.T) {
		p := url.Values{"event": {"decision"}, "tenant": {"visa"}, "start": all["start"], "end": all["end"]}
		code, es := get("data", p)
		if code != 200 || len(es) != 3 || es[0].Kind != EventDecision || es[0].Explanation == "" {
			t.Fatalf("%d %v", code, summary(es))
		}
	})
	t.Run("bad parameters", func(t *testing.T) {
		if code, _ := get("data", url.Values{"start": {"yesterday"}}); code != http.StatusBadRequest {
			t.Fatalf("bad start: %d", code)
		}
	})
}
