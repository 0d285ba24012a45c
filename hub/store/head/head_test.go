package head

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/teststorage"

	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

type testHead struct {
	*Head
	reg *prometheus.Registry
	now time.Time
}

func newTestHead(t testing.TB, cfg Config, tenants ...string) *testHead {
	t.Helper()
	cfg.SetDefaults()
	if err := cfg.Validate("query.head"); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	h, err := New(cfg, tenants, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	th := &testHead{Head: h, reg: reg, now: t0}
	h.now = func() time.Time { return th.now }
	if err := h.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return th
}

// refill refills from src (every tenant reads the same store).
func (h *testHead) refill(t testing.TB, src storage.Queryable) {
	t.Helper()
	if err := h.Refill(context.Background(), func(string) storage.Queryable { return src }); err != nil {
		t.Fatal(err)
	}
}

func emptySource(t testing.TB) storage.Queryable { return teststorage.New(t) }

type sample struct {
	t int64
	v float64
}

// block is what ingestion hands the head: the series' rows and samples.
func block(tenant string, ls labels.Labels, withRow bool, ss ...sample) *clickhouse.Block {
	var b clickhouse.Block
	fp := clickhouse.Fingerprint(ls)
	if withRow {
		row := clickhouse.SeriesRow{Tenant: tenant, Fingerprint: fp, MetricName: ls.Get(labels.MetricName)}
		ls.Range(func(l labels.Label) {
			if l.Name != labels.MetricName {
				row.LabelNames, row.LabelValues = append(row.LabelNames, l.Name), append(row.LabelValues, l.Value)
			}
		})
		b.Series = append(b.Series, row)
	}
	for _, s := range ss {
		b.Tenants = append(b.Tenants, tenant)
		b.Fingerprints = append(b.Fingerprints, fp)
		b.Timestamps = append(b.Timestamps, s.t)
		b.Values = append(b.Values, s.v)
	}
	return &b
}

func ms(d time.Duration) int64 { return t0.Add(d).UnixMilli() }

// read returns what the head answers for scope over [mint, maxt], by
// series, or false when it does not hold the range.
func (h *testHead) read(t *testing.T, scope clickhouse.Scope, mint, maxt int64) (map[string][]sample, bool) {
	t.Helper()
	q, ok := h.Querier(scope, mint, maxt)
	if !ok {
		return nil, false
	}
	defer q.Close()
	set := q.Select(context.Background(), true, &storage.SelectHints{Start: mint, End: maxt}, labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+"))
	out := map[string][]sample{}
	var it chunkenc.Iterator
	for set.Next() {
		s := set.At()
		it = s.Iterator(it)
		for it.Next() == chunkenc.ValFloat {
			ts, v := it.At()
			out[s.Labels().String()] = append(out[s.Labels().String()], sample{ts, v})
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	return out, true
}

func reads(t *testing.T, h *testHead, source, reason string) float64 {
	t.Helper()
	return testutil.ToFloat64(h.m.reads.WithLabelValues(source, reason))
}

var (
	reqs  = labels.FromStrings("__name__", "http_requests_total", "bureau", "consular", "instance", "vm-1")
	queue = labels.FromStrings("__name__", "queue_depth", "bureau", "health", "instance", "vm-9")
)

// TestCoverage: the head answers a range only once refilled, within its
// window, for tenants it knows, and never over a sample it could not take.
func TestCoverage(t *testing.T) {
	h := newTestHead(t, Config{Window: time.Hour}, "consular", "health")
	consular := clickhouse.Scope{Tenants: []string{"consular"}}
	h.Append(block("consular", reqs, true, sample{ms(-time.Minute), 1}, sample{ms(0), 2}))
	if _, ok := h.read(t, consular, ms(-10*time.Minute), ms(0)); ok {
		t.Fatal("the head answered before it was refilled")
	}
	if got := reads(t, h, "clickhouse", "not_ready"); got != 1 {
		t.Errorf("reads{clickhouse, not_ready} = %v, want 1", got)
	}
	h.refill(t, emptySource(t))

	for _, tc := range []struct {
		name       string
		scope      clickhouse.Scope
		mint, maxt int64
		want       bool
		reason     string
	}{
		{"in the window", consular, ms(-10 * time.Minute), ms(0), true, ""},
		{"the whole window", consular, ms(-time.Hour), ms(time.Minute), true, ""},
		{"before the window", consular, ms(-time.Hour - time.Millisecond), ms(0), false, "before_window"},
		{"every tenant", clickhouse.Scope{All: true}, ms(-10 * time.Minute), ms(0), true, ""},
		{"unknown tenant", clickhouse.Scope{Tenants: []string{"consular", "nope"}}, ms(-10 * time.Minute), ms(0), false, "unknown_tenant"},
		{"no tenant", clickhouse.Scope{}, ms(-10 * time.Minute), ms(0), false, "no_tenant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := h.Holds(tc.scope, tc.mint, tc.maxt); got != tc.want {
				t.Errorf("Holds = %v, want %v", got, tc.want)
			}
			if !tc.want {
				before := reads(t, h, "clickhouse", tc.reason)
				if _, ok := h.read(t, tc.scope, tc.mint, tc.maxt); ok {
					t.Fatal("Querier answered")
				}
				if got := reads(t, h, "clickhouse", tc.reason); got != before+1 {
					t.Errorf("reads{clickhouse, %s} did not count it", tc.reason)
				}
			}
		})
	}
	got, _ := h.read(t, consular, ms(-10*time.Minute), ms(0))
	if s := got[reqs.String()]; len(s) != 2 || s[0] != (sample{ms(-time.Minute), 1}) || s[1] != (sample{ms(0), 2}) {
		t.Errorf("consular's samples: %v", got)
	}

	// Coverage moves with the clock.
	h.now = t0.Add(30 * time.Minute)
	if h.Holds(consular, ms(-40*time.Minute), ms(0)) {
		t.Error("the head answers for a range older than its window")
	}
	if !h.Holds(consular, ms(-30*time.Minute), ms(0)) {
		t.Error("the head declines a range in its window")
	}
}

// TestHoles: samples the head cannot take make it decline every read
// over them, and only those.
func TestHoles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		append func(h *testHead)
		hole   int64
		reason string
	}{
		{"a second value for a timestamp", func(h *testHead) {
			h.Append(block("consular", reqs, true, sample{ms(-2 * time.Minute), 1}))
			h.Append(block("consular", reqs, false, sample{ms(-2 * time.Minute), 5}))
		}, ms(-2 * time.Minute), "duplicate"},
		{"a series whose labels it never saw", func(h *testHead) {
			h.Append(block("consular", reqs, false, sample{ms(-2 * time.Minute), 1}))
		}, ms(-2 * time.Minute), "unknown_series"},
		{"older than the window", func(h *testHead) {
			h.Append(block("consular", reqs, true, sample{ms(0), 1}))
			h.Append(block("consular", reqs, false, sample{ms(-3 * time.Hour), 1}))
		}, ms(-3 * time.Hour), "before_window"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHead(t, Config{Window: time.Hour}, "consular")
			h.refill(t, emptySource(t))
			tc.append(h)
			if got := testutil.ToFloat64(h.m.failures.WithLabelValues(tc.reason)); got != 1 {
				t.Errorf("failures{%s} = %v, want 1", tc.reason, got)
			}
			consular := clickhouse.Scope{Tenants: []string{"consular"}}
			if h.outsideWindow(tc.hole) {
				return // reads there go to ClickHouse anyway
			}
			if h.Holds(consular, tc.hole, tc.hole+time.Minute.Milliseconds()) {
				t.Error("the head answers over its hole")
			}
			if h.Holds(consular, tc.hole-time.Minute.Milliseconds(), tc.hole-1) != (tc.hole-time.Minute.Milliseconds() >= ms(-time.Hour)) {
				t.Error("the head declines a read before its hole")
			}
			if !h.Holds(consular, tc.hole+1, ms(0)) {
				t.Error("the head declines a read after its hole")
			}
		})
	}
}

// TestOldSamplesLeaveNoHole: a sample older than the window (an agent's
// backlog) is not appended and does not stretch a later hole over the
// window.
func TestOldSamplesLeaveNoHole(t *testing.T) {
	h := newTestHead(t, Config{Window: time.Hour}, "consular")
	h.refill(t, emptySource(t))
	consular := clickhouse.Scope{Tenants: []string{"consular"}}
	h.Append(block("consular", reqs, true, sample{ms(-time.Minute), 1}, sample{ms(0), 2}))
	h.Append(block("consular", reqs, false, sample{ms(-3 * time.Hour), 0}))
	h.Append(block("consular", reqs, false, sample{ms(0), 3})) // a hole at 0
	if got := testutil.ToFloat64(h.m.failures.WithLabelValues("before_window")); got != 1 {
		t.Errorf("failures{before_window} = %v, want 1", got)
	}
	if !h.Holds(consular, ms(-time.Hour), ms(-time.Minute)) {
		t.Error("the head declines a read before its hole: the old sample stretched it")
	}
	if h.Holds(consular, ms(-time.Minute), ms(0)) {
		t.Error("the head answers over its hole")
	}
}

// TestLargeBlocks: a block of two tenants' interleaved samples, larger
// than commitSamples for each, is appended whole, each sample once.
func TestLargeBlocks(t *testing.T) {
	h := newTestHead(t, Config{Window: time.Hour}, "consular", "health")
	h.refill(t, emptySource(t))
	const series, rounds = 1000, 120 // 120k samples per tenant
	var b clickhouse.Block
	for r := range rounds {
		for i := range series {
			for _, tenant := range []string{"consular", "health"} {
				ls := labels.FromStrings("__name__", "up", "bureau", tenant, "instance", fmt.Sprint(i))
				one := block(tenant, ls, r == 0, sample{ms(time.Duration(r-rounds)*15*time.Second + time.Minute), float64(r)})
				b.Series = append(b.Series, one.Series...)
				b.Tenants, b.Fingerprints = append(b.Tenants, one.Tenants...), append(b.Fingerprints, one.Fingerprints...)
				b.Timestamps, b.Values = append(b.Timestamps, one.Timestamps...), append(b.Values, one.Values...)
			}
		}
	}
	h.Append(&b)
	if got := testutil.ToFloat64(h.m.appended); got != 2*series*rounds {
		t.Errorf("appended %v samples, want %d", got, 2*series*rounds)
	}
	got, ok := h.read(t, clickhouse.Scope{All: true}, ms(-time.Hour), ms(time.Minute))
	if !ok {
		t.Fatal("the head declines after appending")
	}
	n := 0
	for _, ss := range got {
		n += len(ss)
	}
	if len(got) != 2*series || n != 2*series*rounds {
		t.Errorf("read %d series and %d samples, want %d and %d", len(got), n, 2*series, 2*series*rounds)
	}
}

// outsideWindow reports whether ts is older than the head's window.
func (h *testHead) outsideWindow(ts int64) bool {
	return ts < h.now.Add(-h.cfg.Window).UnixMilli()
}

// TestRefill: the head holds what the store held from the window's start,
// and what was appended while it refilled, each sample once.
func TestRefill(t *testing.T) {
	// Blocks stored during the refill are held back and appended after it;
	// beyond max_held_samples they are appended at once, and the answer is
	// the same.
	for _, tc := range []struct {
		maxHeld int
		unheld  float64
	}{{0, 0}, {1, 2}} {
		name := fmt.Sprintf("max_held_samples=%d", tc.maxHeld)
		if tc.maxHeld == 0 {
			name = "max_held_samples default"
		}
		t.Run(name, func(t *testing.T) { testRefill(t, tc.maxHeld, tc.unheld) })
	}
}

func testRefill(t *testing.T, maxHeld int, unheld float64) {
	src := teststorage.New(t)
	app := src.Appender(context.Background())
	var want []sample
	for d := -2 * time.Hour; d <= 0; d += 15 * time.Second {
		if _, err := app.Append(0, reqs, ms(d), float64(d/time.Second)); err != nil {
			t.Fatal(err)
		}
		if d >= -time.Hour {
			want = append(want, sample{ms(d), float64(d / time.Second)})
		}
	}
	if _, err := app.Append(0, queue, ms(-time.Minute), 7); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	h := newTestHead(t, Config{Window: time.Hour, MaxHeldSamples: maxHeld}, "consular")
	// Stored and appended before the refill reads it: newer samples, and
	// one the store also holds.
	h.Append(block("consular", reqs, true, sample{ms(0), 0}, sample{ms(15 * time.Second), 15}))
	h.refill(t, src)
	if got := testutil.ToFloat64(h.m.unheld); got != unheld {
		t.Errorf("unheld_samples_total = %v, want %v", got, unheld)
	}
	want = append(want, sample{ms(15 * time.Second), 15})

	got, ok := h.read(t, clickhouse.Scope{All: true}, ms(-time.Hour), ms(time.Minute))
	if !ok {
		t.Fatal("the head declined after its refill")
	}
	if s := got[reqs.String()]; len(s) != len(want) {
		t.Errorf("%d samples, want %d", len(s), len(want))
	} else {
		for i := range want {
			if s[i] != want[i] {
				t.Fatalf("sample %d: %v, want %v", i, s[i], want[i])
			}
		}
	}
	if s := got[queue.String()]; len(s) != 1 || s[0] != (sample{ms(-time.Minute), 7}) {
		t.Errorf("queue_depth: %v", s)
	}
	// 241 of http_requests_total (the last also appended before) and 1.
	if n := testutil.ToFloat64(h.m.refilled); n != 242 {
		t.Errorf("refilled %v samples, want 242", n)
	}
	// Later appends go on from the refilled samples.
	h.Append(block("consular", queue, false, sample{ms(30 * time.Second), 8}))
	got, _ = h.read(t, clickhouse.Scope{All: true}, ms(0), ms(time.Minute))
	if s := got[queue.String()]; len(s) != 1 || s[0].v != 8 {
		t.Errorf("queue_depth after an append: %v", s)
	}
}

// TestMaxSeries: a tenant over its series bound is read from ClickHouse.
func TestMaxSeries(t *testing.T) {
	h := newTestHead(t, Config{Window: time.Hour, MaxSeries: 1}, "consular", "health")
	h.refill(t, emptySource(t))
	h.Append(block("consular", reqs, true, sample{ms(0), 1}))
	h.Append(block("health", queue, true, sample{ms(0), 1}))
	if !h.Holds(clickhouse.Scope{All: true}, ms(-time.Minute), ms(0)) {
		t.Fatal("declined under the bound")
	}
	h.Append(block("consular", queue, true, sample{ms(0), 1}))
	if h.Holds(clickhouse.Scope{Tenants: []string{"consular"}}, ms(-time.Minute), ms(0)) {
		t.Error("answers for a tenant over max_series")
	}
	if !h.Holds(clickhouse.Scope{Tenants: []string{"health"}}, ms(-time.Minute), ms(0)) {
		t.Error("declines for a tenant under max_series")
	}
	if got := testutil.ToFloat64(h.m.full); got != 1 {
		t.Errorf("tenants_over_max_series_total = %v", got)
	}
}

// TestForgetIdle: labels of series idle for two days are forgotten; one
// that comes back without them leaves a hole rather than a wrong answer.
func TestForgetIdle(t *testing.T) {
	h := newTestHead(t, Config{Window: time.Hour}, "consular")
	h.refill(t, emptySource(t))
	// queue_depth stays busy; its samples come before http_requests_total's
	// in the blocks, which the head remembers (fpchain).
	both := func(withRow bool, ts int64, v float64) *clickhouse.Block {
		b := block("consular", queue, withRow, sample{ts, v})
		r := block("consular", reqs, withRow, sample{ts, v})
		b.Series = append(b.Series, r.Series...)
		b.Tenants, b.Fingerprints = append(b.Tenants, r.Tenants...), append(b.Fingerprints, r.Fingerprints...)
		b.Timestamps, b.Values = append(b.Timestamps, r.Timestamps...), append(b.Values, r.Values...)
		return b
	}
	h.Append(both(true, ms(0), 1))
	h.now = t0.Add(idleSeries / 2)
	h.Append(block("consular", queue, false, sample{h.now.UnixMilli(), 2}))
	h.now = t0.Add(idleSeries + time.Minute)
	h.forgetIdle()
	h.Append(both(false, h.now.UnixMilli(), 3))
	if got := testutil.ToFloat64(h.m.failures.WithLabelValues("unknown_series")); got != 1 {
		t.Errorf("failures{unknown_series} = %v, want 1", got)
	}
	if h.Holds(clickhouse.Scope{All: true}, h.now.Add(-time.Minute).UnixMilli(), h.now.UnixMilli()) {
		t.Error("answers over a sample it could not append")
	}
}

func TestCloseRemovesItsTemporaryDirectory(t *testing.T) {
	cfg := Config{}
	cfg.SetDefaults()
	h, err := New(cfg, []string{"consular"}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Open(); err != nil {
		t.Fatal(err)
	}
	dir := h.dir
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still there after Close: %v", dir, err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Window: time.Minute}, "query.head.window"},
		{Config{MaxSeries: -1}, "query.head.max_series"},
		{Config{MaxHeldSamples: -1}, "query.head.max_held_samples"},
		{Config{Disabled: true, Window: time.Minute}, ""},
	} {
		tc.cfg.SetDefaults()
		err := tc.cfg.Validate("query.head")
		if (err == nil) != (tc.want == "") || (err != nil && !strings.HasPrefix(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
