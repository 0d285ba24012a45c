package query

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/prometheus/prometheus/util/stats"
)

// SplitEngine evaluates a range query as consecutive runs of its steps,
// each a range query of its own through the same promql engine, run at
// once, and joins their answers: Prometheus's engine evaluates one query
// on one core, and a hub has more. This is what the query frontends of
// Thanos and Cortex do when they split by interval. PromQL's value at a
// step depends on that step's timestamp and the data, never on the other
// steps, so the joined answer is the one the whole query would give; the
// exceptions, which are never split, are what names the query's own start,
// end or range (@ start(), @ end(), and experimental functions and
// duration expressions; see dependsOnRange) and queries that ask for
// per-step statistics.
//
// When the store's series may be iterated by several goroutines at once
// (ConcurrentSeries), the parts share their reads: the first part to
// select a set of series reads them over the whole query's range, once,
// and every part evaluates over that read (see sharedReads), so the
// store's work and its limits (series, samples) are those of the whole
// query. Otherwise each part reads its own range: the data the parts
// share (the lookback and range windows before each part's first step)
// is read more than once, and a store limit applies to each part's reads
// as it does to each Select.
type SplitEngine struct {
	Engine *promql.Engine
	// Parts is how many parts a range query is split into at most; 1 or
	// less never splits.
	Parts int
	// MinSteps is the fewest steps a part has (at least 2): a query with
	// fewer than twice as many is not split.
	MinSteps int
	// Parser parses queries to look for what depends on the query's
	// range (see dependsOnRange). It must accept what the engine's parser
	// accepts; nil is the default parser, as the engine's default.
	Parser parser.Parser
}

var _ promql.QueryEngine = (*SplitEngine)(nil)

// NewInstantQuery implements promql.QueryEngine; instant queries are not
// split.
func (e *SplitEngine) NewInstantQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, ts time.Time) (promql.Query, error) {
	return e.Engine.NewInstantQuery(ctx, q, opts, qs, ts)
}

// NewRangeQuery implements promql.QueryEngine.
func (e *SplitEngine) NewRangeQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, interval time.Duration) (promql.Query, error) {
	n := e.parts(opts, qs, start, end, interval)
	if n <= 1 {
		return e.Engine.NewRangeQuery(ctx, q, opts, qs, start, end, interval)
	}
	// Steps are dealt out evenly: every part has at least MinSteps, and
	// so at least two (a part of one step would be evaluated as a range
	// query whose start is its end, which the engine treats differently:
	// it does not warn about sort, for one).
	steps := int(end.Sub(start)/interval) + 1
	sq := &splitQuery{qs: qs, start: start, end: end}
	var sh *sharedReads
	if cs, ok := q.(ConcurrentSeries); ok {
		if wrap, ok := cs.ConcurrentSeries(ctx, start.UnixMilli(), end.UnixMilli()); ok {
			sh = &sharedReads{q: q, wrap: wrap, start: start.UnixMilli(), end: end.UnixMilli(), reads: map[string]*sharedRead{}}
			sq.shared = sh
		}
	}
	first := 0
	for i := range n {
		count := steps / n
		if i < steps%n {
			count++
		}
		ps := start.Add(time.Duration(first) * interval)
		pe := start.Add(time.Duration(first+count-1) * interval)
		first += count
		pq := q
		if sh != nil {
			pq = partQueryable{sh: sh, start: ps.UnixMilli(), end: pe.UnixMilli()}
		}
		p, err := e.Engine.NewRangeQuery(ctx, pq, opts, qs, ps, pe, interval)
		if err != nil {
			sq.Close()
			return nil, err
		}
		sq.parts = append(sq.parts, p)
	}
	return sq, nil
}

// parts returns how many parts the query is split into.
func (e *SplitEngine) parts(opts promql.QueryOpts, qs string, start, end time.Time, interval time.Duration) int {
	if e.Parts <= 1 || interval <= 0 || !end.After(start) {
		return 1
	}
	if opts != nil && opts.EnablePerStepStats() {
		return 1
	}
	steps := int(end.Sub(start)/interval) + 1
	n := min(e.Parts, steps/max(e.MinSteps, 2))
	if n <= 1 {
		return 1
	}
	p := e.Parser
	if p == nil {
		p = parser.NewParser(parser.Options{})
	}
	expr, err := p.ParseExpr(qs)
	if err != nil {
		return 1 // the engine reports the error
	}
	if dependsOnRange(expr) {
		return 1
	}
	return n
}

// dependsOnRange reports whether an expression's value at a step depends
// on the query's start, end or range, which the engine folds in before
// evaluating: @ start() and @ end(), the experimental functions start(),
// end() and range(), and the experimental duration expressions (which may
// use range(); any is taken to).
func dependsOnRange(expr parser.Expr) bool {
	depends := false
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.Call:
			switch n.Func.Name {
			case "start", "end", "range":
				depends = true
			}
		case *parser.VectorSelector:
			depends = depends || n.StartOrEnd != 0 || n.OriginalOffsetExpr != nil
		case *parser.MatrixSelector:
			depends = depends || n.RangeExpr != nil
		case *parser.SubqueryExpr:
			depends = depends || n.StartOrEnd != 0 || n.RangeExpr != nil || n.OriginalOffsetExpr != nil || n.StepExpr != nil
		}
		return nil
	})
	return depends
}

// splitQuery is a range query run as parts over consecutive steps.
type splitQuery struct {
	qs         string
	start, end time.Time
	parts      []promql.Query
	shared     *sharedReads

	timers *stats.QueryTimers
	mu     sync.Mutex
	closed bool
}

func (q *splitQuery) Exec(ctx context.Context) *promql.Result {
	q.timers = stats.NewQueryTimers()
	timer := q.timers.GetTimer(stats.ExecTotalTime).Start()
	defer timer.Stop()
	evalTimer := q.timers.GetTimer(stats.EvalTotalTime).Start()
	defer evalTimer.Stop()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]*promql.Result, len(q.parts))
	var wg sync.WaitGroup
	for i, p := range q.parts {
		wg.Go(func() {
			results[i] = p.Exec(ctx)
			if results[i].Err != nil {
				cancel() // the others' answers are not needed
			}
		})
	}
	wg.Wait()
	if q.shared != nil {
		q.shared.close()
	}

	var warnings annotations.Annotations
	var firstErr error
	for _, r := range results {
		warnings.Merge(r.Warnings)
		// A part cancelled because another failed reports the
		// cancellation: report the failure that caused it.
		if r.Err != nil && (firstErr == nil || isCanceled(firstErr) && !isCanceled(r.Err)) {
			firstErr = r.Err
		}
	}
	if firstErr != nil {
		return &promql.Result{Err: firstErr, Warnings: warnings}
	}
	mats := make([]promql.Matrix, len(results))
	for i, r := range results {
		m, ok := r.Value.(promql.Matrix)
		if !ok {
			return &promql.Result{Err: errors.New("split query: a part's answer is not a matrix"), Warnings: warnings}
		}
		mats[i] = m
	}
	return &promql.Result{Value: joinMatrices(mats), Warnings: warnings}
}

func isCanceled(err error) bool {
	var ec promql.ErrQueryCanceled
	return errors.As(err, &ec) || errors.Is(err, context.Canceled)
}

// joinMatrices joins the answers of consecutive parts, each sorted by
// labels as the engine returns a range query's: a series in several parts
// gets their points in part order, in a new slice; a series in one part
// keeps that part's slices (the parts are closed only when the joined
// answer is).
func joinMatrices(mats []promql.Matrix) promql.Matrix {
	total := 0
	for _, m := range mats {
		total += len(m)
	}
	out := make(promql.Matrix, 0, total)
	idx := make([]int, len(mats))
	same := make([]promql.Series, 0, len(mats)) // the parts' series with those labels
	for {
		// The smallest label set at the parts' heads.
		var lowest labels.Labels
		found := false
		for i, m := range mats {
			if idx[i] < len(m) && (!found || labels.Compare(m[idx[i]].Metric, lowest) < 0) {
				lowest, found = m[idx[i]].Metric, true
			}
		}
		if !found {
			return out
		}
		same = same[:0]
		for i, m := range mats {
			if idx[i] < len(m) && labels.Equal(m[idx[i]].Metric, lowest) {
				same = append(same, m[idx[i]])
				idx[i]++
			}
		}
		if len(same) == 1 {
			out = append(out, same[0])
			continue
		}
		s := promql.Series{Metric: lowest, DropName: same[0].DropName}
		nf, nh := 0, 0
		for _, p := range same {
			nf += len(p.Floats)
			nh += len(p.Histograms)
		}
		if nf > 0 {
			s.Floats = make([]promql.FPoint, 0, nf)
		}
		if nh > 0 {
			s.Histograms = make([]promql.HPoint, 0, nh)
		}
		for _, p := range same {
			s.Floats = append(s.Floats, p.Floats...)
			s.Histograms = append(s.Histograms, p.Histograms...)
		}
		out = append(out, s)
	}
}

func (q *splitQuery) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.closed = true
	for _, p := range q.parts {
		p.Close()
	}
}

// Statement is the first part's, spanning the whole query's range.
func (q *splitQuery) Statement() parser.Statement {
	st := q.parts[0].Statement()
	if es, ok := st.(*parser.EvalStmt); ok {
		c := *es
		c.Start, c.End = q.start, q.end
		return &c
	}
	return st
}

// Stats times the whole query; its sample counts are the parts' summed
// (the peak too: the parts run at once).
func (q *splitQuery) Stats() *stats.Statistics {
	timers := q.timers
	if timers == nil {
		timers = stats.NewQueryTimers()
	}
	s := &stats.Statistics{Timers: timers}
	for _, p := range q.parts {
		ps := p.Stats()
		if ps == nil || ps.Samples == nil {
			continue
		}
		if s.Samples == nil {
			s.Samples = stats.NewQuerySamples(false)
		}
		s.Samples.TotalSamples += ps.Samples.TotalSamples
		s.Samples.SamplesRead += ps.Samples.SamplesRead
		s.Samples.PeakSamples += ps.Samples.PeakSamples
	}
	return s
}

func (q *splitQuery) Cancel() {
	for _, p := range q.parts {
		p.Cancel()
	}
}

func (q *splitQuery) String() string { return q.qs }

// ConcurrentSeries is implemented by a storage.Queryable whose series may
// be iterated by several goroutines at once, each with its own iterator:
// the parts of a split query share reads only from such a store.
// Prometheus's TSDB is not one (its head chunk reader caches chunks per
// querier, unlocked).
type ConcurrentSeries interface {
	// ConcurrentSeries returns wrap, which makes from a Select's context
	// one under which the series it returns are safe to share, or false
	// when the parts of a query of steps mint to maxt under ctx had
	// better read on their own (the store holds that range in memory,
	// where reads cost little and are not safe to share).
	ConcurrentSeries(ctx context.Context, mint, maxt int64) (wrap func(context.Context) context.Context, ok bool)
}

// sharedReads lets the parts of one split query share their reads. Each
// part selects what the whole query selects, over a range moved to its
// own steps; the first part to select a set of matchers with given hints
// reads it over the union of the parts' ranges, and the others take the
// same series. The engine reads only the samples each step needs, so a
// series read over a longer range gives the same answer.
type sharedReads struct {
	q          storage.Queryable
	wrap       func(context.Context) context.Context // see ConcurrentSeries
	start, end int64                                 // the whole query's first and last step, in ms

	mu       sync.Mutex
	reads    map[string]*sharedRead
	queriers []storage.Querier
}

type sharedRead struct {
	once   sync.Once
	series []storage.Series
	warns  annotations.Annotations
	err    error
}

func (sh *sharedReads) read(key string) *sharedRead {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := sh.reads[key]
	if r == nil {
		r = &sharedRead{}
		sh.reads[key] = r
	}
	return r
}

func (sh *sharedReads) querier(mint, maxt int64) (storage.Querier, error) {
	q, err := sh.q.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	sh.mu.Lock()
	sh.queriers = append(sh.queriers, q)
	sh.mu.Unlock()
	return q, nil
}

// close closes the store's queriers, once every part has run.
func (sh *sharedReads) close() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, q := range sh.queriers {
		_ = q.Close()
	}
	sh.queriers = nil
}

// partQueryable is one part's view of the store, for steps start to end.
type partQueryable struct {
	sh         *sharedReads
	start, end int64
}

func (p partQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	return &partQuerier{p: p, mint: mint, maxt: maxt}, nil
}

type partQuerier struct {
	p          partQueryable
	mint, maxt int64
}

func (q *partQuerier) Select(ctx context.Context, _ bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	// How far the whole query reaches before and after this part.
	before, after := q.p.start-q.p.sh.start, q.p.sh.end-q.p.end
	// The key: the matchers, and the hints and range relative to this
	// part's steps, which are the same in every part for a selector
	// whose range moves with the steps.
	var key strings.Builder
	fmt.Fprintf(&key, "%d %d", q.mint-q.p.start, q.maxt-q.p.end)
	var whole *storage.SelectHints
	if hints != nil {
		rel := *hints
		rel.Start, rel.End = rel.Start-q.p.start, rel.End-q.p.end
		fmt.Fprintf(&key, " %+v", rel)
		c := *hints
		c.Start, c.End = c.Start-before, c.End+after
		whole = &c
	}
	for _, m := range ms {
		key.WriteString(" " + m.String())
	}
	r := q.p.sh.read(key.String())
	r.once.Do(func() {
		qr, err := q.p.sh.querier(q.mint-before, q.maxt+after)
		if err != nil {
			r.err = err
			return
		}
		set := qr.Select(q.p.sh.wrap(ctx), true, whole, ms...)
		for set.Next() {
			r.series = append(r.series, set.At())
		}
		r.err, r.warns = set.Err(), set.Warnings()
	})
	if r.err != nil {
		return storage.ErrSeriesSet(r.err)
	}
	return &seriesList{series: r.series, warns: r.warns, i: -1}
}

// LabelValues and LabelNames are not shared (the engine does not call
// them): each reads the part's own range.
func (q *partQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	qr, err := q.p.sh.querier(q.mint, q.maxt)
	if err != nil {
		return nil, nil, err
	}
	return qr.LabelValues(ctx, name, hints, ms...)
}

func (q *partQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	qr, err := q.p.sh.querier(q.mint, q.maxt)
	if err != nil {
		return nil, nil, err
	}
	return qr.LabelNames(ctx, hints, ms...)
}

// Close leaves the store's queriers open: the split query closes them.
func (q *partQuerier) Close() error { return nil }

// seriesList is a series set over a shared read.
type seriesList struct {
	series []storage.Series
	warns  annotations.Annotations
	i      int
}

func (s *seriesList) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *seriesList) At() storage.Series                { return s.series[s.i] }
func (s *seriesList) Err() error                        { return nil }
func (s *seriesList) Warnings() annotations.Annotations { return s.warns }
