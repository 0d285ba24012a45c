package query

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/teststorage"
)

// TestSplitEngineBuiltin runs Prometheus's own PromQL test files through
// a SplitEngine that splits every range query of four steps or more into
// up to three parts: every range evaluation in them must give what the
// whole query gives.
func TestSplitEngineBuiltin(t *testing.T) {
	ng := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	promqltest.RunBuiltinTests(t, &SplitEngine{Engine: ng, Parts: 3, MinSteps: 2})
}

// TestSplitEngineSharedBuiltin runs them again over a store whose series
// the parts share (see sharedReads).
func TestSplitEngineSharedBuiltin(t *testing.T) {
	ng := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	promqltest.RunBuiltinTestsWithStorage(t, &SplitEngine{Engine: ng, Parts: 3, MinSteps: 2}, func(t testing.TB) storage.Storage {
		return &memStorage{Storage: teststorage.New(t, func(opt *tsdb.Options) {
			// As promqltest.RunBuiltinTests has it.
			opt.EnableSTStorage = true
			opt.FloatChunkEncoding = chunkenc.EncXOR2
			opt.EnableHistogramSTEncoding = true
		})}
	})
}

// memStorage reads every selected series whole into memory, as the
// ClickHouse store does, so that its series may be iterated at once from
// several goroutines; it counts Selects.
type memStorage struct {
	storage.Storage
	selects atomic.Int64
}

func (m *memStorage) ConcurrentSeries(context.Context, int64, int64) (func(context.Context) context.Context, bool) {
	return func(ctx context.Context) context.Context { return ctx }, true
}

func (m *memStorage) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := m.Storage.Querier(mint, maxt)
	return &memQuerier{Querier: q, m: m}, err
}

type memQuerier struct {
	storage.Querier
	m *memStorage
}

func (q *memQuerier) Select(ctx context.Context, sorted bool, h *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	q.m.selects.Add(1)
	set := q.Querier.Select(ctx, sorted, h, ms...)
	var out []storage.Series
	var it chunkenc.Iterator
	for set.Next() {
		it = set.At().Iterator(it)
		samples, err := storage.ExpandSamplesWithoutReplacingNaNs(it, nil)
		if err != nil {
			return storage.ErrSeriesSet(err)
		}
		out = append(out, memSeries{lset: set.At().Labels(), samples: samples})
	}
	if set.Err() != nil {
		return storage.ErrSeriesSet(set.Err())
	}
	return &seriesList{series: out, warns: set.Warnings(), i: -1}
}

type memSeries struct {
	lset    labels.Labels
	samples []chunks.Sample
}

func (s memSeries) Labels() labels.Labels { return s.lset }

// Iterator hands each caller copies of the histograms, which the engine
// may change.
func (s memSeries) Iterator(chunkenc.Iterator) chunkenc.Iterator {
	own := make([]chunks.Sample, len(s.samples))
	for i, x := range s.samples {
		own[i] = x.Copy()
	}
	return storage.NewListSeriesIterator(samples(own))
}

type samples []chunks.Sample

func (s samples) Get(i int) chunks.Sample { return s[i] }
func (s samples) Len() int                { return len(s) }

// TestSplitEngineSharesReads: over a store with ConcurrentSeries the parts
// read each selector once between them, over the whole query's range.
func TestSplitEngineSharesReads(t *testing.T) {
	base := promqltest.LoadedStorage(t, splitData)
	ng := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	e := &SplitEngine{Engine: ng, Parts: 4, MinSteps: 2}
	const qs = `sum(rate(http_requests_total[1m])) / sum(rate(http_requests_total[5m] offset 1m))`
	shared := &memStorage{Storage: base}
	unshared := &countingStorage{Storage: base}
	start, end := time.Unix(0, 0), time.Unix(6000, 0)
	want := rangeQuery(t, ng, base, qs, start, end, 15*time.Second)
	for _, c := range []struct {
		name    string
		q       storage.Queryable
		selects *atomic.Int64
		want    int64
	}{
		{"shared", shared, &shared.selects, 2},
		{"not shared", unshared, &unshared.selects, 8},
	} {
		q, err := e.NewRangeQuery(context.Background(), c.q, nil, qs, start, end, 15*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		res := q.Exec(context.Background())
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if d := matrixDiff(res.Value.(promql.Matrix), want); d != "" {
			t.Errorf("%s: %s", c.name, d)
		}
		if n := c.selects.Load(); n != c.want {
			t.Errorf("%s: %d Selects, want %d", c.name, n, c.want)
		}
		q.Close()
	}
}

// countingStorage counts Selects and shares nothing.
type countingStorage struct {
	storage.Storage
	selects atomic.Int64
}

func (c *countingStorage) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := c.Storage.Querier(mint, maxt)
	return countingQuerier{Querier: q, n: &c.selects}, err
}

type countingQuerier struct {
	storage.Querier
	n *atomic.Int64
}

func (q countingQuerier) Select(ctx context.Context, sorted bool, h *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	q.n.Add(1)
	return q.Querier.Select(ctx, sorted, h, ms...)
}

const splitData = `
load 15s
	http_requests_total{job="booking",instance="a"} 0+10x200 0+3x200
	http_requests_total{job="booking",instance="b"} 0+7x400
	http_requests_total{job="scan",instance="c"}    _x100 0+1x300
	cpu{instance="a"} 1 2 3 _ _ _ 4 5 6 stale 7 8 9
	cpu{instance="b"} 10+1x150
`

// TestSplitEngineJoins compares split and whole answers, point by point,
// for queries whose series start, stop and restart across the parts.
func TestSplitEngineJoins(t *testing.T) {
	st := promqltest.LoadedStorage(t, splitData)
	ng := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	queries := []string{
		`http_requests_total`,
		`rate(http_requests_total[1m])`,
		`sum by (job) (rate(http_requests_total[5m]))`,
		`topk(1, rate(http_requests_total[2m]))`,
		`cpu`,
		`absent(cpu{instance="a"})`,
		`max_over_time(rate(http_requests_total[1m])[5m:30s])`,
		`rate(http_requests_total[1m] offset 10m)`,
		`timestamp(cpu)`,
		`time()`,
		`cpu @ 100`,
	}
	ctx := context.Background()
	start, end := time.Unix(0, 0), time.Unix(6000, 0)
	for _, step := range []time.Duration{15 * time.Second, 7 * time.Second, time.Minute} {
		for _, parts := range []int{2, 3, 7} {
			split := &SplitEngine{Engine: ng, Parts: parts, MinSteps: 2}
			for _, qs := range queries {
				want := rangeQuery(t, ng, st, qs, start, end, step)
				sq, err := split.NewRangeQuery(ctx, st, nil, qs, start, end, step)
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := sq.(*splitQuery); !ok {
					t.Fatalf("%s, step %v, %d parts: not split", qs, step, parts)
				}
				res := sq.Exec(ctx)
				if res.Err != nil {
					t.Fatalf("%s, step %v, %d parts: %v", qs, step, parts, res.Err)
				}
				if d := matrixDiff(res.Value.(promql.Matrix), want); d != "" {
					t.Errorf("%s, step %v, %d parts: %s", qs, step, parts, d)
				}
				if s := sq.Stats(); s.Samples == nil || s.Samples.TotalSamples == 0 && strings.Contains(qs, "http") {
					t.Errorf("%s: split query's stats count no samples", qs)
				}
				sq.Close()
			}
		}
	}
}

// matrixDiff describes the first difference between the split answer and
// the whole one, or returns "".
func matrixDiff(split, whole promql.Matrix) string {
	if len(split) != len(whole) {
		return fmt.Sprintf("%d series, whole %d", len(split), len(whole))
	}
	for i := range split {
		s, w := split[i], whole[i]
		if !labels.Equal(s.Metric, w.Metric) {
			return fmt.Sprintf("series %d is %s, whole %s", i, s.Metric, w.Metric)
		}
		if len(s.Floats) != len(w.Floats) || len(s.Histograms) != len(w.Histograms) {
			return fmt.Sprintf("%s: %d points, whole %d", s.Metric, len(s.Floats)+len(s.Histograms), len(w.Floats)+len(w.Histograms))
		}
		for j := range s.Floats {
			if s.Floats[j] != w.Floats[j] && !(math.IsNaN(s.Floats[j].F) && math.IsNaN(w.Floats[j].F) && s.Floats[j].T == w.Floats[j].T) {
				return fmt.Sprintf("%s: point %d is %v, whole %v", s.Metric, j, s.Floats[j], w.Floats[j])
			}
		}
	}
	return ""
}

func rangeQuery(t *testing.T, ng *promql.Engine, q storage.Queryable, qs string, start, end time.Time, step time.Duration) promql.Matrix {
	t.Helper()
	qry, err := ng.NewRangeQuery(context.Background(), q, nil, qs, start, end, step)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(qry.Close)
	res := qry.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("%s: %v", qs, res.Err)
	}
	return res.Value.(promql.Matrix)
}

// TestSplitEngineWhole checks what is never split.
func TestSplitEngineWhole(t *testing.T) {
	st := promqltest.LoadedStorage(t, splitData)
	ng := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	e := &SplitEngine{Engine: ng, Parts: 4, MinSteps: 10}
	start := time.Unix(0, 0)
	for _, c := range []struct {
		qs    string
		end   time.Duration
		split bool
	}{
		{`cpu`, 39 * 15 * time.Second, true},  // 40 steps: 4 parts of 10
		{`cpu`, 19 * 15 * time.Second, true},  // 20 steps: 2 parts of 10
		{`cpu`, 18 * 15 * time.Second, false}, // 19 steps: fewer than two parts of 10
		{`rate(cpu[1m] @ start())`, 3000 * time.Second, false},
		{`max_over_time(cpu[1m:15s] @ end())`, 3000 * time.Second, false},
		{`rate(cpu[1m] @ 60)`, 3000 * time.Second, true},
		{`sum(`, 3000 * time.Second, false}, // the engine reports the error
	} {
		q, err := e.NewRangeQuery(context.Background(), st, nil, c.qs, start, start.Add(c.end), 15*time.Second)
		if c.qs == `sum(` {
			if err == nil {
				t.Errorf("%s: no parse error", c.qs)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		_, split := q.(*splitQuery)
		if split != c.split {
			t.Errorf("%s over %v: split %v, want %v", c.qs, c.end, split, c.split)
		}
		q.Close()
	}
	// With experimental functions and duration expressions, what names the
	// query's range is not split either (range() would be each part's).
	popts := parser.Options{EnableExperimentalFunctions: true, ExperimentalDurationExpr: true}
	xng := promqltest.NewTestEngineWithOpts(t, promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute,
		EnableAtModifier: true, Parser: parser.NewParser(popts)})
	xe := &SplitEngine{Engine: xng, Parts: 4, MinSteps: 10, Parser: parser.NewParser(popts)}
	for qs, split := range map[string]bool{
		`cpu * range()`:                 false,
		`cpu > start()`:                 false,
		`timestamp(cpu) < end()`:        false,
		`rate(cpu[range()])`:            false,
		`rate(cpu[1m] offset (1m+1m))`:  false,
		`max_over_time(cpu[1m:step()])`: false,
		`sgn(cpu)`:                      true,
	} {
		q, err := xe.NewRangeQuery(context.Background(), st, nil, qs, start, start.Add(time.Hour), 15*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", qs, err)
		}
		if _, s := q.(*splitQuery); s != split {
			t.Errorf("%s: split %v, want %v", qs, s, split)
		}
		q.Close()
	}
	// Per-step statistics are never split.
	q, err := e.NewRangeQuery(context.Background(), st, promql.NewPrometheusQueryOpts(true, 0), `cpu`, start, start.Add(time.Hour), 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, split := q.(*splitQuery); split {
		t.Error("a query with per-step statistics was split")
	}
	q.Close()
}

// failAfter fails every Select that reaches past a time.
type failAfter struct {
	storage.Queryable
	t int64
}

var errStore = errors.New("store unavailable")

func (f failAfter) Querier(mint, maxt int64) (storage.Querier, error) {
	q, err := f.Queryable.Querier(mint, maxt)
	return failingQuerier{Querier: q, t: f.t}, err
}

type failingQuerier struct {
	storage.Querier
	t int64
}

// Select fails past f.t; before it, it waits until the query is
// cancelled, so that the parts before the failing one always end with the
// cancellation.
func (f failingQuerier) Select(ctx context.Context, sorted bool, h *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	if h != nil && h.End > f.t {
		return storage.ErrSeriesSet(errStore)
	}
	<-ctx.Done()
	return storage.ErrSeriesSet(ctx.Err())
}

// TestSplitEngineError: a failing part fails the query with its own
// error, not the cancellation the other parts then see.
func TestSplitEngineError(t *testing.T) {
	st := promqltest.LoadedStorage(t, splitData)
	ng := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	e := &SplitEngine{Engine: ng, Parts: 3, MinSteps: 2}
	q, err := e.NewRangeQuery(context.Background(), failAfter{Queryable: st, t: 4000_000}, nil,
		`sum(rate(http_requests_total[1m]))`, time.Unix(0, 0), time.Unix(6000, 0), 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	res := q.Exec(context.Background())
	if !errors.Is(res.Err, errStore) {
		t.Fatalf("error %v, want %v", res.Err, errStore)
	}
}
