package clickhouse

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// TestSelectAcrossTenants reads series of several tenants and metrics,
// half of them compacted, through every form of the statements' series
// condition: fingerprints and metric names listed, and fingerprints taken
// from a subquery on the series table (what a Select of many series
// does). The same label set is stored by every tenant with other values,
// so a condition that mixed up tenants and fingerprints returns the wrong
// values, and a scope must never return another tenant's series.
func TestSelectAcrossTenants(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	tenants := []string{"consular", "health", "transport"}
	metrics := []string{"up", "node_load1", "booking_requests_total"}
	day0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	// value encodes tenant, metric, instance and time, so every sample
	// says where it came from.
	value := func(ti, mi, inst int, ts int64) float64 {
		return float64(ti*1_000_000+mi*100_000+inst*10_000) + float64((ts-day0)/60_000)
	}
	var b Block
	for ti, tenant := range tenants {
		for mi, name := range metrics {
			for inst := range 3 {
				ls := labels.FromStrings("__name__", name, "instance", fmt.Sprintf("host-%d", inst))
				fp := Fingerprint(ls)
				for d := range int64(2) {
					b.Series = append(b.Series, SeriesRow{Tenant: tenant, Date: time.UnixMilli(day0 + d*dayMillis).UTC(), Fingerprint: fp,
						MetricName: name, LabelNames: []string{"instance"}, LabelValues: []string{ls.Get("instance")}})
				}
				// Every 10 minutes over two days.
				for ts := day0; ts < day0+2*dayMillis; ts += 600_000 {
					b.Tenants = append(b.Tenants, tenant)
					b.Fingerprints = append(b.Fingerprints, fp)
					b.Timestamps = append(b.Timestamps, ts)
					b.Values = append(b.Values, value(ti, mi, inst, ts))
				}
			}
		}
	}
	if err := s.WriteBlock(ctx, &b); err != nil {
		t.Fatal(err)
	}
	// The first day becomes chunks; the second stays raw.
	if _, err := s.CompactDay(ctx, time.UnixMilli(day0)); err != nil {
		t.Fatal(err)
	}

	type query struct {
		scope    Scope
		matchers []*labels.Matcher
		tenants  []int // the tenants whose series match
		metrics  []int
	}
	eq := func(n, v string) *labels.Matcher { return labels.MustNewMatcher(labels.MatchEqual, n, v) }
	re := func(n, v string) *labels.Matcher { return labels.MustNewMatcher(labels.MatchRegexp, n, v) }
	queries := []query{
		{Scope{Tenants: []string{"health"}}, []*labels.Matcher{eq("__name__", "node_load1")}, []int{1}, []int{1}},
		{Scope{Tenants: []string{"consular", "transport"}}, []*labels.Matcher{re("__name__", "up|node_load1")}, []int{0, 2}, []int{0, 1}},
		{Scope{All: true}, []*labels.Matcher{re("instance", "host-.*")}, []int{0, 1, 2}, []int{0, 1, 2}},
		{Scope{Tenants: []string{"transport", "nobody"}}, []*labels.Matcher{eq("__name__", "booking_requests_total")}, []int{2}, []int{2}},
	}
	// The range cuts the compacted day and the raw one.
	mint, maxt := day0+20*3_600_000, day0+dayMillis+3_600_000
	check := func(mode string) {
		t.Helper()
		for qi, q := range queries {
			qr, err := s.Queryable(q.scope, Limits{}).Querier(mint, maxt)
			if err != nil {
				t.Fatal(err)
			}
			set := qr.Select(ctx, true, &storage.SelectHints{Start: mint, End: maxt}, q.matchers...)
			got := map[string][]fSample{}
			for set.Next() {
				var out []fSample
				it := set.At().Iterator(nil)
				for it.Next() != chunkenc.ValNone {
					ts, v := it.At()
					out = append(out, fSample{ts, v})
				}
				if err := it.Err(); err != nil {
					t.Fatal(err)
				}
				if len(out) == 0 {
					t.Fatalf("%s: query %d: %s has no samples", mode, qi, set.At().Labels())
				}
				// Two tenants' series may have the same labels: the
				// tenant, from the first value, tells them apart.
				got[fmt.Sprintf("%s of tenant %d", set.At().Labels(), int(out[0].f)/1_000_000)] = out
			}
			if err := set.Err(); err != nil {
				t.Fatalf("%s: query %d: %v", mode, qi, err)
			}
			if want := len(q.tenants) * len(q.metrics) * 3; len(got) != want {
				var keys []string
				for k := range got {
					keys = append(keys, k)
				}
				slices.Sort(keys)
				t.Fatalf("%s: query %d returned %d series, want %d: %v", mode, qi, len(got), want, keys)
			}
			// Each series' values must all come from one tenant in scope
			// and its own metric and instance.
			for key, samples := range got {
				if len(samples) != int((maxt-mint)/600_000)+1 {
					t.Fatalf("%s: query %d: %s has %d samples, want %d", mode, qi, key, len(samples), (maxt-mint)/600_000+1)
				}
				first := samples[0]
				ti := int(first.f) / 1_000_000
				mi := int(first.f) % 1_000_000 / 100_000
				inst := int(first.f) % 100_000 / 10_000
				if !slices.Contains(q.tenants, ti) || !slices.Contains(q.metrics, mi) {
					t.Fatalf("%s: query %d: %s holds samples of tenant %d metric %d, outside the query", mode, qi, key, ti, mi)
				}
				for _, smp := range samples {
					if want := value(ti, mi, inst, smp.t); math.Float64bits(smp.f) != math.Float64bits(want) {
						t.Fatalf("%s: query %d: %s has %v at %d, want %v (samples of two series mixed)", mode, qi, key, smp.f, smp.t, want)
					}
				}
			}
		}
	}
	check("listed")
	oldSeries, oldNames := literalSeriesMax, literalNamesMax
	t.Cleanup(func() { literalSeriesMax, literalNamesMax = oldSeries, oldNames })
	literalSeriesMax, literalNamesMax = 0, 0
	check("subqueries")
}
