package clickhouse

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/bureauhub/bureauhub/hub/store/chunk"
)

// Scope says which tenants a query may read. The zero Scope reads nothing.
type Scope struct {
	// Tenants lists the tenants readable; ignored when All is set.
	Tenants []string
	// All reads every tenant (the data bureau's cross-bureau role).
	All bool
}

// Limits bound one query's reads. Zero means unlimited.
type Limits struct {
	MaxSeries  int
	MaxSamples int
}

// maxDateMillis is 2105-12-31, inside the range of ClickHouse's Date.
const maxDateMillis = 4291660800000

// ErrLimit is wrapped by errors for queries over their Limits.
var ErrLimit = errors.New("query limit exceeded")

// Recent holds the most recent samples in memory (package head). The store
// reads a selection from it instead of ClickHouse when it holds every
// sample of the selection's range, so an answer never depends on which
// was read.
type Recent interface {
	// Querier returns a querier over [mint, maxt] of scope's tenants, or
	// false when it does not hold every sample there. The caller closes
	// it once done with the series it returned; they must not be
	// iterated by several goroutines at once.
	Querier(scope Scope, mint, maxt int64) (storage.Querier, bool)
	// Holds reports whether Querier would return one now.
	Holds(scope Scope, mint, maxt int64) bool
}

// SetRecent makes reads of recent samples use r. Call it before queries
// run.
func (s *Store) SetRecent(r Recent) { s.recent = r }

// RecentHolds reports whether the store's Recent holds every sample of
// scope in [mint, maxt].
func (s *Store) RecentHolds(scope Scope, mint, maxt int64) bool {
	return s.recent != nil && s.recent.Holds(scope, mint, maxt)
}

type clickHouseOnlyKey struct{}

// ClickHouseOnly returns a context whose reads go to ClickHouse even
// where the store's Recent holds their samples: series that several
// goroutines iterate at once, and the refill of Recent itself.
func ClickHouseOnly(ctx context.Context) context.Context {
	return context.WithValue(ctx, clickHouseOnlyKey{}, true)
}

// Queryable returns a storage.Queryable over the tenants of scope, for
// Prometheus's promql engine and rules manager.
func (s *Store) Queryable(scope Scope, limits Limits) storage.Queryable {
	return queryable{s: s, scope: scope, limits: limits}
}

type queryable struct {
	s      *Store
	scope  Scope
	limits Limits
}

var _ storage.Queryable = queryable{}

func (q queryable) Querier(mint, maxt int64) (storage.Querier, error) {
	return &querier{s: q.s, scope: q.scope, limits: q.limits, mint: mint, maxt: maxt}, nil
}

// querier reads series and samples of one time range. Matchers are pushed
// down to SQL on the series table and re-checked in Go with Prometheus's own
// matcher, so the result has Prometheus's exact semantics even where
// ClickHouse's regular expressions differ.
type querier struct {
	s          *Store
	scope      Scope
	limits     Limits
	mint, maxt int64

	mu     sync.Mutex
	recent []storage.Querier // Recent's queriers, closed with this one
}

// where builds the series-table condition for tenants, days and matchers.
func (q *querier) where(mint, maxt int64, ms []*labels.Matcher) (string, []any, error) {
	var conds []string
	var args []any
	if !q.scope.All {
		if len(q.scope.Tenants) == 0 {
			return "", nil, errors.New("query has no tenant scope")
		}
		conds = append(conds, "tenant IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(q.scope.Tenants)), ", ")+")")
		for _, t := range q.scope.Tenants {
			args = append(args, t)
		}
	}
	// Open ranges (Prometheus's MinTime/MaxTime) are clamped to what a
	// ClickHouse Date holds.
	day := func(ms int64) string {
		return time.UnixMilli(min(max(ms, 0), maxDateMillis)).UTC().Format("2006-01-02")
	}
	conds = append(conds, "date >= toDate(?)", "date <= toDate(?)")
	args = append(args, day(mint), day(maxt))
	for _, m := range ms {
		expr := "label_values[indexOf(label_names, ?)]"
		exprArgs := []any{m.Name}
		if m.Name == labels.MetricName {
			expr, exprArgs = "metric_name", nil
		}
		switch m.Type {
		case labels.MatchEqual, labels.MatchNotEqual:
			op := "="
			if m.Type == labels.MatchNotEqual {
				op = "!="
			}
			conds = append(conds, expr+" "+op+" ?")
			args = append(args, exprArgs...)
			args = append(args, m.Value)
		case labels.MatchRegexp, labels.MatchNotRegexp:
			if m.Value == ".*" {
				if m.Type == labels.MatchRegexp {
					continue // matches everything, absent labels included
				}
				return "1 = 0", nil, nil
			}
			not := ""
			if m.Type == labels.MatchNotRegexp {
				not = "NOT "
			}
			conds = append(conds, not+"match("+expr+", ?)")
			args = append(args, exprArgs...)
			args = append(args, "^(?:"+m.Value+")$")
		default:
			return "", nil, fmt.Errorf("unsupported matcher type %v", m.Type)
		}
	}
	return strings.Join(conds, " AND "), args, nil
}

func (q *querier) timeRange(hints *storage.SelectHints) (int64, int64) {
	mint, maxt := q.mint, q.maxt
	if hints != nil {
		if hints.Start > mint {
			mint = hints.Start
		}
		if hints.End != 0 && hints.End < maxt {
			maxt = hints.End
		}
	}
	return mint, maxt
}

type seriesKey struct {
	tenant string
	fp     uint64
}

// chSeries is one series of a Select: its compacted chunks, sorted and
// not overlapping, followed by its raw samples, or (when they overlap) all
// of them merged into samples.
type chSeries struct {
	lset       labels.Labels
	chunks     []chunkRef
	samples    fSamples
	mint, maxt int64 // the chunks' samples outside are skipped
}

// chunkRef is one encoded chunk of a series (package chunk).
type chunkRef struct {
	mint, maxt int64
	data       []byte
}

func (s *chSeries) Labels() labels.Labels { return s.lset }

// Iterator uses Prometheus's own list iterator over raw samples (Get hands
// out pointers into the slice, so iterating allocates nothing per sample),
// and decodes chunks as it goes when there are any.
func (s *chSeries) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	if len(s.chunks) == 0 {
		return storage.NewListSeriesIterator(s.samples)
	}
	ci, ok := it.(*chunksIterator)
	if !ok {
		ci = &chunksIterator{}
	}
	ci.reset(s)
	return ci
}

// settle puts the chunks in time order and, when they overlap each other
// or the raw samples (a day read while it is compacted, or compacted
// twice), decodes them into samples, merged in time order with one sample
// per timestamp.
func (s *chSeries) settle() error {
	if len(s.chunks) == 0 {
		return nil
	}
	slices.SortFunc(s.chunks, func(a, b chunkRef) int { return cmp.Compare(a.mint, b.mint) })
	overlap := len(s.samples) > 0 && s.samples[0].t <= s.chunks[len(s.chunks)-1].maxt
	for i := 1; i < len(s.chunks) && !overlap; i++ {
		overlap = s.chunks[i].mint <= s.chunks[i-1].maxt
	}
	if !overlap {
		return nil
	}
	var ts []int64
	var vs []float64
	merged := s.samples
	for _, c := range s.chunks {
		var err error
		if ts, vs, err = chunk.Decode(c.data, ts[:0], vs[:0]); err != nil {
			return fmt.Errorf("decode chunk: %w", err)
		}
		for i, t := range ts {
			if t >= s.mint && t <= s.maxt {
				merged = append(merged, fSample{t, vs[i]})
			}
		}
	}
	s.chunks = nil
	s.samples = sortDedupe(merged)
	return nil
}

// chunksIterator iterates a series' chunks, decoding one whole chunk at a
// time into its buffers and skipping samples outside the query's range,
// then its raw samples.
type chunksIterator struct {
	s     *chSeries
	ci    int       // next chunk to decode; len(s.chunks) once all are
	ts    []int64   // the decoded chunk's samples
	vs    []float64 //
	i     int       // current sample in ts and vs
	ri    int       // current raw sample, once the chunks are done
	t     int64
	f     float64
	state chunkenc.ValueType // ValNone before the first Next and after the end
	begun bool
	err   error
}

func (it *chunksIterator) reset(s *chSeries) {
	it.s, it.ci, it.ri, it.state, it.begun, it.err = s, 0, -1, chunkenc.ValNone, false, nil
	it.ts, it.vs, it.i = it.ts[:0], it.vs[:0], -1
}

func (it *chunksIterator) Next() chunkenc.ValueType {
	if it.begun && it.state == chunkenc.ValNone {
		return chunkenc.ValNone
	}
	it.begun = true
	for {
		if it.i+1 < len(it.ts) {
			it.i++
			t := it.ts[it.i]
			if t < it.s.mint {
				continue
			}
			if t > it.s.maxt {
				// Chunks are in order and raw samples come after them.
				it.state = chunkenc.ValNone
				return it.state
			}
			it.t, it.f, it.state = t, it.vs[it.i], chunkenc.ValFloat
			return it.state
		}
		if it.ci >= len(it.s.chunks) {
			break
		}
		var err error
		it.ts, it.vs, err = chunk.Decode(it.s.chunks[it.ci].data, it.ts[:0], it.vs[:0])
		it.ci, it.i = it.ci+1, -1
		if err != nil {
			it.err = fmt.Errorf("decode chunk: %w", err)
			it.state = chunkenc.ValNone
			return it.state
		}
	}
	it.ri++
	if it.ri >= len(it.s.samples) {
		it.state = chunkenc.ValNone
		return it.state
	}
	it.t, it.f, it.state = it.s.samples[it.ri].t, it.s.samples[it.ri].f, chunkenc.ValFloat
	return it.state
}

// seekTime is int64 under another name: go vet's stdmethods check takes a
// method named Seek whose first parameter is spelled int64 for an
// io.Seeker, and chunkenc.Iterator's Seek is not one.
type seekTime = int64

func (it *chunksIterator) Seek(t seekTime) chunkenc.ValueType {
	if it.begun {
		if it.state == chunkenc.ValNone {
			return chunkenc.ValNone
		}
		if it.t >= t {
			return it.state
		}
	}
	if it.i+1 >= len(it.ts) || it.ts[len(it.ts)-1] < t {
		// Nothing left in the decoded chunk is at or after t: skip the
		// chunks that end before t without decoding them.
		it.ts, it.i = it.ts[:0], -1
		for it.ci < len(it.s.chunks) && it.s.chunks[it.ci].maxt < t {
			it.ci++
		}
	} else if k, _ := slices.BinarySearch(it.ts[it.i+1:], t); k > 0 {
		it.i += k // the sample before the first at or after t
	}
	for it.Next() != chunkenc.ValNone {
		if it.t >= t {
			return it.state
		}
	}
	return chunkenc.ValNone
}

func (it *chunksIterator) At() (int64, float64) { return it.t, it.f }
func (it *chunksIterator) AtHistogram(*histogram.Histogram) (int64, *histogram.Histogram) {
	return it.t, nil
}
func (it *chunksIterator) AtFloatHistogram(*histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	return it.t, nil
}
func (it *chunksIterator) AtT() int64  { return it.t }
func (it *chunksIterator) AtST() int64 { return 0 }
func (it *chunksIterator) Err() error  { return it.err }

// fSample is one float sample.
type fSample struct {
	t int64
	f float64
}

func (s *fSample) T() int64                      { return s.t }
func (s *fSample) ST() int64                     { return 0 }
func (s *fSample) F() float64                    { return s.f }
func (s *fSample) H() *histogram.Histogram       { return nil }
func (s *fSample) FH() *histogram.FloatHistogram { return nil }
func (s *fSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s *fSample) Copy() chunks.Sample           { c := *s; return &c }

type fSamples []fSample

func (s fSamples) Get(i int) chunks.Sample { return &s[i] }
func (s fSamples) Len() int                { return len(s) }

// Select implements storage.Querier.
func (q *querier) Select(ctx context.Context, _ bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	mint, maxt := q.timeRange(hints)
	if set, ok := q.selectRecent(ctx, hints, mint, maxt, ms); ok {
		return set
	}
	where, args, err := q.where(mint, maxt, ms)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	byKey, err := q.lookup(ctx, where, args, ms)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	if q.limits.MaxSeries > 0 && len(byKey) > q.limits.MaxSeries {
		return storage.ErrSeriesSet(fmt.Errorf("%w: %d series match, the limit is %d", ErrLimit, len(byKey), q.limits.MaxSeries))
	}
	if len(byKey) > 0 && (hints == nil || hints.Func != "series") {
		if err := q.fetch(ctx, where, args, mint, maxt, byKey); err != nil {
			return storage.ErrSeriesSet(err)
		}
	}
	out := make([]*chSeries, 0, len(byKey))
	for _, s := range byKey {
		out = append(out, s)
	}
	// Sorted always: the engine and the API both need it, and it is cheap
	// next to the reads.
	slices.SortFunc(out, func(a, b *chSeries) int { return labels.Compare(a.lset, b.lset) })
	return &seriesSet{series: out, i: -1}
}

func (q *querier) lookup(ctx context.Context, where string, args []any, ms []*labels.Matcher) (map[seriesKey]*chSeries, error) {
	rows, err := q.s.conn.Query(ctx, "SELECT tenant, fingerprint, any(metric_name), any(label_names), any(label_values) FROM "+
		q.s.db+".series WHERE "+where+" GROUP BY tenant, fingerprint", args...)
	if err != nil {
		return nil, fmt.Errorf("select series: %w", err)
	}
	defer rows.Close()
	out := make(map[seriesKey]*chSeries)
	var b labels.ScratchBuilder
	for rows.Next() {
		var k seriesKey
		var name string
		var names, values []string
		if err := rows.Scan(&k.tenant, &k.fp, &name, &names, &values); err != nil {
			return nil, fmt.Errorf("scan series: %w", err)
		}
		b.Reset()
		b.Add(labels.MetricName, name)
		for i := range names {
			b.Add(names[i], values[i])
		}
		b.Sort()
		lset := b.Labels()
		ok := true
		for _, m := range ms {
			if !m.Matches(lset.Get(m.Name)) {
				ok = false
				break
			}
		}
		if ok {
			out[k] = &chSeries{lset: lset}
		}
	}
	return out, rows.Err()
}

// packedSamples has ClickHouse pack one series' samples into one String of
// 17-byte records: ts (8 bytes, little-endian), value (8 bytes, the exact
// float bits) and a '|'. The driver scans a String with a copy, while it
// scans arrays and rows through reflection per element: BenchmarkSelect
// read 1.4 M samples/s row by row, 2.5 M/s as two groupArray columns and
// 9.6 M/s packed, on the 2-core development machine.
// toFixedString restores the trailing zero bytes reinterpretAsString
// drops; the '|' keeps the result a String, which keeps inner zero bytes.
// Works on 18.16 and current releases.
const packedSamples = "arrayStringConcat(groupArray(concat(toFixedString(reinterpretAsString(ts), 8), toFixedString(reinterpretAsString(value), 8), '|')))"

const packedRecord = 17

// fetch reads the samples of the selected series: their compacted chunks
// that overlap the range and their raw samples in the range, with two
// statements that run at once (most ranges find rows in only one table,
// and the other statement then costs its round trip).
// After both, each series' chunks and samples are settled (see settle).
func (q *querier) fetch(ctx context.Context, where string, args []any, mint, maxt int64, byKey map[seriesKey]*chSeries) error {
	chunkCond, rawCond := seriesConds(byKey, q.s.db, where, args)
	r := fetchRun{q: q, byKey: byKey}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var chunkErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		// A chunk lies within one day, so min_ts bounds which partitions
		// can hold one that reaches into the range.
		chunkErr = r.chunks(ctx, "("+chunkCond.sql+")", append(chunkCond.args, mint-dayMillis, maxt, mint))
		if chunkErr != nil {
			cancel()
		}
	}()
	rawErr := r.raw(ctx, "("+rawCond.sql+")", append(rawCond.args, mint, maxt))
	if rawErr != nil {
		cancel()
	}
	<-done
	if err := cmp.Or(chunkErr, rawErr); err != nil {
		if errors.Is(err, context.Canceled) && rawErr != nil {
			err = rawErr // the raw statement's error cancelled the chunks'
		}
		return err
	}
	for key, s := range byKey {
		s.mint, s.maxt = mint, maxt
		if err := s.settle(); err != nil {
			return err
		}
		if len(s.samples) == 0 && len(s.chunks) == 0 {
			delete(byKey, key) // no samples in range: not part of the result
		}
	}
	return nil
}

// literalSeriesMax is the most series whose fingerprints a statement
// lists; above it, each tenant's fingerprints come from a subquery on the
// series table (a listed fingerprint costs about 20 bytes of SQL, and
// ClickHouse's max_query_size is 256 KiB by default). literalNamesMax is
// the same for metric names, which the chunks statement lists when it can.
// Variables so that tests can take the other path.
var (
	literalSeriesMax = 4000
	literalNamesMax  = 1000
)

// seriesConds returns the conditions that select the rows of the series
// in byKey, one clause per tenant: "tenant = ? AND fingerprint IN (...)",
// which ClickHouse matches against the primary key of samples and chunks
// (18.16 does not for an IN on the (tenant, fingerprint) tuple), so that a
// statement reads the granules of those series and not the whole day. The
// chunks condition adds the series' metric names, which lead that table's
// key after the tenant. where and whereArgs select the same series from
// the series table, for when there are too many fingerprints to list.
func seriesConds(byKey map[seriesKey]*chSeries, db, where string, whereArgs []any) (chunks, raw seriesCond) {
	type tenantSet struct {
		fps   []uint64
		names map[string]struct{}
	}
	byTenant := map[string]*tenantSet{}
	for k, s := range byKey {
		t := byTenant[k.tenant]
		if t == nil {
			t = &tenantSet{names: map[string]struct{}{}}
			byTenant[k.tenant] = t
		}
		t.fps = append(t.fps, k.fp)
		t.names[s.lset.Get(labels.MetricName)] = struct{}{}
	}
	listed := len(byKey) <= literalSeriesMax
	for _, tenant := range slices.Sorted(maps.Keys(byTenant)) {
		t := byTenant[tenant]
		// The fingerprint clause, the same in both conditions.
		var fps strings.Builder
		var fpArgs []any
		if listed {
			slices.Sort(t.fps)
			fps.WriteString(" AND fingerprint IN (")
			for j, fp := range t.fps {
				if j > 0 {
					fps.WriteString(", ")
				}
				fps.WriteString(strconv.FormatUint(fp, 10))
			}
			fps.WriteString(")")
		} else {
			fps.WriteString(" AND fingerprint IN (SELECT fingerprint FROM " + db + ".series WHERE tenant = ? AND " + where + ")")
			fpArgs = append([]any{tenant}, whereArgs...)
		}
		var names strings.Builder
		var nameArgs []any
		if len(t.names) <= literalNamesMax {
			names.WriteString(" AND metric_name IN (")
			for j, n := range slices.Sorted(maps.Keys(t.names)) {
				if j > 0 {
					names.WriteString(", ")
				}
				names.WriteString("?")
				nameArgs = append(nameArgs, n)
			}
			names.WriteString(")")
		}
		raw.add(tenant, "", nil, fps.String(), fpArgs)
		chunks.add(tenant, names.String(), nameArgs, fps.String(), fpArgs)
	}
	return chunks, raw
}

// seriesCond is an SQL condition and its arguments.
type seriesCond struct {
	sql  string
	args []any
}

// add ORs one tenant's clause into c.
func (c *seriesCond) add(tenant, names string, nameArgs []any, fps string, fpArgs []any) {
	if c.sql != "" {
		c.sql += " OR "
	}
	c.sql += "(tenant = ?" + names + fps + ")"
	c.args = append(append(append(c.args, tenant), nameArgs...), fpArgs...)
}

// fetchRun is one fetch: its two statements fill different fields of the
// same series (chunks and samples), and share the samples limit.
type fetchRun struct {
	q     *querier
	byKey map[seriesKey]*chSeries // read only while the statements run
	total atomic.Int64
}

func (r *fetchRun) count(n int) error {
	if total := r.total.Add(int64(n)); r.q.limits.MaxSamples > 0 && total > int64(r.q.limits.MaxSamples) {
		return fmt.Errorf("%w: more than %d samples read", ErrLimit, r.q.limits.MaxSamples)
	}
	return nil
}

// chunks reads the compacted chunks of the series that cond selects.
// PREWHERE: the conditions read the small columns only, and data is read
// for the granules with rows that pass.
func (r *fetchRun) chunks(ctx context.Context, cond string, args []any) error {
	rows, err := r.q.s.conn.Query(ctx, "SELECT tenant, fingerprint, min_ts, max_ts, samples, data FROM "+r.q.s.db+".chunks PREWHERE "+cond+
		" AND min_ts > ? AND min_ts <= ? AND max_ts >= ?", args...)
	if err != nil {
		return fmt.Errorf("select chunks: %w", err)
	}
	defer rows.Close()
	var (
		k    seriesKey
		c    chunkRef
		n    uint32
		data string
	)
	for rows.Next() {
		if err := rows.Scan(&k.tenant, &k.fp, &c.mint, &c.maxt, &n, &data); err != nil {
			return fmt.Errorf("scan chunks: %w", err)
		}
		s := r.byKey[k]
		if s == nil {
			continue // dropped by the exact matcher check
		}
		// The driver hands out each String as a new Go string (ch-go's
		// ColStr.Row copies), and chunks are only read: view its bytes
		// rather than copy them again.
		c.data = unsafe.Slice(unsafe.StringData(data), len(data))
		s.chunks = append(s.chunks, c)
		if err := r.count(int(n)); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read chunks: %w", err)
	}
	return nil
}

// raw reads the raw samples: one row per series with its samples packed
// (see packedSamples), put in time order, and a repeated timestamp (a
// batch stored twice) kept once.
func (r *fetchRun) raw(ctx context.Context, cond string, args []any) error {
	rows, err := r.q.s.conn.Query(ctx, "SELECT tenant, fingerprint, "+packedSamples+" FROM "+r.q.s.db+".samples WHERE "+cond+
		" AND ts >= ? AND ts <= ? GROUP BY tenant, fingerprint", args...)
	if err != nil {
		return fmt.Errorf("select samples: %w", err)
	}
	defer rows.Close()
	var (
		k      seriesKey
		packed string
	)
	for rows.Next() {
		if err := rows.Scan(&k.tenant, &k.fp, &packed); err != nil {
			return fmt.Errorf("scan samples: %w", err)
		}
		s := r.byKey[k]
		if s == nil {
			continue // dropped by the exact matcher check
		}
		if s.samples, err = toSamples(packed); err != nil {
			return fmt.Errorf("read samples: %w", err)
		}
		if err := r.count(len(s.samples)); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read samples: %w", err)
	}
	return nil
}

// toSamples decodes packed records into samples in time order, one sample
// per timestamp. Parts come back in any order, each sorted, so the input is
// usually sorted already.
func toSamples(packed string) (fSamples, error) {
	if len(packed)%packedRecord != 0 {
		return nil, fmt.Errorf("packed length %d is not a multiple of %d", len(packed), packedRecord)
	}
	out := make(fSamples, len(packed)/packedRecord)
	for i := range out {
		r := packed[i*packedRecord:]
		out[i] = fSample{int64(le64(r)), math.Float64frombits(le64(r[8:]))}
	}
	return sortDedupe(out), nil
}

// sortDedupe puts samples in time order, keeping one sample per timestamp
// (the last of equal ones in input order).
func sortDedupe(out fSamples) fSamples {
	sorted := true
	for i := 1; i < len(out) && sorted; i++ {
		sorted = out[i].t > out[i-1].t
	}
	if sorted {
		return out
	}
	slices.SortStableFunc(out, func(a, b fSample) int { return cmp.Compare(a.t, b.t) })
	n := 0
	for i := range out {
		if n > 0 && out[n-1].t == out[i].t {
			out[n-1] = out[i]
			continue
		}
		out[n] = out[i]
		n++
	}
	return out[:n]
}

// LabelNames implements storage.LabelQuerier.
func (q *querier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	where, args, err := q.where(q.mint, q.maxt, ms)
	if err != nil {
		return nil, nil, err
	}
	names, err := q.strings(ctx, "SELECT DISTINCT arrayJoin(arrayPushBack(label_names, '__name__')) AS n FROM "+q.s.db+".series WHERE "+where+" ORDER BY n", args, hints)
	return names, nil, err
}

// LabelValues implements storage.LabelQuerier.
func (q *querier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	where, args, err := q.where(q.mint, q.maxt, ms)
	if err != nil {
		return nil, nil, err
	}
	expr, exprArgs := "label_values[indexOf(label_names, ?)]", []any{name}
	if name == labels.MetricName {
		expr, exprArgs = "metric_name", nil
	}
	vals, err := q.strings(ctx, "SELECT DISTINCT "+expr+" AS v FROM "+q.s.db+".series WHERE "+where+" AND v != '' ORDER BY v",
		append(exprArgs, args...), hints)
	return vals, nil, err
}

func (q *querier) strings(ctx context.Context, sql string, args []any, hints *storage.LabelHints) ([]string, error) {
	if hints != nil && hints.Limit > 0 {
		sql += fmt.Sprintf(" LIMIT %d", hints.Limit)
	}
	rows, err := q.s.conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("select labels: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// selectRecent reads from the store's Recent when it holds every sample
// of [mint, maxt]; the series API's selections (hints.Func "series") ask
// which series were written on the range's days, which only ClickHouse
// knows.
func (q *querier) selectRecent(ctx context.Context, hints *storage.SelectHints, mint, maxt int64, ms []*labels.Matcher) (storage.SeriesSet, bool) {
	if q.s.recent == nil || ctx.Value(clickHouseOnlyKey{}) != nil || (hints != nil && hints.Func == "series") {
		return nil, false
	}
	rq, ok := q.s.recent.Querier(q.scope, mint, maxt)
	if !ok {
		return nil, false
	}
	q.mu.Lock()
	q.recent = append(q.recent, rq)
	q.mu.Unlock()
	// The engine's selections (the only ones with hints) leave samples
	// outside [mint, maxt] in the chunks that straddle its ends: the
	// engine reads from mint and stops past maxt by itself, and trimming
	// would wrap each such chunk's iterator in one that checks every sample
	// against the range. Other readers (the rules' restore of
	// ALERTS_FOR_STATE takes a series' last sample) get the range only.
	if hints != nil {
		h := *hints
		// The range the head was asked about, and holds.
		h.Start, h.End = mint, maxt
		h.DisableTrimming = true
		hints = &h
	}
	set := rq.Select(ctx, true, hints, ms...)
	if q.limits.MaxSeries <= 0 && q.limits.MaxSamples <= 0 {
		return set, true
	}
	return &limitedSet{SeriesSet: set, limits: q.limits}, true
}

// Close implements storage.LabelQuerier.
func (q *querier) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	var errs []error
	for _, rq := range q.recent {
		errs = append(errs, rq.Close())
	}
	q.recent = nil
	return errors.Join(errs...)
}

// limitedSet applies a query's Limits to series read from Recent, as
// fetch does to ClickHouse's: series as they are listed, samples as they
// are iterated.
type limitedSet struct {
	storage.SeriesSet
	limits  Limits
	series  int
	samples int64
	err     error
}

func (s *limitedSet) Next() bool {
	if s.err != nil || !s.SeriesSet.Next() {
		return false
	}
	if s.series++; s.limits.MaxSeries > 0 && s.series > s.limits.MaxSeries {
		s.err = fmt.Errorf("%w: more than %d series match, the limit", ErrLimit, s.limits.MaxSeries)
		return false
	}
	return true
}

func (s *limitedSet) At() storage.Series {
	if s.limits.MaxSamples <= 0 {
		return s.SeriesSet.At()
	}
	return limitedSeries{s.SeriesSet.At(), s}
}

func (s *limitedSet) Err() error {
	if s.err != nil {
		return s.err
	}
	return s.SeriesSet.Err()
}

type limitedSeries struct {
	storage.Series
	set *limitedSet
}

func (s limitedSeries) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	if li, ok := it.(*limitedIterator); ok {
		li.Iterator = s.Series.Iterator(li.Iterator)
		li.set, li.err = s.set, nil
		return li
	}
	return &limitedIterator{Iterator: s.Series.Iterator(it), set: s.set}
}

// limitedIterator counts the samples handed out; the engine reads every
// sample of its ranges through Next, and Seek skips to the first it needs.
type limitedIterator struct {
	chunkenc.Iterator
	set *limitedSet
	err error
}

func (it *limitedIterator) count(vt chunkenc.ValueType) chunkenc.ValueType {
	if vt == chunkenc.ValNone || it.err != nil {
		return chunkenc.ValNone
	}
	if it.set.samples++; it.set.samples > int64(it.set.limits.MaxSamples) {
		it.err = fmt.Errorf("%w: more than %d samples read", ErrLimit, it.set.limits.MaxSamples)
		return chunkenc.ValNone
	}
	return vt
}

func (it *limitedIterator) Next() chunkenc.ValueType           { return it.count(it.Iterator.Next()) }
func (it *limitedIterator) Seek(t seekTime) chunkenc.ValueType { return it.count(it.Iterator.Seek(t)) }

func (it *limitedIterator) Err() error {
	if it.err != nil {
		return it.err
	}
	return it.Iterator.Err()
}

type seriesSet struct {
	series []*chSeries
	i      int
}

func (s *seriesSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *seriesSet) At() storage.Series                { return s.series[s.i] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

// le64 reads a little-endian uint64 from the first 8 bytes of s.
func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}
