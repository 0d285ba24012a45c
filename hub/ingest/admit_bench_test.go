package ingest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	fpb "github.com/bureauhub/bureauhub/api/federationpb"
)

// BenchmarkAdmit decodes and validates one agent batch of 10,000
// node-like series with one sample each (the shape of a scrape), the hub's
// per-batch CPU before the ClickHouse insert.
func BenchmarkAdmit(b *testing.B) {
	cfg := Config{}
	cfg.SetDefaults()
	s, _ := newTestService(b, cfg)
	var wr prompb.WriteRequest
	for i := range 10_000 {
		wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
			Labels: []prompb.Label{
				{Name: "__name__", Value: fmt.Sprintf("node_metric_%d", i%100)},
				{Name: "bureau", Value: "t"}, {Name: "cloud", Value: "cloud-a"}, {Name: "cluster", Value: "k1"},
				{Name: "cpu", Value: fmt.Sprint(i % 8)}, {Name: "instance", Value: fmt.Sprintf("host-%d:9100", i/100)},
				{Name: "job", Value: "node"}, {Name: "mode", Value: "user"},
			},
			Samples: []prompb.Sample{{Timestamp: time.Now().UnixMilli(), Value: float64(i)}},
		})
	}
	raw, _ := wr.Marshal()
	batch := &fpb.Batch{AgentId: "a", Seq: 1, Encoding: fpb.Encoding_ENCODING_SNAPPY_PROMPB, Payload: snappy.Encode(nil, raw), Samples: 10_000}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		it, _, err := s.admit(context.Background(), "t", batch)
		if err != nil || it == nil || it.samples != 10_000 {
			b.Fatalf("admit: %v", err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*10_000), "ns/sample")
}
