package head

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
)

// BenchmarkAppend is the head's cost in the ingest path: blocks as the
// writer hands them over once ClickHouse stored them (500,000 samples, the
// default ingest.flush_samples), one sample per series per 15 s round, over
// 100,000 node_exporter-like series of 3 tenants (ingestbench's load).
// Reported per sample.
func BenchmarkAppend(b *testing.B) {
	const series, blockSamples = 100_000, 500_000
	tenants := []string{"alpha", "beta", "gamma"}
	h := newTestHead(b, Config{}, tenants...)
	h.refill(b, emptySource(b))
	rows := make([]clickhouse.SeriesRow, series)
	fps := make([]uint64, series)
	for i := range rows {
		ls := labels.FromStrings("__name__", fmt.Sprintf("node_metric_%d", i%124), "bureau", tenants[i%3],
			"instance", fmt.Sprintf("host-%d:9100", i/256), "job", "node", "cpu", fmt.Sprint(i%16), "mode", fmt.Sprint(i%8))
		fps[i] = clickhouse.Fingerprint(ls)
		rows[i] = clickhouse.SeriesRow{Tenant: tenants[i%3], Fingerprint: fps[i], MetricName: ls.Get(labels.MetricName)}
		ls.Range(func(l labels.Label) {
			if l.Name != labels.MetricName {
				rows[i].LabelNames, rows[i].LabelValues = append(rows[i].LabelNames, l.Name), append(rows[i].LabelValues, l.Value)
			}
		})
	}
	// Rounds of every series, 15 s apart, ending now; the first block
	// carries the series rows, as a day's first samples do.
	start := h.now.Add(-time.Hour).UnixMilli()
	next := 0 // the next sample: round next/series, series next%series
	block := func() *clickhouse.Block {
		var bl clickhouse.Block
		if next == 0 {
			bl.Series = rows
		}
		for range blockSamples {
			i := next % series
			bl.Tenants = append(bl.Tenants, rows[i].Tenant)
			bl.Fingerprints = append(bl.Fingerprints, fps[i])
			bl.Timestamps = append(bl.Timestamps, start+int64(next/series)*15_000)
			bl.Values = append(bl.Values, float64(next))
			next++
		}
		return &bl
	}
	h.Append(block()) // the series are created before the clock starts
	blocks := make([]*clickhouse.Block, 0, 8)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		blocks = blocks[:0]
		for range cap(blocks) {
			blocks = append(blocks, block())
		}
		b.StartTimer()
		for _, bl := range blocks {
			h.Append(bl)
		}
	}
	b.StopTimer()
	perSample := float64(b.Elapsed().Nanoseconds()) / float64(b.N*cap(blocks)*blockSamples)
	b.ReportMetric(perSample, "ns/sample")
	b.ReportMetric(0, "ns/op")
	if got, want := testutil.ToFloat64(h.m.appended), float64((b.N*cap(blocks)+1)*blockSamples); got != want {
		b.Fatalf("appended %v samples, want %v", got, want)
	}
}
