package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// compactFixture is a store with samples written, and the same samples
// kept in memory: what every read must return.
type compactFixture struct {
	t      *testing.T
	s      *Store
	want   map[string]map[int64]float64 // by metric name, then timestamp
	fps    map[string]uint64
	tenant string
}

func newCompactFixture(t *testing.T) *compactFixture {
	s, _ := openStore(t)
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &compactFixture{t: t, s: s, want: map[string]map[int64]float64{}, fps: map[string]uint64{}, tenant: "consular"}
}

// write stores samples of series name at the given times (values from f),
// and a series row for every UTC day they touch.
func (f *compactFixture) write(name string, ts []int64, v func(i int) float64) {
	f.t.Helper()
	ls := labels.FromStrings("__name__", name, "job", "booking")
	fp := Fingerprint(ls)
	f.fps[name] = fp
	if f.want[name] == nil {
		f.want[name] = map[int64]float64{}
	}
	var b Block
	days := map[int64]bool{}
	for i, t := range ts {
		x := v(i)
		b.Tenants = append(b.Tenants, f.tenant)
		b.Fingerprints = append(b.Fingerprints, fp)
		b.Timestamps = append(b.Timestamps, t)
		b.Values = append(b.Values, x)
		f.want[name][t] = x
		if d := t / dayMillis; !days[d] {
			days[d] = true
			b.Series = append(b.Series, SeriesRow{Tenant: f.tenant, Date: time.UnixMilli(d * dayMillis).UTC(), Fingerprint: fp,
				MetricName: name, LabelNames: []string{"job"}, LabelValues: []string{"booking"}})
		}
	}
	if err := f.s.WriteBlock(context.Background(), &b); err != nil {
		f.t.Fatal(err)
	}
}

// check reads every series over [mint, maxt] through Select and compares
// with what was written, bit for bit (staleness markers included), and
// walks each series again with Seek to random times.
func (f *compactFixture) check(what string, mint, maxt int64) {
	f.t.Helper()
	q, err := f.s.Queryable(Scope{Tenants: []string{f.tenant}}, Limits{}).Querier(mint, maxt)
	if err != nil {
		f.t.Fatal(err)
	}
	set := q.Select(context.Background(), true, &storage.SelectHints{Start: mint, End: maxt},
		labels.MustNewMatcher(labels.MatchEqual, "job", "booking"))
	got := map[string][]fSample{}
	for set.Next() {
		s := set.At()
		var out []fSample
		it := s.Iterator(nil)
		for it.Next() != chunkenc.ValNone {
			t, v := it.At()
			out = append(out, fSample{t, v})
		}
		if err := it.Err(); err != nil {
			f.t.Fatalf("%s: iterate: %v", what, err)
		}
		got[s.Labels().Get("__name__")] = out
	}
	if err := set.Err(); err != nil {
		f.t.Fatalf("%s: select: %v", what, err)
	}
	for name, all := range f.want {
		var want []fSample
		for t, v := range all {
			if t >= mint && t <= maxt {
				want = append(want, fSample{t, v})
			}
		}
		slices.SortFunc(want, func(a, b fSample) int { return int(a.t - b.t) })
		g := got[name]
		if len(g) != len(want) {
			f.t.Fatalf("%s: %s has %d samples in [%d, %d], want %d", what, name, len(g), mint, maxt, len(want))
		}
		for i := range want {
			if g[i].t != want[i].t || math.Float64bits(g[i].f) != math.Float64bits(want[i].f) {
				f.t.Fatalf("%s: %s sample %d is %v @%d, want %v @%d", what, name, i, g[i].f, g[i].t, want[i].f, want[i].t)
			}
		}
		if len(want) == 0 {
			continue
		}
		// Seek: forward jumps land on the first sample at or after the
		// target; a Seek backwards stays put.
		it := f.s.mustIterator(f.t, name, mint, maxt, f.tenant)
		rng := rand.New(rand.NewPCG(uint64(len(want)), 7))
		pos := -1
		for target := mint - 1000; ; {
			target += rng.Int64N(4 * 3_600_000)
			vt := it.Seek(target)
			j, _ := slices.BinarySearchFunc(want, target, func(s fSample, t int64) int { return int(s.t - t) })
			j = max(j, pos)
			if j >= len(want) {
				if vt != chunkenc.ValNone {
					f.t.Fatalf("%s: %s Seek(%d) found a sample past the end", what, name, target)
				}
				break
			}
			if vt != chunkenc.ValFloat || it.AtT() != want[j].t {
				f.t.Fatalf("%s: %s Seek(%d) = %v at %d, want %d", what, name, target, vt, it.AtT(), want[j].t)
			}
			pos = j
			if back := it.Seek(target - 3_600_000); back != chunkenc.ValFloat || it.AtT() != want[j].t {
				f.t.Fatalf("%s: %s Seek backwards moved to %d, want to stay at %d", what, name, it.AtT(), want[j].t)
			}
		}
	}
}

// mustIterator returns an iterator over one series in [mint, maxt].
func (s *Store) mustIterator(t *testing.T, name string, mint, maxt int64, tenant string) chunkenc.Iterator {
	t.Helper()
	q, err := s.Queryable(Scope{Tenants: []string{tenant}}, Limits{}).Querier(mint, maxt)
	if err != nil {
		t.Fatal(err)
	}
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", name))
	if !set.Next() {
		t.Fatalf("no series %s: %v", name, set.Err())
	}
	return set.At().Iterator(nil)
}

func (f *compactFixture) rawDays() []string {
	f.t.Helper()
	days, err := f.s.RawDays(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, d := range days {
		out = append(out, d.Format(time.DateOnly))
	}
	return out
}

func (f *compactFixture) count(sql string) uint64 {
	f.t.Helper()
	var n uint64
	if err := f.s.Conn().QueryRow(context.Background(), fmt.Sprintf(sql, f.s.Database())).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// TestCompaction compacts a day of raw samples into chunks, and checks
// that every read gives the samples written, bit for bit, before, after
// and across compaction: a day half compacted, late samples written into
// a compacted day (read merged, then compacted again into overlapping
// chunks), a day compacted twice, and ranges that cut chunks.
func TestCompaction(t *testing.T) {
	f := newCompactFixture(t)
	ctx := context.Background()
	day1 := time.Date(2026, 11, 18, 0, 0, 0, 0, time.UTC)
	day2 := day1.Add(24 * time.Hour)
	d1 := day1.UnixMilli()
	stale := math.Float64frombits(value.StaleNaN)

	// Two days at 15 s with jitter: a counter, a gauge with a staleness
	// marker and odd values, and a series with a gap.
	var ts []int64
	for i := range 2 * 5760 {
		ts = append(ts, d1+int64(i)*15000+int64(i*7%5))
	}
	f.write("requests_total", ts, func(i int) float64 { return float64(i * 3) })
	// temperature(i) is sample i of a gauge with a staleness marker and
	// +Inf now and then.
	temperature := func(i int) float64 {
		switch i % 1000 {
		case 999:
			return stale
		case 500:
			return math.Inf(1)
		}
		return 20 + math.Sin(float64(i)/50)
	}
	f.write("temperature", ts, temperature)
	gap := append(slices.Clone(ts[:1000]), ts[3000:6000]...)
	f.write("sparse", gap, func(i int) float64 { return float64(i % 7) })
	whole := func(what string) {
		f.check(what+", both days", d1-1, d1+2*dayMillis)
		f.check(what+", a range cutting chunks", d1+3_600_000+7_000, d1+dayMillis+5*3_600_000+1)
		f.check(what+", one sample", ts[100], ts[100])
		f.check(what+", across midnight", d1+dayMillis-600_000, d1+dayMillis+600_000)
	}
	whole("raw")
	if got := f.rawDays(); !slices.Equal(got, []string{"2026-11-18", "2026-11-19"}) {
		t.Fatalf("raw days %v", got)
	}

	// The horizon is the end of day 1: only day 1 is compacted.
	done, err := f.s.CompactBefore(ctx, day2)
	if err != nil {
		t.Fatal(err)
	}
	// Day 1 holds 5760 samples of each full series, and 1000 + 2760 of
	// sparse (its second run, i = 3000..5999, crosses midnight at 5760).
	if len(done) != 1 || done[0].Samples != 5760+5760+1000+2760 || done[0].Series != 3 || done[0].RawRows != uint64(done[0].Samples) {
		t.Fatalf("compacted %+v", done)
	}
	if got := f.rawDays(); !slices.Equal(got, []string{"2026-11-19"}) {
		t.Fatalf("raw days after compacting day 1: %v", got)
	}
	if n := f.count("SELECT count() FROM %s.samples WHERE ts < " + fmt.Sprint(d1+dayMillis)); n != 0 {
		t.Fatalf("%d raw samples of day 1 left", n)
	}
	if n := f.count("SELECT sum(samples) FROM %s.chunks"); n != uint64(done[0].Samples) {
		t.Fatalf("chunks hold %d samples, compaction wrote %d", n, done[0].Samples)
	}
	if n := testutil.ToFloat64(f.s.compactDays); n != 1 {
		t.Fatalf("compacted days metric %v", n)
	}
	whole("day 1 compacted")
	// The samples limit counts what chunks hold.
	q, err := f.s.Queryable(Scope{Tenants: []string{f.tenant}}, Limits{MaxSamples: 1000}).Querier(d1, d1+dayMillis-1)
	if err != nil {
		t.Fatal(err)
	}
	if set := q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchEqual, "job", "booking")); set.Next() || !errors.Is(set.Err(), ErrLimit) {
		t.Fatalf("select over the limit from chunks: %v, want ErrLimit", set.Err())
	}

	// Late samples in day 1: some written again (the same values), one new.
	late := ts[200:400]
	f.write("requests_total", late, func(i int) float64 { return float64((i + 200) * 3) })
	f.write("requests_total", []int64{d1 + 7}, func(int) float64 { return -1 })
	whole("late samples over chunks")
	if _, err := f.s.CompactDay(ctx, day1); err != nil {
		t.Fatal(err)
	}
	whole("day 1 compacted twice (overlapping chunks)")

	// Compacting the same raw rows twice writes identical chunks.
	if _, err := f.s.CompactDay(ctx, day2); err != nil {
		t.Fatal(err)
	}
	whole("both days compacted")
	if got := f.rawDays(); len(got) != 0 {
		t.Fatalf("raw days after compacting both: %v", got)
	}
	chunksBefore := f.count("SELECT count() FROM %s.chunks FINAL")
	f.write("temperature", ts[5760:], func(i int) float64 { return temperature(i + 5760) })
	if _, err := f.s.CompactDay(ctx, day2); err != nil {
		t.Fatal(err)
	}
	if n := f.count("SELECT count() FROM %s.chunks FINAL"); n != chunksBefore {
		t.Fatalf("compacting the same raw rows again left %d chunks, want %d (identical chunks fold)", n, chunksBefore)
	}
	whole("day 2 compacted twice from the same rows")

	// A day that has not ended (by the horizon) stays raw.
	f.write("requests_total", []int64{time.Now().UnixMilli()}, func(int) float64 { return 1 })
	if done, err := f.s.CompactBefore(ctx, time.Now().Add(-time.Hour)); err != nil || len(done) != 0 {
		t.Fatalf("compacted %v (%v); want nothing before the horizon", done, err)
	}
	if got := f.rawDays(); len(got) != 1 {
		t.Fatalf("raw days %v, want today's", got)
	}
}

// TestRunCompaction runs the background loop as a hub does: a day that
// ended more than the delay ago is compacted, today is not, and a hub that
// does not own compaction compacts nothing.
func TestRunCompaction(t *testing.T) {
	f := newCompactFixture(t)
	yesterday := time.Now().UTC().Truncate(24 * time.Hour).Add(-24 * time.Hour)
	var ts []int64
	for i := range 100 {
		ts = append(ts, yesterday.UnixMilli()+int64(i)*60_000)
	}
	f.write("requests_total", ts, func(i int) float64 { return float64(i) })
	now := time.Now().UnixMilli()
	f.write("up", []int64{now - 1000, now}, func(int) float64 { return 1 })

	run := func(cfg CompactionConfig, owns func() bool, until func() bool) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); f.s.RunCompaction(ctx, cfg, owns) }()
		deadline := time.Now().Add(30 * time.Second)
		for !until() {
			if time.Now().After(deadline) {
				cancel()
				<-done
				t.Fatalf("raw days %v after 30 s", f.rawDays())
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		<-done
	}
	cfg := CompactionConfig{Interval: 20 * time.Millisecond}
	cfg.setDefaults()
	if cfg.Delay != 2*time.Hour {
		t.Fatalf("default delay %v", cfg.Delay)
	}
	// Not the owner: several rounds pass and nothing is compacted.
	rounds := 0
	run(cfg, func() bool { rounds++; return false }, func() bool { return rounds >= 3 })
	if got := f.rawDays(); len(got) != 2 {
		t.Fatalf("raw days %v, want yesterday and today (this hub does not own compaction)", got)
	}
	// The owner compacts yesterday (ended more than 2 h ago unless the
	// test runs in the first 2 h of a UTC day; then a delay of 0 does).
	if time.Since(yesterday.Add(24*time.Hour)) < cfg.Delay {
		cfg.Delay = 0
	}
	run(cfg, func() bool { return true }, func() bool { return len(f.rawDays()) == 1 })
	if got := f.rawDays(); got[0] != time.Now().UTC().Format(time.DateOnly) {
		t.Fatalf("raw days %v, want today only", got)
	}
	f.check("after the background compaction", yesterday.UnixMilli(), now)
	if n := testutil.ToFloat64(f.s.compactDays); n != 1 {
		t.Fatalf("compacted days metric %v, want 1", n)
	}
}

// TestCompactionBytesPerSample compacts a day of node-like series (a
// quarter each: constants, counters, gauges in pages, and full-precision
// durations, which no decimal form fits) and checks that the chunks take a
// fraction of the raw rows' bytes on disk, and that the table adds little
// to the chunks' payload (the realistic figure is measured by make bench).
func TestCompactionBytesPerSample(t *testing.T) {
	f := newCompactFixture(t)
	ctx := context.Background()
	day := time.Date(2026, 11, 17, 0, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(3, 4))
	const series, perSeries = 40, 5760
	for s := range series {
		var ts []int64
		for i := range perSeries {
			ts = append(ts, day.UnixMilli()+int64(s*300)+int64(i)*15000+rng.Int64N(5))
		}
		name := fmt.Sprintf("node_metric_%d", s)
		switch s % 4 {
		case 0: // CPU seconds, as node_exporter computes them: ticks / 100
			ticks := int64(0)
			f.write(name, ts, func(int) float64 { ticks += rng.Int64N(1500); return float64(ticks) / 100 })
		case 1: // constant gauge
			f.write(name, ts, func(int) float64 { return 16e9 })
		case 2: // memory in pages
			f.write(name, ts, func(int) float64 { return 8e9 + 4096*float64(rng.IntN(1000)) })
		default: // a duration with every mantissa bit in use: XOR chunks
			f.write(name, ts, func(int) float64 { return rng.Float64() / 100 })
		}
	}
	bytesOf := func(table string) float64 {
		if err := f.s.Conn().Exec(ctx, "OPTIMIZE TABLE "+f.s.Database()+"."+table+" FINAL"); err != nil {
			t.Fatal(err)
		}
		return float64(f.count("SELECT sum(bytes_on_disk) FROM system.parts WHERE database = '%s' AND table = '" + table + "' AND active"))
	}
	raw := bytesOf("samples") / (series * perSeries)
	st, err := f.s.CompactDay(ctx, day)
	if err != nil {
		t.Fatal(err)
	}
	compacted := bytesOf("chunks") / (series * perSeries)
	payload := float64(st.Bytes) / (series * perSeries)
	t.Logf("bytes per sample (%d series x %d samples): raw rows on disk %.3f, chunk payload %.3f, chunks on disk %.3f", series, perSeries, raw, payload, compacted)
	if compacted > raw*0.45 {
		t.Errorf("chunks take %.2f bytes per sample, raw rows %.2f; want under 45%%", compacted, raw)
	}
	if compacted > payload*1.15 {
		t.Errorf("chunks take %.2f bytes per sample on disk for %.2f of chunk payload", compacted, payload)
	}
	f.check("compacted", day.UnixMilli(), day.UnixMilli()+dayMillis)
}
