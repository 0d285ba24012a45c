package query

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
	"github.com/bureauhub/bureauhub/hub/store/head"
)

// headHub serves the API over a second store on the same ClickHouse
// database whose recent reads come from a head refilled from it.
func headHub(t *testing.T, ch *testHub, cfg Config) (*testHub, *head.Head, *prometheus.Registry) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := clickhouse.Open(ch.scfg, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	reg := prometheus.NewRegistry()
	hcfg := head.Config{Dir: t.TempDir()}
	hcfg.SetDefaults()
	h, err := head.New(hcfg, []string{"consular", "health", "databureau"}, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	if err := h.Refill(context.Background(), func(tenant string) storage.Queryable {
		return store.Queryable(clickhouse.Scope{Tenants: []string{tenant}}, clickhouse.Limits{})
	}); err != nil {
		t.Fatal(err)
	}
	store.SetRecent(h)
	cfg.SetDefaults()
	srv := httptest.NewServer(New(cfg, store, ch.authn, nil, logger, reg).Handler())
	t.Cleanup(srv.Close)
	return &testHub{srv: srv, store: store, scfg: ch.scfg, authn: ch.authn, end: ch.end}, h, reg
}

// TestHeadAnswersAsClickHouse: every answer read from the head is the
// one ClickHouse gives, byte for byte, for every tenant scope, before and
// after new samples arrive; reads the head does not hold go to ClickHouse.
func TestHeadAnswersAsClickHouse(t *testing.T) {
	ch := newTestHub(t, Config{RangeParallelism: 1})
	hh, h, reg := headHub(t, ch, Config{RangeParallelism: 2, RangeMinSteps: 2})

	// New samples after the refill, stored and appended as ingestion
	// does: a new series, and the next samples of a known one.
	end := ch.end.Add(time.Minute)
	var b clickhouse.Block
	for _, s := range []labels.Labels{
		labels.FromStrings("__name__", "http_requests_total", "bureau", "consular", "job", "booking", "instance", "vm-1"),
		labels.FromStrings("__name__", "queue_depth", "bureau", "health", "job", "healthcode", "instance", "vm-9"),
	} {
		fp := clickhouse.Fingerprint(s)
		var names, values []string
		s.Range(func(l labels.Label) {
			if l.Name != labels.MetricName {
				names, values = append(names, l.Name), append(values, l.Value)
			}
		})
		tenant := s.Get("bureau")
		b.Series = append(b.Series, clickhouse.SeriesRow{Tenant: tenant, Date: end.UTC().Truncate(24 * time.Hour), Fingerprint: fp,
			MetricName: s.Get(labels.MetricName), LabelNames: names, LabelValues: values})
		for i := 1; i <= 4; i++ {
			b.Tenants = append(b.Tenants, tenant)
			b.Fingerprints = append(b.Fingerprints, fp)
			b.Timestamps = append(b.Timestamps, ch.end.Add(time.Duration(i)*15*time.Second).UnixMilli())
			b.Values = append(b.Values, float64(4000+i*15))
		}
	}
	if err := ch.store.WriteBlock(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	h.Append(&b)

	queries := []string{
		`http_requests_total`,
		`sum by (bureau, instance) (rate(http_requests_total[5m]))`,
		`up`,
		`queue_depth`,
		`absent(secret_metric)`,
		`max_over_time(rate(http_requests_total[1m])[10m:1m])`,
		`count by (__name__) ({__name__=~".+"})`,
	}
	compare := func(path string, params url.Values) {
		t.Helper()
		for _, tok := range []string{consularToken, healthToken, dataToken} {
			cc, c := ch.do(t, tok, http.MethodPost, path, params)
			hc, r := hh.do(t, tok, http.MethodPost, path, params)
			if cc != http.StatusOK || hc != http.StatusOK || c.Status != "success" {
				t.Fatalf("%s %v: clickhouse %d %s %s, head %d %s", path, params, cc, c.Status, c.Error, hc, r.Error)
			}
			if string(r.Data) != string(c.Data) {
				t.Errorf("%s %s (token %.8s): the head's answer differs\nhead:       %.400s\nclickhouse: %.400s", path, params.Get("query"), tok, r.Data, c.Data)
			}
		}
	}
	headReads := func() float64 {
		return headReadsTotal(t, reg, "head", "")
	}
	for _, q := range queries {
		before := headReads()
		compare("/api/v1/query_range", url.Values{"query": {q}, "start": {ts(end.Add(-time.Hour))},
			"end": {ts(end)}, "step": {"15"}})
		compare("/api/v1/query", url.Values{"query": {q}, "time": {ts(end)}})
		if headReads() == before {
			t.Errorf("%s: no read went to the head", q)
		}
	}
	// A selection without the engine's hints (the rules' restore of
	// ALERTS_FOR_STATE keeps each series' last sample) gets samples of its
	// range only, though the head leaves the engine's untrimmed.
	before := headReads()
	mint, maxt := end.Add(-time.Hour).UnixMilli(), ch.end.Add(30*time.Second).UnixMilli()
	q, err := hh.store.Queryable(clickhouse.Scope{All: true}, clickhouse.Limits{}).Querier(mint, maxt)
	if err != nil {
		t.Fatal(err)
	}
	set := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, "http_requests_total"))
	var read int
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() != chunkenc.ValNone {
			if at, _ := it.At(); at < mint || at > maxt {
				t.Errorf("%s: sample at %d, outside the selected [%d, %d]", set.At().Labels(), at, mint, maxt)
			}
			read++
		}
	}
	if err := set.Err(); err != nil || read == 0 || headReads() == before {
		t.Errorf("selection without hints: err %v, %d samples, %v reads from the head", err, read, headReads()-before)
	}
	q.Close()

	// Older than the window: ClickHouse answers.
	before = headReads()
	compare("/api/v1/query_range", url.Values{"query": {"up"}, "start": {ts(end.Add(-4 * time.Hour))},
		"end": {ts(end)}, "step": {"60"}})
	compare("/api/v1/query", url.Values{"query": {"count_over_time(up[4h])"}, "time": {ts(end)}})
	if headReads() != before {
		t.Errorf("a range older than the head's window was read from the head")
	}
	if got := headReadsTotal(t, reg, "clickhouse", "before_window"); got == 0 {
		t.Errorf("bureauhub_head_reads_total{source=clickhouse,reason=before_window} = 0")
	}

	// Every read the queries opened was closed with them (a leaked one
	// would keep the TSDB from ever truncating).
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`# HELP bureauhub_head_open_reads Reads of the head whose queries have not finished; the head cannot drop what they read until they do.
# TYPE bureauhub_head_open_reads gauge
bureauhub_head_open_reads 0
`), "bureauhub_head_open_reads"); err != nil {
		t.Errorf("after every query returned: %v", err)
	}

	// A sample the head could not take (a second value for a timestamp)
	// leaves a hole: reads over it go to ClickHouse, and still agree.
	var dup clickhouse.Block
	dup.Tenants = append(dup.Tenants, "health")
	dup.Fingerprints = append(dup.Fingerprints, b.Fingerprints[len(b.Fingerprints)-1])
	dup.Timestamps = append(dup.Timestamps, b.Timestamps[len(b.Timestamps)-1])
	dup.Values = append(dup.Values, -1)
	h.Append(&dup)
	compare("/api/v1/query", url.Values{"query": {"http_requests_total"}, "time": {ts(end)}})
	if got := headReadsTotal(t, reg, "clickhouse", "hole"); got == 0 {
		t.Errorf("no read went to ClickHouse for the hole")
	}
}

// TestHeadLimits: a tenant's query limits hold on reads from the head.
func TestHeadLimits(t *testing.T) {
	ch := newTestHub(t, Config{})
	hh, _, reg := headHub(t, ch, Config{TenantLimits: map[string]Limits{
		"consular": {MaxSeries: 1},
		"health":   {MaxSamples: 10},
	}})
	end := strconv.FormatInt(ch.end.Unix(), 10)
	for _, tc := range []struct {
		name, token, query, errText string
	}{
		{"max series", consularToken, "up", "series"},
		{"max samples", healthToken, "http_requests_total[30m]", "samples"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, r := hh.do(t, tc.token, http.MethodGet, "/api/v1/query", url.Values{"query": {tc.query}, "time": {end}})
			if code != 422 || r.ErrorType != "execution" || !strings.Contains(r.Error, tc.errText) {
				t.Errorf("got %d %q %q; want 422 execution containing %q", code, r.ErrorType, r.Error, tc.errText)
			}
		})
	}
	if got := headReadsTotal(t, reg, "head", ""); got < 2 {
		t.Errorf("%v reads from the head, want the limited ones there", got)
	}
}

// headReadsTotal reads bureauhub_head_reads_total{source, reason}.
func headReadsTotal(t *testing.T, reg *prometheus.Registry, source, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	v := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "bureauhub_head_reads_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var src, why string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "source":
					src = l.GetValue()
				case "reason":
					why = l.GetValue()
				}
			}
			if src == source && why == reason {
				v = m.GetCounter().GetValue()
			}
		}
	}
	return v
}
