package clickhouse

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/teststorage"
)

// differentialQueries cover what dashboards and rules use. Each runs as an
// instant query at several times and as a range query.
var differentialQueries = []string{
	// selectors and matchers
	`http_requests_total`,
	`http_requests_total{job="booking"}`,
	`http_requests_total{job!="booking"}`,
	`http_requests_total{code=~"5.."}`,
	`http_requests_total{code!~"2..",method="GET"}`,
	`{__name__=~"http_.*",instance="vm-1"}`,
	`http_requests_total{nonexistent=""}`,
	`http_requests_total{nonexistent="x"}`,
	// rates
	`rate(http_requests_total[1m])`,
	`rate(http_requests_total[5m])`,
	`irate(http_requests_total[5m])`,
	`increase(http_requests_total[10m])`,
	`resets(http_requests_total[30m])`,
	`delta(cpu_usage[5m])`,
	`deriv(cpu_usage[10m])`,
	`rate(http_requests_total[5m] offset 10m)`,
	`rate(http_requests_total[5m] @ 3600)`,
	// aggregations
	`sum(rate(http_requests_total[5m]))`,
	`sum by (job) (rate(http_requests_total[5m]))`,
	`sum without (instance) (rate(http_requests_total[5m]))`,
	`avg by (job) (cpu_usage)`,
	`max by (instance) (cpu_usage)`,
	`min(cpu_usage)`,
	`count by (code) (http_requests_total)`,
	`stddev by (job) (cpu_usage)`,
	`quantile(0.9, cpu_usage)`,
	`topk(3, rate(http_requests_total[5m]))`,
	`bottomk(2, cpu_usage)`,
	`count_values("v", round(cpu_usage))`,
	`group by (job) (http_requests_total)`,
	// over time
	`avg_over_time(cpu_usage[10m])`,
	`max_over_time(cpu_usage[30m])`,
	`min_over_time(cpu_usage[5m])`,
	`sum_over_time(cpu_usage[5m])`,
	`count_over_time(cpu_usage[5m])`,
	`quantile_over_time(0.5, cpu_usage[15m])`,
	`last_over_time(cpu_usage[5m])`,
	`changes(cpu_usage[10m])`,
	`stddev_over_time(cpu_usage[10m])`,
	// classic histograms
	`histogram_quantile(0.99, sum by (le) (rate(request_duration_seconds_bucket[5m])))`,
	`histogram_quantile(0.5, sum by (job, le) (rate(request_duration_seconds_bucket[5m])))`,
	`histogram_quantile(0.9, rate(request_duration_seconds_bucket[10m]))`,
	`sum(rate(request_duration_seconds_sum[5m])) / sum(rate(request_duration_seconds_count[5m]))`,
	// subqueries
	`max_over_time(rate(http_requests_total[1m])[10m:1m])`,
	`avg_over_time(sum by (job) (rate(http_requests_total[5m]))[30m:2m])`,
	`max_over_time(rate(http_requests_total[5m])[20m:5m] offset 5m)`,
	// absent
	`absent(nonexistent_metric)`,
	`absent(http_requests_total{job="booking"})`,
	`absent_over_time(cpu_usage{instance="vm-9"}[5m])`,
	// binary operators, vector matching
	`rate(http_requests_total[5m]) > 0.5`,
	`rate(http_requests_total[5m]) > bool 0.5`,
	`cpu_usage * 100`,
	`sum by (job, instance) (rate(http_requests_total[5m])) / on (instance) group_left cpu_usage`,
	`sum by (instance) (rate(http_requests_total{code=~"5.."}[5m])) / ignoring (code) sum by (instance) (rate(http_requests_total[5m]))`,
	`http_requests_total and on (instance) cpu_usage > 50`,
	`http_requests_total unless on (job) http_requests_total{job="booking"}`,
	`cpu_usage or on (instance) up`,
	`up == 1`,
	// functions
	`abs(deriv(cpu_usage[5m]))`,
	`clamp(cpu_usage, 20, 80)`,
	`label_replace(cpu_usage, "host", "$1", "instance", "vm-(.*)")`,
	`label_join(up, "id", "/", "job", "instance")`,
	`timestamp(cpu_usage)`,
	`sort_desc(sum by (instance) (cpu_usage))`,
	`predict_linear(cpu_usage[30m], 3600)`,
	`time() - timestamp(up)`,
	`vector(1)`,
	`scalar(sum(up))`,
}

// loadDifferential appends the same generated data to every storage: two
// hours at 15 s with jittered timestamps, counters with resets, gauges,
// classic histograms, and a series that stops halfway (staleness).
// If half is not nil, it is called when the first half of every series is
// committed, before the second half is appended.
func loadDifferential(tb testing.TB, half func(), stores ...storage.Storage) {
	rng := rand.New(rand.NewPCG(1, 2))
	type ser struct {
		ls     labels.Labels
		next   func(i int, prev float64) float64
		stopAt int
	}
	var all []ser
	for _, job := range []string{"booking", "healthcode"} {
		for _, inst := range []string{"vm-1", "vm-2", "vm-3"} {
			for _, code := range []string{"200", "404", "500"} {
				for _, method := range []string{"GET", "POST"} {
					rateV := rng.Float64() * 3
					resetAt := rng.IntN(480)
					all = append(all, ser{ls: labels.FromStrings("__name__", "http_requests_total", "job", job, "instance", inst, "code", code, "method", method),
						next: func(i int, prev float64) float64 {
							if i == resetAt {
								return 0
							}
							return prev + rateV*15*(0.5+rng.Float64())
						}})
				}
			}
			if job == "booking" {
				all = append(all, ser{ls: labels.FromStrings("__name__", "cpu_usage", "instance", inst),
					next: func(i int, _ float64) float64 { return 50 + 40*math.Sin(float64(i)/30) + rng.Float64()*5 }})
			}
			all = append(all, ser{ls: labels.FromStrings("__name__", "up", "job", job, "instance", inst),
				next: func(int, float64) float64 { return 1 }})
			bounds := []string{"0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"}
			counts := make([]float64, len(bounds))
			all = append(all, ser{ls: labels.FromStrings("__name__", "request_duration_seconds_count", "job", job, "instance", inst),
				next: func(i int, prev float64) float64 { return prev + 100 }})
			all = append(all, ser{ls: labels.FromStrings("__name__", "request_duration_seconds_sum", "job", job, "instance", inst),
				next: func(i int, prev float64) float64 { return prev + 100*0.3*(0.5+rng.Float64()) }})
			for bi, le := range bounds {
				all = append(all, ser{ls: labels.FromStrings("__name__", "request_duration_seconds_bucket", "job", job, "instance", inst, "le", le),
					next: func(i int, _ float64) float64 {
						frac := math.Min(1, float64(bi+1)/float64(len(bounds))+0.1*rng.Float64())
						if le == "+Inf" {
							frac = 1
						}
						counts[bi] += 100 * frac
						return counts[bi]
					}})
			}
		}
	}
	all = append(all, ser{ls: labels.FromStrings("__name__", "cpu_usage", "instance", "vm-9"),
		next: func(i int, _ float64) float64 { return 10 }, stopAt: 240})

	const points = 480 // 2 h at 15 s
	apps := make([]storage.AppenderV2, len(stores))
	for i, st := range stores {
		apps[i] = st.AppenderV2(context.Background())
	}
	commit := func() {
		for i, app := range apps {
			if err := app.Commit(); err != nil {
				tb.Fatal(err)
			}
			apps[i] = stores[i].AppenderV2(context.Background())
		}
	}
	vals := make([]float64, len(all))
	for _, part := range [][2]int{{0, points / 2}, {points / 2, points}} {
		for si, s := range all {
			for i := part[0]; i < part[1]; i++ {
				if s.stopAt > 0 && i >= s.stopAt {
					break
				}
				vals[si] = s.next(i, vals[si])
				t := int64(i)*15000 + int64(rng.IntN(200))
				for _, app := range apps {
					if _, err := app.Append(0, s.ls, 0, t, vals[si], nil, nil, storage.AppendV2Options{}); err != nil {
						tb.Fatal(err)
					}
				}
			}
		}
		commit()
		if half != nil && part[0] == 0 {
			half()
		}
	}
}

// TestDifferentialAgainstTSDB loads the same data into Prometheus's TSDB
// and into ClickHouse and checks that every query gives the same result on
// both, as instant and as range queries.
//
// It runs twice: over raw samples, and with the first hour compacted into
// chunks while some of its samples are stored raw again (a late copy) and
// the second hour stays raw, so reads merge chunks, overlapping raw
// samples and a raw tail.
func TestDifferentialAgainstTSDB(t *testing.T) {
	if len(differentialQueries) < 50 {
		t.Fatalf("only %d queries; the differential set must have at least 50", len(differentialQueries))
	}
	t.Run("raw", func(t *testing.T) { testDifferential(t, false) })
	t.Run("compacted", func(t *testing.T) { testDifferential(t, true) })
}

func testDifferential(t *testing.T, compact bool) {
	tsdb := teststorage.New(t)
	t.Cleanup(func() { tsdb.Close() })
	ch := newPromStorage(t)
	var half func()
	if compact {
		half = func() { compactWithLateCopy(t, ch.(*promStorage).s, 1800_000) }
	}
	loadDifferential(t, half, tsdb, ch)
	engine := promqltest.NewTestEngine(t, false, 0, 50_000_000)
	at := func(sec int) time.Time { return time.Unix(int64(sec), 0) }
	for _, q := range differentialQueries {
		t.Run(q, func(t *testing.T) {
			for _, ts := range []int{600, 3600, 3625, 7100} {
				want := evalInstant(t, engine, tsdb, q, at(ts))
				got := evalInstant(t, engine, ch, q, at(ts))
				if diff := compareResults(want, got); diff != "" {
					t.Errorf("instant at %ds: %s", ts, diff)
				}
			}
			want := evalRange(t, engine, tsdb, q, at(300), at(7200), 30*time.Second)
			got := evalRange(t, engine, ch, q, at(300), at(7200), 30*time.Second)
			if diff := compareResults(want, got); diff != "" {
				t.Errorf("range: %s", diff)
			}
		})
	}
}

// compactWithLateCopy compacts every raw day of s, then stores again, raw,
// the samples at or after from that were compacted (as a batch resent
// after its first copy was compacted would be).
func compactWithLateCopy(tb testing.TB, s *Store, from int64) {
	tb.Helper()
	ctx := context.Background()
	db := s.Database()
	for _, stmt := range []string{
		"CREATE TABLE " + db + ".late AS " + db + ".samples",
		fmt.Sprintf("INSERT INTO %s.late (tenant, fingerprint, ts, value) SELECT tenant, fingerprint, ts, value FROM %s.samples WHERE ts >= %d", db, db, from),
	} {
		if err := s.Conn().Exec(ddlContext(ctx), stmt); err != nil {
			tb.Fatal(err)
		}
	}
	if done, err := s.CompactBefore(ctx, time.UnixMilli(maxDateMillis)); err != nil || len(done) == 0 {
		tb.Fatalf("compacted %v (%v)", done, err)
	}
	for _, stmt := range []string{
		fmt.Sprintf("INSERT INTO %s.samples (tenant, fingerprint, ts, value) SELECT tenant, fingerprint, ts, value FROM %s.late", db, db),
		"DROP TABLE " + db + ".late",
	} {
		if err := s.Conn().Exec(ctx, stmt); err != nil {
			tb.Fatal(err)
		}
	}
	var chunks uint64
	if err := s.Conn().QueryRow(ctx, "SELECT count() FROM "+db+".chunks").Scan(&chunks); err != nil || chunks == 0 {
		tb.Fatalf("no chunks after compaction (%v)", err)
	}
}

func evalInstant(t *testing.T, engine *promql.Engine, q storage.Queryable, expr string, ts time.Time) parser.Value {
	t.Helper()
	qry, err := engine.NewInstantQuery(context.Background(), q, nil, expr, ts)
	if err != nil {
		t.Fatal(err)
	}
	defer qry.Close()
	res := qry.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("%s: %v", expr, res.Err)
	}
	return deepCopy(res.Value)
}

func evalRange(t *testing.T, engine *promql.Engine, q storage.Queryable, expr string, start, end time.Time, step time.Duration) parser.Value {
	t.Helper()
	qry, err := engine.NewRangeQuery(context.Background(), q, nil, expr, start, end, step)
	if err != nil {
		t.Fatal(err)
	}
	defer qry.Close()
	res := qry.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("%s: %v", expr, res.Err)
	}
	return deepCopy(res.Value)
}

// deepCopy detaches a result from the engine's pools, which Close returns
// its slices to.
func deepCopy(v parser.Value) parser.Value {
	switch x := v.(type) {
	case promql.Vector:
		return append(promql.Vector(nil), x...)
	case promql.Matrix:
		out := make(promql.Matrix, len(x))
		for i, s := range x {
			out[i] = promql.Series{Metric: s.Metric, Floats: append([]promql.FPoint(nil), s.Floats...)}
		}
		return out
	}
	return v
}

func closeEnough(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	if a == b {
		return true
	}
	return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

// compareResults returns "" when the results are equal (floats within a
// relative 1e-9) and a description of the first difference otherwise.
func compareResults(want, got parser.Value) string {
	if want.Type() != got.Type() {
		return fmt.Sprintf("type %s, want %s", got.Type(), want.Type())
	}
	switch w := want.(type) {
	case promql.Scalar:
		g := got.(promql.Scalar)
		if w.T != g.T || !closeEnough(w.V, g.V) {
			return fmt.Sprintf("scalar %v, want %v", g, w)
		}
	case promql.Vector:
		g := got.(promql.Vector)
		if len(w) != len(g) {
			return fmt.Sprintf("%d samples, want %d: %v vs %v", len(g), len(w), g, w)
		}
		w, g = sortedVector(w), sortedVector(g)
		for i := range w {
			if !labels.Equal(w[i].Metric, g[i].Metric) || w[i].T != g[i].T || !closeEnough(w[i].F, g[i].F) {
				return fmt.Sprintf("sample %d: %v, want %v", i, g[i], w[i])
			}
		}
	case promql.Matrix:
		g := got.(promql.Matrix)
		if len(w) != len(g) {
			return fmt.Sprintf("%d series, want %d", len(g), len(w))
		}
		for i := range w {
			if !labels.Equal(w[i].Metric, g[i].Metric) {
				return fmt.Sprintf("series %d: %s, want %s", i, g[i].Metric, w[i].Metric)
			}
			if len(w[i].Floats) != len(g[i].Floats) {
				return fmt.Sprintf("series %s: %d points, want %d", w[i].Metric, len(g[i].Floats), len(w[i].Floats))
			}
			for j := range w[i].Floats {
				if w[i].Floats[j].T != g[i].Floats[j].T || !closeEnough(w[i].Floats[j].F, g[i].Floats[j].F) {
					return fmt.Sprintf("series %s point %d: %v, want %v", w[i].Metric, j, g[i].Floats[j], w[i].Floats[j])
				}
			}
		}
	default:
		return fmt.Sprintf("unexpected result type %T", want)
	}
	return ""
}

func sortedVector(v promql.Vector) promql.Vector {
	out := append(promql.Vector(nil), v...)
	sortByLabels(out)
	return out
}

func sortByLabels(v promql.Vector) {
	for i := 1; i < len(v); i++ {
		for j := i; j > 0 && labels.Compare(v[j-1].Metric, v[j].Metric) > 0; j-- {
			v[j-1], v[j] = v[j], v[j-1]
		}
	}
}
