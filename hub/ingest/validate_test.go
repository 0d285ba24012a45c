package ingest

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fpb "github.com/bureauhub/bureauhub/api/federationpb"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
)

var (
	testNow   = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	testDay   = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	testNowMs = testNow.UnixMilli()
)

// smallLimits is a config whose limits the tests can reach cheaply.
func smallLimits() Config {
	return Config{
		MaxFuture:           10 * time.Minute,
		MaxAge:              time.Hour,
		MaxLabelsPerSeries:  5,
		MaxLabelNameLength:  16,
		MaxLabelValueLength: 16,
	}
}

// lbls builds labels from name, value pairs, in the order given.
func lbls(nv ...string) []prompb.Label {
	ls := make([]prompb.Label, 0, len(nv)/2)
	for i := 0; i < len(nv); i += 2 {
		ls = append(ls, prompb.Label{Name: nv[i], Value: nv[i+1]})
	}
	return ls
}

// ser builds a series with one sample per timestamp, valued by position.
func ser(ls []prompb.Label, tss ...int64) prompb.TimeSeries {
	s := prompb.TimeSeries{Labels: ls}
	for i, ts := range tss {
		s.Samples = append(s.Samples, prompb.Sample{Timestamp: ts, Value: float64(i + 1)})
	}
	return s
}

// fp is the fingerprint the hub must give the label set nv.
func fp(nv ...string) uint64 { return clickhouse.Fingerprint(labels.FromStrings(nv...)) }

func convertOnce(tb testing.TB, s *Service, tenant string, now time.Time, ts ...prompb.TimeSeries) (*item, map[string]int) {
	tb.Helper()
	var rej rejectionSet
	it := s.convert(tenant, &prompb.WriteRequest{Timeseries: ts}, now, &rej)
	if len(it.fps) != it.samples || len(it.ts) != it.samples || len(it.vals) != it.samples {
		tb.Fatalf("item columns: %d fps, %d ts, %d vals for %d samples", len(it.fps), len(it.ts), len(it.vals), it.samples)
	}
	if it.tenant != tenant {
		tb.Fatalf("item tenant = %q, want %q", it.tenant, tenant)
	}
	for r := range rej.counts {
		if rej.examples[r] == "" {
			tb.Errorf("reason %s has no example", r)
		}
	}
	return it, rej.counts
}

func TestConvert(t *testing.T) {
	maxT := testNow.Add(10 * time.Minute).UnixMilli()
	minT := testNow.Add(-time.Hour).UnixMilli()
	hist := prompb.Histogram{Count: &prompb.Histogram_CountInt{CountInt: 1}, Timestamp: testNowMs}
	type row struct {
		metric string
		names  []string
		values []string
	}
	tests := []struct {
		name    string
		series  []prompb.TimeSeries
		wantRej map[string]int
		wantFPs []uint64 // one per accepted sample
		wantTS  []int64  // default: testNowMs for each accepted sample
		rows    []row    // series rows, in order
	}{
		{
			name:    "valid series gets the tenant label",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "up", "job", "x"), testNowMs)},
			wantFPs: []uint64{fp("__name__", "up", "bureau", "t", "job", "x")},
			rows:    []row{{"up", []string{"bureau", "job"}, []string{"t", "x"}}},
		},
		{
			name:    "missing metric name",
			series:  []prompb.TimeSeries{ser(lbls("job", "x"), testNowMs, testNowMs+1)},
			wantRej: map[string]int{ReasonMissingName: 2},
		},
		{
			name:    "empty metric name",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "", "job", "x"), testNowMs)},
			wantRej: map[string]int{ReasonInvalidMetricName: 1},
		},
		{
			name:    "metric name starting with a digit",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "1up"), testNowMs)},
			wantRej: map[string]int{ReasonInvalidMetricName: 1},
		},
		{
			name:    "metric name with a dash",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "up-time"), testNowMs)},
			wantRej: map[string]int{ReasonInvalidMetricName: 1},
		},
		{
			name:    "metric name with colons is valid",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "job:up:sum"), testNowMs)},
			wantFPs: []uint64{fp("__name__", "job:up:sum", "bureau", "t")},
			rows:    []row{{"job:up:sum", []string{"bureau"}, []string{"t"}}},
		},
		{
			name:    "label name starting with a digit",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "up", "0abc", "v"), testNowMs)},
			wantRej: map[string]int{ReasonInvalidLabelName: 1},
		},
		{
			name:    "label name with a dash",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "up", "a-b", "v"), testNowMs)},
			wantRej: map[string]int{ReasonInvalidLabelName: 1},
		},
		{
			name:    "label name with a colon",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "up", "a:b", "v"), testNowMs)},
			wantRej: map[string]int{ReasonInvalidLabelName: 1},
		},
		{
			name:    "duplicate label name",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "up", "a", "1", "a", "2"), testNowMs)},
			wantRej: map[string]int{ReasonDuplicateLabel: 1},
		},
		{
			name:    "duplicate label name apart until sorted",
			series:  []prompb.TimeSeries{ser(lbls("a", "1", "__name__", "up", "a", "2"), testNowMs, testNowMs)},
			wantRej: map[string]int{ReasonDuplicateLabel: 2},
		},
		{
			name:    "invalid UTF-8 value",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "up", "job", "a\xffb"), testNowMs)},
			wantRej: map[string]int{ReasonInvalidLabelValue: 1},
		},
		{
			name:    "too many labels",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "up", "a", "1", "b", "2", "c", "3", "d", "4"), testNowMs)},
			wantRej: map[string]int{ReasonTooManyLabels: 1},
		},
		{
			name:    "label name too long",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "up", strings.Repeat("n", 17), "v"), testNowMs)},
			wantRej: map[string]int{ReasonLabelTooLong: 1},
		},
		{
			name:    "label value too long",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "up", "job", strings.Repeat("v", 17)), testNowMs)},
			wantRej: map[string]int{ReasonLabelTooLong: 1},
		},
		{
			name:    "metric name too long",
			series:  []prompb.TimeSeries{ser(lbls("__name__", strings.Repeat("m", 17)), testNowMs)},
			wantRej: map[string]int{ReasonLabelTooLong: 1},
		},
		{
			name:    "labels at the length limits",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "up", strings.Repeat("n", 16), strings.Repeat("v", 16)), testNowMs)},
			wantFPs: []uint64{fp("__name__", "up", "bureau", "t", strings.Repeat("n", 16), strings.Repeat("v", 16))},
			rows:    []row{{"up", []string{"bureau", strings.Repeat("n", 16)}, []string{"t", strings.Repeat("v", 16)}}},
		},
		{
			name:    "sample too far in future",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "up"), maxT+1)},
			wantRej: map[string]int{ReasonTooFarInFuture: 1},
		},
		{
			name:    "sample at max future is accepted",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "up"), maxT)},
			wantFPs: []uint64{fp("__name__", "up", "bureau", "t")},
			wantTS:  []int64{maxT},
			rows:    []row{{"up", []string{"bureau"}, []string{"t"}}},
		},
		{
			name:    "sample too old",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "up"), minT-1)},
			wantRej: map[string]int{ReasonTooOld: 1},
		},
		{
			name:    "sample at max age is accepted",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "up"), minT)},
			wantFPs: []uint64{fp("__name__", "up", "bureau", "t")},
			wantTS:  []int64{minT},
			rows:    []row{{"up", []string{"bureau"}, []string{"t"}}},
		},
		{
			name:    "bad samples refused one by one",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "up"), maxT+1, testNowMs, minT-1, maxT+5)},
			wantRej: map[string]int{ReasonTooFarInFuture: 2, ReasonTooOld: 1},
			wantFPs: []uint64{fp("__name__", "up", "bureau", "t")},
			rows:    []row{{"up", []string{"bureau"}, []string{"t"}}},
		},
		{
			name:    "histogram-only series",
			series:  []prompb.TimeSeries{{Labels: lbls("__name__", "h"), Histograms: []prompb.Histogram{hist, hist}}},
			wantRej: map[string]int{ReasonHistogram: 2},
		},
		{
			name: "histograms beside samples",
			series: []prompb.TimeSeries{{Labels: lbls("__name__", "h"), Histograms: []prompb.Histogram{hist},
				Samples: []prompb.Sample{{Timestamp: testNowMs, Value: 1}}}},
			wantRej: map[string]int{ReasonHistogram: 1},
			wantFPs: []uint64{fp("__name__", "h", "bureau", "t")},
			rows:    []row{{"h", []string{"bureau"}, []string{"t"}}},
		},
		{
			name:    "empty label values are dropped",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "up", "a", "", "job", "x"), testNowMs)},
			wantFPs: []uint64{fp("__name__", "up", "bureau", "t", "job", "x")},
			rows:    []row{{"up", []string{"bureau", "job"}, []string{"t", "x"}}},
		},
		{
			name:    "unsorted labels are accepted and sorted",
			series:  []prompb.TimeSeries{ser(lbls("job", "x", "__name__", "up", "a", "b"), testNowMs)},
			wantFPs: []uint64{fp("__name__", "up", "a", "b", "bureau", "t", "job", "x")},
			rows:    []row{{"up", []string{"a", "bureau", "job"}, []string{"b", "t", "x"}}},
		},
		{
			name:    "another bureau's label is overridden",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "up", "bureau", "other", "job", "x"), testNowMs)},
			wantFPs: []uint64{fp("__name__", "up", "bureau", "t", "job", "x")},
			rows:    []row{{"up", []string{"bureau", "job"}, []string{"t", "x"}}},
		},
		{
			name:    "empty bureau label is set",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "up", "bureau", ""), testNowMs)},
			wantFPs: []uint64{fp("__name__", "up", "bureau", "t")},
			rows:    []row{{"up", []string{"bureau"}, []string{"t"}}},
		},
		{
			name:    "own bureau label is kept",
			series:  []prompb.TimeSeries{ser(lbls("__name__", "up", "bureau", "t"), testNowMs)},
			wantFPs: []uint64{fp("__name__", "up", "bureau", "t")},
			rows:    []row{{"up", []string{"bureau"}, []string{"t"}}},
		},
		{
			name:   "series without samples is ignored",
			series: []prompb.TimeSeries{{Labels: lbls("job", "no name")}},
		},
		{
			name: "bad series do not spoil good ones",
			series: []prompb.TimeSeries{
				ser(lbls("__name__", "a"), testNowMs, testNowMs),
				ser(lbls("job", "x"), testNowMs),
				ser(lbls("__name__", "b", "0x", "1"), testNowMs, testNowMs, testNowMs),
				ser(lbls("__name__", "c"), testNowMs),
			},
			wantRej: map[string]int{ReasonMissingName: 1, ReasonInvalidLabelName: 3},
			wantFPs: []uint64{fp("__name__", "a", "bureau", "t"), fp("__name__", "a", "bureau", "t"), fp("__name__", "c", "bureau", "t")},
			rows:    []row{{"a", []string{"bureau"}, []string{"t"}}, {"c", []string{"bureau"}, []string{"t"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestService(t, smallLimits())
			it, rej := convertOnce(t, s, "t", testNow, tt.series...)
			if !maps.Equal(rej, tt.wantRej) {
				t.Errorf("rejections = %v, want %v", rej, tt.wantRej)
			}
			if !slices.Equal(it.fps, tt.wantFPs) {
				t.Errorf("fingerprints = %v, want %v", it.fps, tt.wantFPs)
			}
			wantTS := tt.wantTS
			if wantTS == nil {
				for range tt.wantFPs {
					wantTS = append(wantTS, testNowMs)
				}
			}
			if !slices.Equal(it.ts, wantTS) {
				t.Errorf("timestamps = %v, want %v", it.ts, wantTS)
			}
			if len(it.series) != len(tt.rows) {
				t.Fatalf("series rows = %+v, want %d", it.series, len(tt.rows))
			}
			for i, r := range it.series {
				want := tt.rows[i]
				if r.Tenant != "t" || !r.Date.Equal(testDay) || r.MetricName != want.metric ||
					!slices.Equal(r.LabelNames, want.names) || !slices.Equal(r.LabelValues, want.values) {
					t.Errorf("series row %d = %+v, want tenant t, date %v, %+v", i, r, testDay, want)
				}
				if !slices.Contains(it.fps, r.Fingerprint) {
					t.Errorf("series row %d fingerprint %x is not among the samples' %x", i, r.Fingerprint, it.fps)
				}
			}
		})
	}
}

func TestConvertKeepsValues(t *testing.T) {
	s, _ := newTestService(t, smallLimits())
	in := prompb.TimeSeries{Labels: lbls("__name__", "up"), Samples: []prompb.Sample{
		{Timestamp: testNowMs - 2000, Value: -1.5}, {Timestamp: testNowMs - 1000, Value: 0}, {Timestamp: testNowMs, Value: 1e300},
	}}
	it, _ := convertOnce(t, s, "t", testNow, in)
	if want := []float64{-1.5, 0, 1e300}; !slices.Equal(it.vals, want) {
		t.Errorf("values = %v, want %v", it.vals, want)
	}
	if want := []int64{testNowMs - 2000, testNowMs - 1000, testNowMs}; !slices.Equal(it.ts, want) {
		t.Errorf("timestamps = %v, want %v", it.ts, want)
	}
}

func TestCheckLabels(t *testing.T) {
	tests := []struct {
		name string
		ls   []prompb.Label
		want string
	}{
		{name: "valid", ls: lbls("__name__", "up", "job", "x"), want: ""},
		{name: "missing name", ls: lbls("job", "x"), want: ReasonMissingName},
		{name: "no labels", ls: nil, want: ReasonMissingName},
		{name: "invalid metric name", ls: lbls("__name__", "a b"), want: ReasonInvalidMetricName},
		{name: "label 0abc", ls: lbls("__name__", "up", "0abc", "x"), want: ReasonInvalidLabelName},
		{name: "label a-b", ls: lbls("__name__", "up", "a-b", "x"), want: ReasonInvalidLabelName},
		{name: "empty label name", ls: lbls("__name__", "up", "", "x"), want: ReasonInvalidLabelName},
		{name: "non-ASCII label name", ls: lbls("__name__", "up", "é", "x"), want: ReasonInvalidLabelName},
		{name: "duplicate", ls: lbls("__name__", "up", "x", "1", "x", "1"), want: ReasonDuplicateLabel},
		{name: "duplicate name label", ls: lbls("__name__", "up", "__name__", "down"), want: ReasonDuplicateLabel},
		{name: "invalid UTF-8", ls: lbls("__name__", "up", "x", "\xc3\x28"), want: ReasonInvalidLabelValue},
		{name: "valid UTF-8", ls: lbls("__name__", "up", "x", "Grüße"), want: ""},
		// The limit counts the bureau label the hub adds.
		{name: "at the label count limit", ls: lbls("__name__", "up", "a", "1", "b", "2", "c", "3"), want: ""},
		{name: "at the limit with bureau given", ls: lbls("__name__", "up", "a", "1", "b", "2", "c", "3", "bureau", "t"), want: ""},
		{name: "over the label count limit", ls: lbls("__name__", "up", "a", "1", "b", "2", "c", "3", "d", "4"), want: ReasonTooManyLabels},
		{name: "name too long", ls: lbls("__name__", "up", strings.Repeat("a", 17), "x"), want: ReasonLabelTooLong},
		{name: "value too long", ls: lbls("__name__", "up", "a", strings.Repeat("x", 17)), want: ReasonLabelTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := smallLimits()
			cfg.SetDefaults()
			if got := cfg.checkLabels(tt.ls); got != tt.want {
				t.Errorf("checkLabels(%v) = %q, want %q", tt.ls, got, tt.want)
			}
		})
	}
	t.Run("sorts in place", func(t *testing.T) {
		cfg := smallLimits()
		cfg.SetDefaults()
		ls := lbls("job", "x", "__name__", "up", "a", "b")
		if got := cfg.checkLabels(ls); got != "" {
			t.Fatalf("checkLabels = %q", got)
		}
		if want := lbls("__name__", "up", "a", "b", "job", "x"); !slices.EqualFunc(ls, want, func(a, b prompb.Label) bool { return a.Name == b.Name && a.Value == b.Value }) {
			t.Errorf("labels after checkLabels = %v, want %v", ls, want)
		}
	})
}

func TestConvertSeriesLimit(t *testing.T) {
	cfg := smallLimits()
	cfg.DefaultLimits.MaxActiveSeries = 2
	cfg.TenantLimits = map[string]Limits{"big": {MaxActiveSeries: 3}}
	s, _ := newTestService(t, cfg)
	a := ser(lbls("__name__", "a"), testNowMs)
	b := ser(lbls("__name__", "b"), testNowMs, testNowMs)
	c := ser(lbls("__name__", "c"), testNowMs, testNowMs, testNowMs)
	d := ser(lbls("__name__", "d"), testNowMs)

	steps := []struct {
		name    string
		tenant  string
		series  []prompb.TimeSeries
		samples int
		wantRej map[string]int
	}{
		{name: "two new series fill the limit", tenant: "t", series: []prompb.TimeSeries{a, b}, samples: 3},
		{name: "a third is refused", tenant: "t", series: []prompb.TimeSeries{c}, wantRej: map[string]int{ReasonSeriesLimit: 3}},
		{name: "known series still pass beside a new one", tenant: "t", series: []prompb.TimeSeries{d, a, b}, samples: 3,
			wantRej: map[string]int{ReasonSeriesLimit: 1}},
		{name: "the limit is per tenant", tenant: "u", series: []prompb.TimeSeries{c, d}, samples: 4},
		{name: "tenant limits override the default", tenant: "big", series: []prompb.TimeSeries{a, b, c, d}, samples: 6,
			wantRej: map[string]int{ReasonSeriesLimit: 1}},
	}
	for _, st := range steps {
		// Steps share the service's state, so they are not subtests.
		it, rej := convertOnce(t, s, st.tenant, testNow, slices.Clone(st.series)...)
		if it.samples != st.samples {
			t.Errorf("%s: accepted %d samples, want %d", st.name, it.samples, st.samples)
		}
		if !maps.Equal(rej, st.wantRej) {
			t.Errorf("%s: rejections = %v, want %v", st.name, rej, st.wantRej)
		}
	}

	// Once the window passes without a sample, a series stops counting.
	s.sweep(testNow.Add(2 * time.Hour))
	it, rej := convertOnce(t, s, "t", testNow.Add(2*time.Hour), ser(lbls("__name__", "c"), testNow.Add(2*time.Hour).UnixMilli()))
	if it.samples != 1 || len(rej) != 0 {
		t.Errorf("after sweep: accepted %d, rejections %v; want 1 accepted", it.samples, rej)
	}
}

// TestSweptSeriesAreNewAgain: a series forgotten by the sweep counts as
// new when it comes back, though the one sent before it still remembers
// it as its follower (seriesState.after).
func TestSweptSeriesAreNewAgain(t *testing.T) {
	cfg := smallLimits()
	cfg.DefaultLimits.MaxActiveSeries = 2
	cfg.ActiveSeriesWindow = time.Hour
	s, _ := newTestService(t, cfg)
	at := func(d time.Duration, names ...string) map[string]int {
		var ss []prompb.TimeSeries
		for _, n := range names {
			ss = append(ss, ser(lbls("__name__", n), testNow.Add(d).UnixMilli()))
		}
		_, rej := convertOnce(t, s, "t", testNow.Add(d), ss...)
		return rej
	}
	at(0, "a", "b")
	at(cfg.ActiveSeriesWindow/2, "a") // b goes idle
	s.sweep(testNow.Add(cfg.ActiveSeriesWindow + cfg.ActiveSeriesWindow/4))
	// a and b are active again, and c is one too many.
	if rej := at(cfg.ActiveSeriesWindow+cfg.ActiveSeriesWindow/4, "a", "b", "c"); !maps.Equal(rej, map[string]int{ReasonSeriesLimit: 1}) {
		t.Errorf("rejections = %v, want c over the series limit", rej)
	}
}

func TestConvertRefusedSeriesDoNotCount(t *testing.T) {
	cfg := smallLimits()
	cfg.DefaultLimits.MaxActiveSeries = 1
	s, _ := newTestService(t, cfg)
	// A series whose every sample is refused is not active.
	convertOnce(t, s, "t", testNow, ser(lbls("__name__", "old"), testNowMs-2*time.Hour.Milliseconds()))
	it, rej := convertOnce(t, s, "t", testNow, ser(lbls("__name__", "new"), testNowMs))
	if it.samples != 1 || len(rej) != 0 {
		t.Errorf("accepted %d, rejections %v; want 1 accepted", it.samples, rej)
	}
}

func TestConvertSeriesRowOncePerDay(t *testing.T) {
	s, _ := newTestService(t, smallLimits())
	up := func(now time.Time) prompb.TimeSeries {
		return ser(lbls("__name__", "up", "job", "x"), now.UnixMilli())
	}
	steps := []struct {
		name string
		now  time.Time
		rows int
	}{
		{name: "first batch", now: testNow, rows: 1},
		{name: "same day", now: testNow.Add(time.Minute), rows: 0},
		{name: "later the same day", now: testNow.Add(11*time.Hour + 59*time.Minute), rows: 0},
		{name: "next day", now: testNow.Add(12 * time.Hour), rows: 1},
		{name: "next day again", now: testNow.Add(13 * time.Hour), rows: 0},
	}
	for _, st := range steps {
		it, _ := convertOnce(t, s, "t", st.now, up(st.now))
		if it.samples != 1 {
			t.Fatalf("%s: accepted %d samples, want 1", st.name, it.samples)
		}
		if len(it.series) != st.rows {
			t.Errorf("%s: %d series rows, want %d", st.name, len(it.series), st.rows)
		}
	}

	// A series twice in one batch gets one row.
	s2, _ := newTestService(t, smallLimits())
	it, _ := convertOnce(t, s2, "t", testNow, up(testNow), up(testNow))
	if it.samples != 2 || len(it.series) != 1 {
		t.Errorf("duplicate series in one batch: %d samples, %d rows; want 2, 1", it.samples, len(it.series))
	}
}

func TestFingerprints(t *testing.T) {
	base := func() []prompb.Label { return lbls("__name__", "up", "job", "x", "zone", "a") }
	s, _ := newTestService(t, smallLimits())
	fpFor := func(tenant string, ls []prompb.Label) uint64 {
		t.Helper()
		it, rej := convertOnce(t, s, tenant, testNow, ser(ls, testNowMs))
		if it.samples != 1 {
			t.Fatalf("%v refused: %v", ls, rej)
		}
		return it.fps[0]
	}
	ref := fpFor("t", base())
	if got := fpFor("t", base()); got != ref {
		t.Errorf("identical label sets: fingerprints %x and %x", ref, got)
	}
	if got := fpFor("t", lbls("zone", "a", "job", "x", "__name__", "up")); got != ref {
		t.Errorf("same labels reordered: fingerprint %x, want %x", got, ref)
	}
	differ := []struct {
		name   string
		tenant string
		ls     []prompb.Label
	}{
		{name: "metric name", tenant: "t", ls: lbls("__name__", "down", "job", "x", "zone", "a")},
		{name: "label value", tenant: "t", ls: lbls("__name__", "up", "job", "y", "zone", "a")},
		{name: "label name", tenant: "t", ls: lbls("__name__", "up", "job", "x", "zonf", "a")},
		{name: "extra label", tenant: "t", ls: lbls("__name__", "up", "job", "x", "zone", "a", "z", "1")},
		{name: "missing label", tenant: "t", ls: lbls("__name__", "up", "job", "x")},
		{name: "tenant", tenant: "u", ls: base()},
	}
	for _, d := range differ {
		t.Run(d.name, func(t *testing.T) {
			if got := fpFor(d.tenant, d.ls); got == ref {
				t.Errorf("fingerprint %x equals the reference's", got)
			}
		})
	}
}

func TestAdmit(t *testing.T) {
	valid := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		ser(lbls("__name__", "a"), time.Now().UnixMilli(), time.Now().UnixMilli()),
		ser(lbls("job", "x"), time.Now().UnixMilli()),
		ser(lbls("__name__", "b", "0x", "1"), time.Now().UnixMilli()),
	}}
	allBad := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{ser(lbls("job", "x"), time.Now().UnixMilli())}}
	tests := []struct {
		name       string
		cfg        func(*Config)
		batch      func(tb testing.TB) *fpb.Batch
		wantItem   int // samples in the item; 0 for none
		wantCode   codes.Code
		wantRej    map[string]uint32
		wantStatus codes.Code // stream error; OK for none
	}{
		{
			name: "partly valid",
			batch: func(tb testing.TB) *fpb.Batch {
				return &fpb.Batch{Seq: 7, Encoding: fpb.Encoding_ENCODING_SNAPPY_PROMPB, Payload: encodeWriteRequest(tb, valid), Samples: 4}
			},
			wantItem: 2,
			wantCode: codes.OK,
			wantRej:  map[string]uint32{ReasonMissingName: 1, ReasonInvalidLabelName: 1},
		},
		{
			name: "nothing valid",
			batch: func(tb testing.TB) *fpb.Batch {
				return &fpb.Batch{Seq: 7, Encoding: fpb.Encoding_ENCODING_SNAPPY_PROMPB, Payload: encodeWriteRequest(tb, allBad), Samples: 1}
			},
			wantCode: codes.InvalidArgument,
			wantRej:  map[string]uint32{ReasonMissingName: 1},
		},
		{
			name: "empty request",
			batch: func(tb testing.TB) *fpb.Batch {
				return &fpb.Batch{Seq: 7, Encoding: fpb.Encoding_ENCODING_SNAPPY_PROMPB, Payload: encodeWriteRequest(tb, &prompb.WriteRequest{})}
			},
			wantCode: codes.OK,
		},
		{
			name: "unknown encoding",
			batch: func(tb testing.TB) *fpb.Batch {
				return &fpb.Batch{Seq: 7, Encoding: fpb.Encoding(99), Payload: encodeWriteRequest(tb, valid), Samples: 4}
			},
			wantCode: codes.InvalidArgument,
			wantRej:  map[string]uint32{ReasonMalformed: 4},
		},
		{
			name: "bad snappy",
			batch: func(testing.TB) *fpb.Batch {
				return &fpb.Batch{Seq: 7, Encoding: fpb.Encoding_ENCODING_SNAPPY_PROMPB, Payload: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, Samples: 3}
			},
			wantCode: codes.InvalidArgument,
			wantRej:  map[string]uint32{ReasonMalformed: 3},
		},
		{
			name: "bad protobuf",
			batch: func(testing.TB) *fpb.Batch {
				return &fpb.Batch{Seq: 7, Encoding: fpb.Encoding_ENCODING_SNAPPY_PROMPB, Payload: snappyOf([]byte{0x0a, 0xff, 0xff}), Samples: 3}
			},
			wantCode: codes.InvalidArgument,
			wantRej:  map[string]uint32{ReasonMalformed: 3},
		},
		{
			name: "decoded size over max_batch_bytes",
			cfg:  func(c *Config) { c.MaxBatchBytes = 100 },
			batch: func(testing.TB) *fpb.Batch {
				return &fpb.Batch{Seq: 7, Encoding: fpb.Encoding_ENCODING_SNAPPY_PROMPB, Payload: snappyOf(make([]byte, 101)), Samples: 3}
			},
			wantCode: codes.InvalidArgument,
			wantRej:  map[string]uint32{ReasonMalformed: 3},
		},
		{
			name: "over the rate limit",
			cfg:  func(c *Config) { c.DefaultLimits.SamplesPerSecond = 0.1 },
			batch: func(tb testing.TB) *fpb.Batch {
				// The burst (1 sample) lets one through; the bucket is
				// empty for the second.
				return &fpb.Batch{Seq: 7, Encoding: fpb.Encoding_ENCODING_SNAPPY_PROMPB, Payload: encodeWriteRequest(tb, valid), Samples: 4}
			},
			wantStatus: codes.ResourceExhausted,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			s, reg := newTestService(t, cfg)
			b := tt.batch(t)
			if tt.wantStatus != codes.OK {
				if _, _, err := s.admit(context.Background(), "t", b); err != nil {
					t.Fatalf("first batch under the burst: %v", err)
				}
			}
			it, ack, err := s.admit(context.Background(), "t", b)
			if tt.wantStatus != codes.OK {
				if status.Code(err) != tt.wantStatus {
					t.Fatalf("err = %v, want code %v", err, tt.wantStatus)
				}
				if !strings.Contains(err.Error(), ReasonRateLimited) {
					t.Errorf("err %q does not name %s", err, ReasonRateLimited)
				}
				if got := testutil.ToFloat64(s.m.rejected.WithLabelValues("t", ReasonRateLimited)); got != 4 {
					t.Errorf("rejected{rate_limited} = %v, want 4", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("admit: %v", err)
			}
			if tt.wantItem == 0 && it != nil {
				t.Fatalf("item with %d samples, want none", it.samples)
			}
			if tt.wantItem > 0 && (it == nil || it.samples != tt.wantItem) {
				t.Fatalf("item = %+v, want %d samples", it, tt.wantItem)
			}
			if ack.Seq != b.Seq || codes.Code(ack.Code) != tt.wantCode {
				t.Errorf("ack seq %d code %v, want %d %v", ack.Seq, codes.Code(ack.Code), b.Seq, tt.wantCode)
			}
			if int(ack.AcceptedSamples) != tt.wantItem {
				t.Errorf("ack accepted %d, want %d", ack.AcceptedSamples, tt.wantItem)
			}
			got := map[string]uint32{}
			var reasons []string
			for _, r := range ack.Rejections {
				got[r.Reason] = r.Samples
				reasons = append(reasons, r.Reason)
				if r.Example == "" {
					t.Errorf("rejection %s has no example", r.Reason)
				}
				if v := testutil.ToFloat64(s.m.rejected.WithLabelValues("t", r.Reason)); v != float64(r.Samples) {
					t.Errorf("rejected{%s} metric = %v, ack says %d", r.Reason, v, r.Samples)
				}
			}
			if !maps.Equal(got, tt.wantRej) {
				t.Errorf("ack rejections = %v, want %v", got, tt.wantRej)
			}
			if !slices.IsSorted(reasons) {
				t.Errorf("ack rejections not sorted by reason: %v", reasons)
			}
			if n, err := testutil.GatherAndCount(reg, "bureauhub_ingest_rejected_samples_total"); err != nil || n != len(tt.wantRej) {
				t.Errorf("rejected series = %d (%v), want %d", n, err, len(tt.wantRej))
			}
		})
	}
}

func TestAdmitAcceptedSeriesRows(t *testing.T) {
	s, _ := newTestService(t, Config{})
	now := time.Now().UnixMilli()
	wr := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{ser(lbls("__name__", "up", "job", "x"), now)}}
	b := &fpb.Batch{Seq: 1, Encoding: fpb.Encoding_ENCODING_SNAPPY_PROMPB, Payload: encodeWriteRequest(t, wr), Samples: 1}
	it, _, err := s.admit(context.Background(), "t", b)
	if err != nil || it == nil {
		t.Fatalf("admit: item %v, err %v", it, err)
	}
	want := clickhouse.SeriesRow{Tenant: "t", MetricName: "up", LabelNames: []string{"bureau", "job"}, LabelValues: []string{"t", "x"},
		Fingerprint: fp("__name__", "up", "bureau", "t", "job", "x")}
	if len(it.series) != 1 {
		t.Fatalf("series rows = %+v, want 1", it.series)
	}
	got := it.series[0]
	if got.Tenant != want.Tenant || got.MetricName != want.MetricName || got.Fingerprint != want.Fingerprint ||
		!slices.Equal(got.LabelNames, want.LabelNames) || !slices.Equal(got.LabelValues, want.LabelValues) {
		t.Errorf("series row = %+v, want %+v", got, want)
	}
	if h, m, sec := got.Date.Clock(); h != 0 || m != 0 || sec != 0 || got.Date.Location() != time.UTC {
		t.Errorf("series row date %v is not UTC midnight", got.Date)
	}
}

func TestConvertSeriesRowsDatedBySampleDay(t *testing.T) {
	s, _ := newTestService(t, smallLimits())
	now := time.Date(2025, 6, 2, 0, 30, 0, 0, time.UTC)
	yesterday := time.Date(2025, 6, 1, 23, 50, 0, 0, time.UTC).UnixMilli()
	today := time.Date(2025, 6, 2, 0, 20, 0, 0, time.UTC).UnixMilli()
	steps := []struct {
		name  string
		ts    []int64
		dates []time.Time
	}{
		{name: "samples either side of midnight", ts: []int64{yesterday, today},
			dates: []time.Time{time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC)}},
		{name: "today again", ts: []int64{today + 1}, dates: nil},
	}
	for _, st := range steps {
		it, rej := convertOnce(t, s, "t", now, ser(lbls("__name__", "up"), st.ts...))
		if it.samples != len(st.ts) || len(rej) != 0 {
			t.Fatalf("%s: accepted %d, rejections %v", st.name, it.samples, rej)
		}
		var got []time.Time
		for _, r := range it.series {
			got = append(got, r.Date)
		}
		if !slices.EqualFunc(got, st.dates, time.Time.Equal) {
			t.Errorf("%s: series row dates = %v, want %v", st.name, got, st.dates)
		}
	}
}

// checkLabels runs checkWire on prompb labels, sorting them in place as
// the tables here expect.
func (c *Config) checkLabels(ls []prompb.Label) string {
	slices.SortFunc(ls, func(a, b prompb.Label) int { return strings.Compare(a.Name, b.Name) })
	w := make([]wireLabel, len(ls))
	for i, l := range ls {
		w[i] = wireLabel{l.Name, l.Value}
	}
	return c.checkWire(w)
}

// TestNormalize checks the stored label set: sorted by name, empty values
// dropped, and the tenant label present once with the tenant's value,
// whatever the sender put there and in whatever order it sent the labels.
func TestNormalize(t *testing.T) {
	l := func(kv ...string) []wireLabel {
		var out []wireLabel
		for i := 0; i < len(kv); i += 2 {
			out = append(out, wireLabel{kv[i], kv[i+1]})
		}
		return out
	}
	want := l("__name__", "up", "bureau", "consular", "instance", "a:1", "job", "node")
	for _, tc := range []struct {
		name string
		in   []wireLabel
	}{
		{"sorted, no tenant label", l("__name__", "up", "instance", "a:1", "job", "node")},
		{"sorted, tenant label of another tenant", l("__name__", "up", "bureau", "health", "instance", "a:1", "job", "node")},
		{"sorted, empty tenant label", l("__name__", "up", "bureau", "", "instance", "a:1", "job", "node")},
		{"unsorted, tenant label last", l("job", "node", "instance", "a:1", "__name__", "up", "bureau", "health")},
		{"unsorted, no tenant label", l("job", "node", "__name__", "up", "instance", "a:1")},
		{"empty values dropped", l("__name__", "up", "az", "", "instance", "a:1", "job", "node", "zone", "")},
		{"every name after the tenant label", l("instance", "a:1", "job", "node", "__name__", "up")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := l("x", "y")
			got := normalize(prefix, tc.in, "consular")
			if !slices.Equal(got[:1], prefix) || !slices.Equal(got[1:], want) {
				t.Fatalf("normalize(%v) = %v, want %v after the prefix", tc.in, got[1:], want)
			}
		})
	}
	// Only the tenant label, or none at all.
	if got := normalize(nil, l("bureau", "x"), "consular"); !slices.Equal(got, l("bureau", "consular")) {
		t.Fatalf("got %v", got)
	}
	if got := normalize(nil, nil, "consular"); !slices.Equal(got, l("bureau", "consular")) {
		t.Fatalf("got %v", got)
	}
}
