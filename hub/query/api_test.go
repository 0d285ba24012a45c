package query

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
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/bureauhub/bureauhub/hub/auth"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chtest"
)

func TestMain(m *testing.M) { chtest.Main(m) }

const (
	consularToken = "consular-token-0123456789"
	healthToken   = "health-token-0123456789ab"
	dataToken     = "databureau-token-01234567"
)

// testHub stores a small fixed data set for two tenants and serves the API.
type testHub struct {
	srv   *httptest.Server
	store *clickhouse.Store
	scfg  clickhouse.Config
	authn *auth.Authenticator
	end   time.Time
}

func newTestHub(t *testing.T, cfg Config) *testHub {
	t.Helper()
	db := chtest.NewDatabase(t)
	scfg := clickhouse.Config{Addr: []string{chtest.Server(t).Addr()}, Database: db}
	scfg.SetDefaults()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := clickhouse.Open(scfg, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ctx := context.Background()
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	end := time.Now().Truncate(time.Minute)
	var b clickhouse.Block
	add := func(tenant string, ls labels.Labels, value func(i int) float64) {
		fp := clickhouse.Fingerprint(ls)
		var names, values []string
		ls.Range(func(l labels.Label) {
			if l.Name != labels.MetricName {
				names, values = append(names, l.Name), append(values, l.Value)
			}
		})
		start := end.Add(-time.Hour)
		for d := start.Truncate(24 * time.Hour); !d.After(end); d = d.Add(24 * time.Hour) {
			b.Series = append(b.Series, clickhouse.SeriesRow{Tenant: tenant, Date: d, Fingerprint: fp,
				MetricName: ls.Get(labels.MetricName), LabelNames: names, LabelValues: values})
		}
		for i := 0; i <= 240; i++ { // one hour at 15 s
			b.Tenants = append(b.Tenants, tenant)
			b.Fingerprints = append(b.Fingerprints, fp)
			b.Timestamps = append(b.Timestamps, start.Add(time.Duration(i)*15*time.Second).UnixMilli())
			b.Values = append(b.Values, value(i))
		}
	}
	for _, inst := range []string{"vm-1", "vm-2"} {
		add("consular", labels.FromStrings("__name__", "http_requests_total", "bureau", "consular", "job", "booking", "instance", inst),
			func(i int) float64 { return float64(i * 15) }) // 1 req/s
		add("consular", labels.FromStrings("__name__", "up", "bureau", "consular", "job", "booking", "instance", inst),
			func(int) float64 { return 1 })
	}
	add("health", labels.FromStrings("__name__", "http_requests_total", "bureau", "health", "job", "healthcode", "instance", "vm-9"),
		func(i int) float64 { return float64(i * 30) }) // 2 req/s
	add("health", labels.FromStrings("__name__", "secret_metric", "bureau", "health", "job", "healthcode", "instance", "vm-9"),
		func(int) float64 { return 42 })
	if err := store.WriteBlock(ctx, &b); err != nil {
		t.Fatal(err)
	}
	authn, err := auth.New([]auth.TenantConfig{
		{Name: "consular", Token: consularToken},
		{Name: "health", Token: healthToken},
		{Name: "databureau", Token: dataToken, Role: auth.RoleCrossBureau},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	api := New(cfg, store, authn, nil, logger, prometheus.NewRegistry())
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return &testHub{srv: srv, store: store, scfg: scfg, authn: authn, end: end}
}

type apiResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

// do sends a request as Grafana's Prometheus data source does.
func (h *testHub) do(t *testing.T, token, method, path string, params url.Values) (int, apiResponse) {
	t.Helper()
	var req *http.Request
	if method == http.MethodPost {
		req, _ = http.NewRequest(method, h.srv.URL+path, strings.NewReader(params.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req, _ = http.NewRequest(method, h.srv.URL+path+"?"+params.Encode(), nil)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r apiResponse
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("%s %s: not JSON (%d): %s", method, path, resp.StatusCode, body)
	}
	return resp.StatusCode, r
}

func ts(t time.Time) string { return fmt.Sprint(t.Unix()) }

type matrixResult struct {
	ResultType string `json:"resultType"`
	Result     []struct {
		Metric map[string]string `json:"metric"`
		Values [][2]any          `json:"values"`
		Value  [2]any            `json:"value"`
	} `json:"result"`
}

// TestGrafanaRequests issues the requests Grafana's built-in Prometheus
// data source sends: the "Save & test" check, a time series panel (POST
// query_range), the label browser and a variable query.
func TestGrafanaRequests(t *testing.T) {
	h := newTestHub(t, Config{})
	start, end := h.end.Add(-30*time.Minute), h.end

	t.Run("save and test", func(t *testing.T) {
		code, r := h.do(t, consularToken, http.MethodGet, "/api/v1/query", url.Values{"query": {"1+1"}, "time": {ts(end)}})
		if code != 200 || r.Status != "success" || !strings.Contains(string(r.Data), `"resultType":"scalar"`) || !strings.Contains(string(r.Data), `"2"`) {
			t.Errorf("got %d %s %s", code, r.Status, r.Data)
		}
		code, r = h.do(t, consularToken, http.MethodGet, "/api/v1/status/buildinfo", nil)
		if code != 200 || !strings.Contains(string(r.Data), `"version":"3.`) {
			t.Errorf("buildinfo: %d %s", code, r.Data)
		}
	})
	t.Run("time series panel", func(t *testing.T) {
		for _, method := range []string{http.MethodPost, http.MethodGet} {
			code, r := h.do(t, consularToken, method, "/api/v1/query_range", url.Values{
				"query": {`sum by (job) (rate(http_requests_total[1m]))`}, "start": {ts(start)}, "end": {ts(end)}, "step": {"60"},
			})
			if code != 200 {
				t.Fatalf("%s: %d %s %s", method, code, r.ErrorType, r.Error)
			}
			var m matrixResult
			if err := json.Unmarshal(r.Data, &m); err != nil {
				t.Fatal(err)
			}
			if m.ResultType != "matrix" || len(m.Result) != 1 || m.Result[0].Metric["job"] != "booking" || len(m.Result[0].Values) != 31 {
				t.Fatalf("%s: unexpected result %s", method, r.Data)
			}
			for _, v := range m.Result[0].Values {
				if f, _ := strconv.ParseFloat(v[1].(string), 64); math.Abs(f-2) > 1e-9 { // two instances at 1 req/s each
					t.Fatalf("%s: rate sum %v, want 2", method, v[1])
				}
			}
		}
	})
	t.Run("label browser", func(t *testing.T) {
		_, r := h.do(t, consularToken, http.MethodGet, "/api/v1/labels", url.Values{"start": {ts(start)}, "end": {ts(end)}})
		if got := string(r.Data); got != `["__name__","bureau","instance","job"]` {
			t.Errorf("labels %s", got)
		}
		_, r = h.do(t, consularToken, http.MethodGet, "/api/v1/label/__name__/values", url.Values{"start": {ts(start)}, "end": {ts(end)}})
		if got := string(r.Data); got != `["http_requests_total","up"]` {
			t.Errorf("metric names %s", got)
		}
		_, r = h.do(t, consularToken, http.MethodGet, "/api/v1/series", url.Values{"match[]": {`{__name__="up",job="booking"}`}, "start": {ts(start)}, "end": {ts(end)}})
		var series []map[string]string
		if err := json.Unmarshal(r.Data, &series); err != nil || len(series) != 2 || series[0]["instance"] != "vm-1" {
			t.Errorf("series %s (%v)", r.Data, err)
		}
		_, r = h.do(t, consularToken, http.MethodGet, "/api/v1/metadata", nil)
		if string(r.Data) != "{}" {
			t.Errorf("metadata %s", r.Data)
		}
	})
	t.Run("variable query label_values(up, instance)", func(t *testing.T) {
		_, r := h.do(t, consularToken, http.MethodGet, "/api/v1/label/instance/values", url.Values{"match[]": {"up"}, "start": {ts(start)}, "end": {ts(end)}})
		if got := string(r.Data); got != `["vm-1","vm-2"]` {
			t.Errorf("values %s", got)
		}
	})
}

// TestTenantIsolation checks every endpoint: a bureau never sees another's
// series or label values; the data bureau sees all and filters by bureau.
func TestTenantIsolation(t *testing.T) {
	h := newTestHub(t, Config{})
	start, end := ts(h.end.Add(-30*time.Minute)), ts(h.end)
	for _, tc := range []struct {
		name, token, path string
		params            url.Values
		mustNot, must     []string
	}{
		{"query", consularToken, "/api/v1/query", url.Values{"query": {`{__name__=~".+"}`}, "time": {end}}, []string{"health", "secret_metric"}, []string{"consular"}},
		{"query_range", consularToken, "/api/v1/query_range", url.Values{"query": {`count by (bureau) ({__name__=~".+"})`}, "start": {start}, "end": {end}, "step": {"60"}}, []string{"health"}, []string{"consular"}},
		{"series", consularToken, "/api/v1/series", url.Values{"match[]": {`{bureau="health"}`}, "start": {start}, "end": {end}}, []string{"health", "secret"}, nil},
		{"labels", consularToken, "/api/v1/labels", url.Values{"match[]": {`secret_metric`}}, []string{"bureau"}, nil},
		{"label values", consularToken, "/api/v1/label/bureau/values", nil, []string{"health"}, []string{"consular"}},
		{"metric names", consularToken, "/api/v1/label/__name__/values", nil, []string{"secret_metric"}, []string{"up"}},
		{"health sees only health", healthToken, "/api/v1/label/bureau/values", nil, []string{"consular"}, []string{"health"}},
		{"data bureau sees all", dataToken, "/api/v1/label/bureau/values", nil, nil, []string{"consular", "health"}},
		{"data bureau filters by bureau", dataToken, "/api/v1/query", url.Values{"query": {`round(sum(rate(http_requests_total{bureau="health"}[1m])))`}, "time": {end}}, nil, []string{`"2"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, r := h.do(t, tc.token, http.MethodGet, tc.path, tc.params)
			if code != 200 {
				t.Fatalf("%d %s %s", code, r.ErrorType, r.Error)
			}
			for _, s := range tc.mustNot {
				if strings.Contains(string(r.Data), s) {
					t.Errorf("leaked %q: %s", s, r.Data)
				}
			}
			for _, s := range tc.must {
				if !strings.Contains(string(r.Data), s) {
					t.Errorf("missing %q: %s", s, r.Data)
				}
			}
		})
	}
}

func TestErrorsAndLimits(t *testing.T) {
	h := newTestHub(t, Config{TenantLimits: map[string]Limits{
		"consular":   {MaxSeries: 1},
		"health":     {MaxSamples: 10},
		"databureau": {Timeout: time.Nanosecond},
	}})
	end := ts(h.end)
	for _, tc := range []struct {
		name, token, path string
		params            url.Values
		code              int
		errType, errText  string
	}{
		{"no token", "", "/api/v1/query", url.Values{"query": {"up"}}, 401, "unauthorized", "token"},
		{"wrong token", "nope-nope-nope-nope-nope", "/api/v1/labels", nil, 401, "unauthorized", "token"},
		{"bad query", healthToken, "/api/v1/query", url.Values{"query": {"sum("}}, 400, "bad_data", "parse error"},
		{"bad time", healthToken, "/api/v1/query", url.Values{"query": {"up"}, "time": {"yesterday"}}, 400, "bad_data", "time"},
		{"max series", consularToken, "/api/v1/query", url.Values{"query": {"up"}, "time": {end}}, 422, "execution", "series"},
		{"max samples", healthToken, "/api/v1/query", url.Values{"query": {"http_requests_total[1h]"}, "time": {end}}, 422, "execution", "samples"},
		{"timeout", dataToken, "/api/v1/query", url.Values{"query": {"up"}, "time": {end}}, 503, "timeout", "timed out"},
		{"admin endpoint not served", dataToken, "/api/v1/admin/tsdb/snapshot", nil, 404, "not_found", "not served"},
		{"remote read not served", dataToken, "/api/v1/read", nil, 404, "not_found", "not served"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, r := h.do(t, tc.token, http.MethodGet, tc.path, tc.params)
			if code != tc.code || r.Status != "error" || r.ErrorType != tc.errType || !strings.Contains(r.Error, tc.errText) {
				t.Errorf("got %d %q %q %q; want %d %q containing %q", code, r.Status, r.ErrorType, r.Error, tc.code, tc.errType, tc.errText)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{TenantLimits: map[string]Limits{"x": {MaxSeries: -1}}}
	c.SetDefaults()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "query.tenant_limits.x") {
		t.Errorf("Validate() = %v", err)
	}
	l := c.LimitsFor("x")
	if l.Timeout != 2*time.Minute {
		t.Errorf("defaults not filled: %+v", l)
	}
	for _, c := range []struct {
		cfg   Config
		field string
	}{
		{Config{RangeParallelism: -1}, "query.range_parallelism"},
		{Config{RangeMinSteps: -2}, "query.range_min_steps"},
	} {
		c.cfg.SetDefaults()
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("Validate() = %v, want an error naming %s", err, c.field)
		}
	}
	var d Config
	d.SetDefaults()
	if d.RangeParallelism < 1 || d.RangeMinSteps < 2 {
		t.Errorf("defaults: range_parallelism %d, range_min_steps %d", d.RangeParallelism, d.RangeMinSteps)
	}
}

// TestSplitRangeQueries: range queries split three ways over ClickHouse
// answer exactly as whole ones, for every tenant's scope.
func TestSplitRangeQueries(t *testing.T) {
	whole := newTestHub(t, Config{RangeParallelism: 1})
	reg := prometheus.NewRegistry()
	cfg := Config{RangeParallelism: 3, RangeMinSteps: 2}
	cfg.SetDefaults()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewServer(New(cfg, whole.store, whole.authn, nil, logger, reg).Handler())
	t.Cleanup(srv.Close)
	split := &testHub{srv: srv, store: whole.store, authn: whole.authn, end: whole.end}

	params := func(q string) url.Values {
		return url.Values{"query": {q}, "start": {strconv.FormatInt(whole.end.Add(-time.Hour).Unix(), 10)},
			"end": {strconv.FormatInt(whole.end.Unix(), 10)}, "step": {"15"}}
	}
	queries := []string{
		`http_requests_total`,
		`sum by (bureau, instance) (rate(http_requests_total[5m]))`,
		`up`,
		`absent(secret_metric)`,
		`max_over_time(rate(http_requests_total[1m])[10m:1m])`,
	}
	for _, tok := range []string{consularToken, healthToken, dataToken} {
		for _, q := range queries {
			wc, w := whole.do(t, tok, http.MethodPost, "/api/v1/query_range", params(q))
			sc, s := split.do(t, tok, http.MethodPost, "/api/v1/query_range", params(q))
			if wc != http.StatusOK || sc != http.StatusOK || w.Status != "success" {
				t.Fatalf("%s: whole %d %s %s, split %d %s", q, wc, w.Status, w.Error, sc, s.Error)
			}
			if string(s.Data) != string(w.Data) {
				t.Errorf("%s (token %.8s): split answer differs\nsplit: %.300s\nwhole: %.300s", q, tok, s.Data, w.Data)
			}
		}
	}
	// Each request ran as three engine queries.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var inner uint64
	for _, mf := range mfs {
		if mf.GetName() != "prometheus_engine_query_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "slice" && l.GetValue() == "inner_eval" {
					inner += m.GetSummary().GetSampleCount()
				}
			}
		}
	}
	if want := uint64(3 * 3 * len(queries)); inner != want {
		t.Errorf("%d engine evaluations, want %d (three per request)", inner, want)
	}
}
