package plugin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/prometheus/prometheus/prompb"

	"github.com/bureauhub/bureauhub/e2e"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chtest"
	"github.com/bureauhub/bureauhub/plugin/internal/hubtest"
	"github.com/bureauhub/bureauhub/plugin/pkg/plugin"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// lbRate is the booking service's request rate as the hub's own load
// balancer metric gives it; the test pushes that counter's history as
// consular's agent scraping the hub would.
const lbRate = `sum(rate(bureauhub_refsvc_lb_requests_total{service="booking",outcome="proxied"}[1m]))`

// hubConfig hosts booking for consular, forecasts its request rate,
// autoscales it (1 req/s per replica, so 5 req/s asks for the max, 4),
// and alerts on plugin_test_alert > 5.
var hubConfig = hubtest.Options{
	Top: `services:
  data_dir: {dir}
  booking:
    hosting: {tenant: consular, listen_address: "127.0.0.1:{port:booking}", replicas: 1, max_replicas: 4, warm_up: 300ms, drain_timeout: 5s}
    config: {store: {no_sync: true}}
forecast:
  signals:
    - {name: booking_rate, tenant: consular, expr: '` + lbRate + `', period: 10m, step: 10s, horizon: 2m, history: 40m, interval: 2s}
autoscale:
  targets:
    - name: booking
      tenant: consular
      service: booking
      signal: booking_rate
      rate_expr: '` + lbRate + `'
      mode: "on"
      min: 1
      max: 4
      warm_up: 1s
      sync_interval: 1s
      capacity: {default_per_replica: 1, learn: false}
rules: {evaluation_interval: 1s, files: ["{dir}/plugin.rules.yml"], for_grace_period: 1s, outage_tolerance: 1h}
alerting: {config_file: "{dir}/policy.yml", data_dir: "{dir}/alerting", status_interval: 1s}
`,
	Files: map[string]string{
		"plugin.rules.yml": `groups:
  - name: plugin
    interval: 1s
    rules:
      - alert: PluginTestHigh
        expr: plugin_test_alert > 5
        labels: {severity: warning}
        annotations: {summary: "plugin test value {{ $value }}"}
`,
		"policy.yml": `route: {receiver: blackhole, group_by: [alertname], group_wait: 1s, group_interval: 1s, repeat_interval: 1h}
receivers: [{name: blackhole}]
`,
	},
}

// lbCounter is 5 req/s with a small 10-minute wave.
func lbCounter(t time.Time) float64 {
	s := float64(t.UnixMilli()) / 1000
	return 5*s + 30*math.Sin(2*math.Pi*s/600)
}

func newDS(t *testing.T, url, token string) *plugin.Datasource {
	t.Helper()
	js, _ := json.Marshal(map[string]string{"url": url})
	inst, err := plugin.NewDatasource(context.Background(), backend.DataSourceInstanceSettings{
		JSONData: js, DecryptedSecureJSONData: map[string]string{"token": token},
	})
	if err != nil {
		t.Fatal(err)
	}
	return inst.(*plugin.Datasource)
}

func run(t *testing.T, ds *plugin.Datasource, queryType string, q plugin.Query, from, to time.Time) backend.DataResponse {
	t.Helper()
	js, _ := json.Marshal(q)
	resp, err := ds.QueryData(context.Background(), &backend.QueryDataRequest{Queries: []backend.DataQuery{{
		RefID: "A", QueryType: queryType, JSON: js, Interval: 15 * time.Second, MaxDataPoints: 1000,
		TimeRange: backend.TimeRange{From: from, To: to},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Responses["A"]
}

func mustOK(t *testing.T, r backend.DataResponse) data.Frames {
	t.Helper()
	if r.Error != nil {
		t.Fatalf("query failed: %v", r.Error)
	}
	return r.Frames
}

// labelsOf lists each frame's value labels' bureau.
func bureausOf(fs data.Frames) []string {
	var out []string
	for _, f := range fs {
		if len(f.Fields) == 2 && f.Fields[1].Len() > 0 {
			out = append(out, f.Fields[1].Labels["bureau"])
		}
	}
	return out
}

func column(t *testing.T, f *data.Frame, name string) []any {
	t.Helper()
	fld, _ := f.FieldByName(name)
	if fld == nil {
		t.Fatalf("frame %q has no field %q", f.Name, name)
	}
	out := make([]any, fld.Len())
	for i := range out {
		out[i], _ = fld.ConcreteAt(i)
	}
	return out
}

// TestAgainstHub runs the data source against a real hub on real
// ClickHouse with data of two bureaus: PromQL with tenancy and bureau
// restriction, capacity, alert history, autoscale actions, annotations,
// the health check's verdicts and the editor's resources.
func TestAgainstHub(t *testing.T) {
	h := hubtest.Start(t, hubConfig)
	now := time.Now().Truncate(time.Second)
	from := now.Add(-10 * time.Minute)
	for i, b := range []string{"consular", "health"} {
		v := float64(i + 1)
		h.Push(t, b,
			hubtest.Every(hubtest.Series("up", "job", "app", "instance", b+"-vm-1"), from, now, 15*time.Second, func(time.Time) float64 { return 1 }),
			hubtest.Every(hubtest.Series("plugin_test_metric", "job", "app"), from, now, 15*time.Second, func(time.Time) float64 { return v }),
		)
	}
	// 45 minutes of booking's request counter, then kept up to date.
	lb := hubtest.Series("bureauhub_refsvc_lb_requests_total", "job", "hub", "service", "booking", "outcome", "proxied")
	h.Push(t, "consular", hubtest.Every(lb, now.Add(-45*time.Minute), now, 10*time.Second, lbCounter))
	h.Keep(t, "consular", 2*time.Second, func(now time.Time) []prompb.TimeSeries {
		return []prompb.TimeSeries{hubtest.Every(lb, now, now, time.Second, lbCounter)}
	})
	h.ForwardSelfMetrics(t, "consular", time.Second, "bureauhub_autoscale_recommended_replicas", "bureauhub_refsvc_desired_replicas")
	// The alert fires on 10 and resolves on 0.
	h.Push(t, "consular", hubtest.Every(hubtest.Series("plugin_test_alert", "job", "app"), now, now, time.Second, func(time.Time) float64 { return 10 }))

	cross := newDS(t, h.URL, hubtest.Token(hubtest.CrossBureau))
	consular := newDS(t, h.URL, hubtest.Token("consular"))
	health := newDS(t, h.URL, hubtest.Token("health"))

	t.Run("PromQL", func(t *testing.T) {
		cases := []struct {
			name    string
			ds      *plugin.Datasource
			q       plugin.Query
			bureaus []string
			value   float64
		}{
			{"cross-bureau token sees both", cross, plugin.Query{Expr: "plugin_test_metric"}, []string{"consular", "health"}, 0},
			{"restricted to one bureau", cross, plugin.Query{Expr: "plugin_test_metric", Bureaus: []string{"health"}}, []string{"health"}, 2},
			{"restricted to both", cross, plugin.Query{Expr: "sum by (bureau) (plugin_test_metric)", Bureaus: []string{"health", "consular"}}, []string{"consular", "health"}, 0},
			{"bureau token sees its own", consular, plugin.Query{Expr: "plugin_test_metric"}, []string{"consular"}, 1},
			{"bureau token cannot widen to another", consular, plugin.Query{Expr: "plugin_test_metric", Bureaus: []string{"health"}}, nil, 0},
			{"interval variables", health, plugin.Query{Expr: "max_over_time(plugin_test_metric[$__rate_interval])"}, []string{"health"}, 2},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				fs := mustOK(t, run(t, c.ds, plugin.QueryTypePromQL, c.q, from, now))
				if got := bureausOf(fs); strings.Join(got, ",") != strings.Join(c.bureaus, ",") {
					t.Fatalf("series of bureaus %v, want %v", got, c.bureaus)
				}
				if c.value != 0 {
					f := fs[0].Fields[1]
					if v, _ := f.ConcreteAt(f.Len() - 1); v != c.value {
						t.Fatalf("last value %v, want %v", v, c.value)
					}
					if f.Len() < 30 {
						t.Fatalf("%d points over 10 minutes at 15 s, want ~40", f.Len())
					}
				}
			})
		}
		t.Run("instant with legend", func(t *testing.T) {
			fs := mustOK(t, run(t, cross, plugin.QueryTypePromQL, plugin.Query{Expr: "plugin_test_metric", Instant: true, LegendFormat: "{{bureau}}"}, from, now))
			if len(fs) != 2 || fs[0].Name != "consular" || fs[1].Name != "health" || fs[0].Fields[1].Len() != 1 {
				t.Fatalf("frames %v", fs)
			}
		})
		t.Run("bad PromQL is the user's error", func(t *testing.T) {
			r := run(t, cross, plugin.QueryTypePromQL, plugin.Query{Expr: "sum(", Bureaus: []string{"health"}}, from, now)
			if r.Error == nil || r.Status != backend.StatusBadRequest {
				t.Fatalf("error %v status %v, want a 400", r.Error, r.Status)
			}
			r = run(t, cross, plugin.QueryTypePromQL, plugin.Query{Expr: "sum("}, from, now)
			if r.Error == nil || !strings.Contains(r.Error.Error(), "400") {
				t.Fatalf("unrestricted bad query: error %v, want the hub's 400", r.Error)
			}
		})
	})

	t.Run("Health", func(t *testing.T) {
		port, err := e2e.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		dead := fmt.Sprintf("http://127.0.0.1:%d", port)
		cases := []struct {
			name   string
			ds     *plugin.Datasource
			status backend.HealthStatus
			want   string
		}{
			{"cross-bureau token", cross, backend.HealthStatusOk, "the token sees bureaus consular, health."},
			{"bureau token", health, backend.HealthStatusOk, "the token sees bureau health."},
			{"bureau without data", newDS(t, h.URL, hubtest.Token("transport")), backend.HealthStatusError, "sees no data"},
			{"bad token", newDS(t, h.URL, "not-a-token"), backend.HealthStatusError, "refused the token (401 Unauthorized)"},
			{"hub unreachable", newDS(t, dead, hubtest.Token("health")), backend.HealthStatusError, "Hub unreachable at " + dead},
			{"no token", newDS(t, h.URL, ""), backend.HealthStatusError, "secureJsonData.token"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r, err := c.ds.CheckHealth(context.Background(), &backend.CheckHealthRequest{})
				if err != nil {
					t.Fatal(err)
				}
				if r.Status != c.status || !strings.Contains(r.Message, c.want) {
					t.Fatalf("%v %q, want %v containing %q", r.Status, r.Message, c.status, c.want)
				}
				if strings.Contains(r.Message, "token-0123456789abcdef") || strings.Contains(r.Message, "not-a-token") {
					t.Fatalf("the message shows the token: %q", r.Message)
				}
			})
		}
	})

	t.Run("Resources", func(t *testing.T) {
		get := func(ds *plugin.Datasource, path string) (int, string) {
			var resp *backend.CallResourceResponse
			err := ds.CallResource(context.Background(), &backend.CallResourceRequest{Path: path, Method: "GET"},
				backend.CallResourceResponseSenderFunc(func(r *backend.CallResourceResponse) error { resp = r; return nil }))
			if err != nil {
				t.Fatal(err)
			}
			return resp.Status, string(resp.Body)
		}
		for _, c := range []struct {
			ds         *plugin.Datasource
			path, want string
		}{
			{cross, "bureaus", `["consular","health"]`},
			{health, "bureaus", `["health"]`},
			{consular, "services", `[{"name":"booking","tenant":"consular","target":"booking","signal":"booking_rate"}]`},
			{health, "services", `[]`},
		} {
			if code, body := get(c.ds, c.path); code != 200 || body != c.want {
				t.Errorf("%s: %d %s, want %s", c.path, code, body, c.want)
			}
		}
	})

	t.Run("Capacity", func(t *testing.T) {
		var fs data.Frames
		hubtest.WaitFor(t, 90*time.Second, func() (bool, string) {
			fs = mustOK(t, run(t, consular, plugin.QueryTypeCapacity, plugin.Query{Service: "booking"}, now.Add(-30*time.Minute), time.Now().Add(5*time.Minute)))
			lens := map[string]int{}
			last := map[string]float64{}
			for _, f := range fs {
				lens[f.Name] = f.Rows()
				if n := f.Rows(); n > 0 {
					v, _ := f.Fields[1].ConcreteAt(n - 1)
					last[f.Name], _ = v.(float64)
				}
			}
			ok := lens[plugin.CapacityActual] > 100 && lens[plugin.CapacityForecast] > 0 &&
				last[plugin.CapacityRecommended] == 4 && last[plugin.CapacityReplicas] == 4
			return ok, fmt.Sprintf("rows %v, last values %v", lens, last)
		})
		for _, f := range fs {
			switch f.Name {
			case plugin.CapacityActual:
				// Points inside the pushed history (the range runs into
				// the future, where rate() extrapolates from a partial
				// window).
				for i := range f.Rows() {
					tm, v := f.Fields[0].At(i).(time.Time), f.Fields[1].At(i).(float64)
					if tm.After(now.Add(-20*time.Minute)) && tm.Before(now) && (v < 4 || v > 6) {
						t.Errorf("request rate %v at %v, want ~5", v, tm)
						break
					}
				}
			case plugin.CapacityForecast:
				if len(f.Fields) != 4 {
					t.Errorf("forecast fields %d, want time, forecast, lower, upper", len(f.Fields))
				}
				tm := f.Fields[0].At(0).(time.Time)
				if tm.Before(now.Add(-time.Minute)) {
					t.Errorf("forecast starts at %v, before the data's end %v", tm, now)
				}
			}
		}
		// Tenancy: health sees none of consular's capacity data.
		fs = mustOK(t, run(t, health, plugin.QueryTypeCapacity, plugin.Query{Service: "booking"}, now.Add(-30*time.Minute), time.Now().Add(5*time.Minute)))
		for _, f := range fs {
			if f.Rows() != 0 {
				t.Errorf("health sees %d rows of consular's %s", f.Rows(), f.Name)
			}
		}
	})

	t.Run("AutoscaleActions", func(t *testing.T) {
		var fs data.Frames
		hubtest.WaitFor(t, 60*time.Second, func() (bool, string) {
			fs = mustOK(t, run(t, consular, plugin.QueryTypeAutoscaleActions, plugin.Query{Service: "booking"}, now.Add(-time.Hour), time.Now().Add(time.Minute)))
			ev := column(t, fs[0], "event")
			return fmt.Sprint(ev) != "[]" && strings.Contains(fmt.Sprint(ev), "outcome"), fmt.Sprintf("events %v", ev)
		})
		f := fs[0]
		var found bool
		for i, ev := range column(t, f, "event") {
			if ev != "action" {
				continue
			}
			found = true
			expl := column(t, f, "explanation")[i].(string)
			if column(t, f, "replicas")[i] != int64(4) || column(t, f, "outcome")[i] != "ok" || !strings.Contains(expl, "decided 4 replicas") || !strings.Contains(expl, "observed") {
				t.Errorf("action row: replicas %v outcome %v explanation %q", column(t, f, "replicas")[i], column(t, f, "outcome")[i], expl)
			}
		}
		if !found {
			t.Fatalf("no action in %v", column(t, f, "event"))
		}
		// All events, decisions included, for the data bureau.
		fs = mustOK(t, run(t, cross, plugin.QueryTypeAutoscaleActions, plugin.Query{Events: "all", Bureaus: []string{"consular"}}, now.Add(-time.Hour), time.Now().Add(time.Minute)))
		if !strings.Contains(fmt.Sprint(column(t, fs[0], "event")), "decision") {
			t.Errorf("events=all has no decision: %v", column(t, fs[0], "event"))
		}
		fs = mustOK(t, run(t, health, plugin.QueryTypeAutoscaleActions, plugin.Query{}, now.Add(-time.Hour), time.Now().Add(time.Minute)))
		if fs[0].Rows() != 0 {
			t.Errorf("health sees %d of consular's autoscale events", fs[0].Rows())
		}
		fs = mustOK(t, run(t, consular, plugin.QueryTypeAutoscaleAnnotations, plugin.Query{Target: "booking"}, now.Add(-time.Hour), time.Now().Add(time.Minute)))
		a := fs[0]
		if a.Rows() == 0 || column(t, a, "title")[0] != "booking: 1 → 4 replicas (ok)" {
			t.Fatalf("annotations %v", column(t, a, "title"))
		}
		if !column(t, a, "timeEnd")[0].(time.Time).After(column(t, a, "time")[0].(time.Time)) {
			t.Errorf("the action's annotation does not span to its outcome")
		}
		if tags := column(t, a, "tags")[0].(string); !strings.HasPrefix(tags, "consular,booking,autoscale") {
			t.Errorf("tags %q", tags)
		}
	})

	t.Run("AlertHistory", func(t *testing.T) {
		rng := func() (time.Time, time.Time) { return now.Add(-time.Hour), time.Now().Add(time.Minute) }
		events := func(ds *plugin.Datasource, q plugin.Query) (data.Frames, string) {
			f, to := rng()
			fs := mustOK(t, run(t, ds, plugin.QueryTypeAlertHistory, q, f, to))
			return fs, fmt.Sprint(column(t, fs[0], "event"))
		}
		hubtest.WaitFor(t, 60*time.Second, func() (bool, string) {
			_, ev := events(consular, plugin.Query{})
			return strings.Contains(ev, "firing"), "events " + ev
		})
		h.Push(t, "consular", hubtest.Every(hubtest.Series("plugin_test_alert", "job", "app"), time.Now(), time.Now(), time.Second, func(time.Time) float64 { return 0 }))
		var fs data.Frames
		hubtest.WaitFor(t, 60*time.Second, func() (bool, string) {
			var ev string
			fs, ev = events(consular, plugin.Query{Matchers: []string{`{alertname="PluginTestHigh"}`}})
			return strings.Contains(ev, "resolved"), "events " + ev
		})
		f := fs[0]
		if names := fmt.Sprint(column(t, f, "alertname")); !strings.Contains(names, "PluginTestHigh") || strings.Contains(names, "Bureau") {
			t.Errorf("alertnames %v", names)
		}
		if s := fmt.Sprint(column(t, f, "summary")); !strings.Contains(s, "plugin test value 10") {
			t.Errorf("summaries %v", s)
		}
		if b := fmt.Sprint(column(t, f, "bureau")); strings.Contains(b, "health") {
			t.Errorf("consular sees bureaus %v", b)
		}
		if fs, ev := events(health, plugin.Query{}); fs[0].Rows() != 0 {
			t.Errorf("health sees consular's alert history: %v", ev)
		}
		if _, ev := events(cross, plugin.Query{Bureaus: []string{"consular", "health"}}); !strings.Contains(ev, "resolved") {
			t.Errorf("data bureau restricted to two bureaus: %v", ev)
		}
		if _, ev := events(cross, plugin.Query{Matchers: []string{`{alertname="Other"}`}}); ev != "[]" {
			t.Errorf("matcher for another alert: %v", ev)
		}

		f0, f1 := rng()
		a := mustOK(t, run(t, consular, plugin.QueryTypeAlertAnnotations, plugin.Query{}, f0, f1))[0]
		titles := column(t, a, "title")
		if len(titles) != 1 || titles[0] != "PluginTestHigh resolved (consular)" {
			t.Fatalf("annotation titles %v", titles)
		}
		if !column(t, a, "timeEnd")[0].(time.Time).After(column(t, a, "time")[0].(time.Time)) {
			t.Errorf("episode annotation is not a region: %v .. %v", column(t, a, "time")[0], column(t, a, "timeEnd")[0])
		}
		if text := column(t, a, "text")[0].(string); !strings.Contains(text, "firing") || !strings.Contains(text, "resolved") {
			t.Errorf("annotation text %q", text)
		}
	})
}
