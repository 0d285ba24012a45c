package sink_test

import (
	"fmt"
	"testing"

	"github.com/prometheus/prometheus/prompb"

	"github.com/bureauhub/bureauhub/agent/sink"
)

type countingQueue struct{ bytes, samples int }

func (q *countingQueue) Append(payload []byte, samples int) (uint64, error) {
	q.bytes += len(payload)
	q.samples += samples
	return 1, nil
}

// BenchmarkEncodeScrape encodes one scrape of 10,000 node-like series (one
// sample each) into buffer records, and reports the buffer bytes each
// sample takes: what sizes the disk buffer for a hub outage.
func BenchmarkEncodeScrape(b *testing.B) {
	q := &countingQueue{}
	s, err := sink.New(q, sink.Identity{Bureau: "consular", Cloud: "cloud-a", Cluster: "k1", Instance: "vm-1"}, 50_000, nil)
	if err != nil {
		b.Fatal(err)
	}
	mk := func(t int64) []prompb.TimeSeries {
		ts := make([]prompb.TimeSeries, 10_000)
		for i := range ts {
			ts[i] = prompb.TimeSeries{
				Labels: []prompb.Label{
					{Name: "__name__", Value: fmt.Sprintf("node_metric_%d_total", i%100)},
					{Name: "cpu", Value: fmt.Sprint(i % 8)}, {Name: "instance", Value: fmt.Sprintf("host-%d:9100", i/100)},
					{Name: "job", Value: "node"}, {Name: "mode", Value: "user"},
				},
				Samples: []prompb.Sample{{Timestamp: t, Value: float64(i) * 1.5}},
			}
		}
		return ts
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		ts := mk(int64(i) * 15000)
		b.StartTimer()
		if err := s.Write("scrape", ts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(q.bytes)/float64(q.samples), "bytes/sample")
}
