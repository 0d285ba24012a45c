package clickhouse

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// BenchmarkSelect reads every sample of 1,000 series over 12 h at 15 s
// (2.88 M samples) through the querier, as a dashboard query over all
// series does, and iterates them as the engine would.
func BenchmarkSelect(b *testing.B) {
	st := newPromStorage(b).(*promStorage)
	const nSeries, points = 1000, 2880
	app := st.AppenderV2(context.Background())
	for s := range nSeries {
		ls := labels.FromStrings("__name__", "bench_total", "instance", fmt.Sprintf("vm-%d", s%50), "cpu", fmt.Sprint(s/50))
		for i := range points {
			if _, err := app.Append(0, ls, 0, int64(i)*15000, float64(i*s), nil, nil, storage.AppendV2Options{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		b.Fatal(err)
	}
	m := labels.MustNewMatcher(labels.MatchEqual, "__name__", "bench_total")
	b.ResetTimer()
	for b.Loop() {
		q, _ := st.s.Queryable(Scope{Tenants: []string{"test"}}, Limits{}).Querier(0, int64(points)*15000)
		ss := q.Select(context.Background(), true, nil, m)
		n := 0
		for ss.Next() {
			it := ss.At().Iterator(nil)
			for it.Next() != 0 {
				n++
			}
		}
		if ss.Err() != nil || n != nSeries*points {
			b.Fatalf("read %d samples (%v)", n, ss.Err())
		}
	}
	b.ReportMetric(float64(nSeries*points)*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
}
