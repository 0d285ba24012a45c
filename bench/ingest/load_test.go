package ingest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

func decode(tb testing.TB, b Batch) *prompb.WriteRequest {
	tb.Helper()
	raw, err := snappy.Decode(nil, b.Payload)
	if err != nil {
		tb.Fatal(err)
	}
	var wr prompb.WriteRequest
	if err := wr.Unmarshal(raw); err != nil {
		tb.Fatal(err)
	}
	return &wr
}

func TestGenerateSeries(t *testing.T) {
	const n = 100_000
	series := GenerateSeries(n)
	if len(series) != n {
		t.Fatalf("got %d series, want %d", len(series), n)
	}
	seen := make(map[string]bool, n)
	names := map[string]bool{}
	labelCount := 0
	for _, s := range series {
		if len(s.Labels) < 7 || len(s.Labels) > 10 {
			t.Fatalf("series %v has %d labels; want 7 to 10", s.Labels, len(s.Labels))
		}
		if !slices.IsSortedFunc(s.Labels, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) }) {
			t.Fatalf("labels %v not sorted by name", s.Labels)
		}
		key := ""
		for _, l := range s.Labels {
			key += l[0] + "=" + l[1] + ","
			if l[0] == "__name__" {
				names[l[1]] = true
			}
		}
		if seen[key] {
			t.Fatalf("duplicate series %s", key)
		}
		seen[key] = true
		labelCount += len(s.Labels)
	}
	if len(names) < 100 {
		t.Errorf("%d metric names; want at least 100", len(names))
	}
	t.Logf("%d metric names, %d series per host, %.2f labels per series", len(names), SeriesPerHost(), float64(labelCount)/n)
}

// TestPartitionBatches checks the hand-written encoding against prompb and
// the values' realism: one sample per series per round, 15 s apart, and
// counters that never decrease.
func TestPartitionBatches(t *testing.T) {
	set := NewSeriesSet(1000)
	const base = 1_700_000_000_000
	load := NewLoad(set, 2, base, 4)
	part := load.Partition(1) // series 500..999
	type point struct {
		ts int64
		v  float64
	}
	last := map[string]point{}
	name := func(ls []prompb.Label) string {
		var sb strings.Builder
		for _, l := range ls {
			sb.WriteString(l.Name + "=" + l.Value + ",")
		}
		return sb.String()
	}
	samples := 0
	// 300-sample batches cross round boundaries; 3 rounds of 500 series.
	for range 5 {
		b, ok := part.Next(context.Background(), 300)
		if !ok {
			t.Fatal("Next returned false")
		}
		wr := decode(t, b)
		if b.Samples != 300 || len(wr.Timeseries) != 300 {
			t.Fatalf("batch has %d samples, %d series; want 300", b.Samples, len(wr.Timeseries))
		}
		for _, ts := range wr.Timeseries {
			if len(ts.Samples) != 1 {
				t.Fatalf("series has %d samples", len(ts.Samples))
			}
			k := name(ts.Labels)
			s := ts.Samples[0]
			if p, ok := last[k]; ok {
				if d := s.Timestamp - p.ts; d < ScrapeIntervalMillis-5 || d > ScrapeIntervalMillis+5 {
					t.Fatalf("%s: samples %d ms apart", k, d)
				}
				if strings.Contains(k, "_total,") && s.Value < p.v {
					t.Fatalf("counter %s went down from %g to %g", k, p.v, s.Value)
				}
			} else if s.Timestamp < base || s.Timestamp >= base+ScrapeIntervalMillis+5 {
				t.Fatalf("%s: first timestamp %d outside the first interval", k, s.Timestamp)
			}
			last[k] = point{s.Timestamp, s.Value}
			samples++
		}
	}
	if len(last) != 500 {
		t.Errorf("saw %d series; want the partition's 500", len(last))
	}
	if load.Rounds() != 0 {
		t.Errorf("Rounds() = %d; want 0 while partition 0 has not started", load.Rounds())
	}
}

func TestLoadSkew(t *testing.T) {
	set := NewSeriesSet(100)
	load := NewLoad(set, 2, 0, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := load.Partition(0)
	// Partition 1 never starts, so partition 0 stops after rounds 0..2.
	done := make(chan int)
	go func() {
		n := 0
		for {
			if _, ok := p.Next(ctx, 50); !ok {
				done <- n
				return
			}
			n++
		}
	}()
	time.Sleep(200 * time.Millisecond)
	load.Stop()
	if n := <-done; n != 3 {
		t.Errorf("partition 0 produced %d rounds ahead of a stalled partition; want 3 (rounds 0 to max skew 2)", n)
	}
}

func BenchmarkPartitionNext(b *testing.B) {
	set := NewSeriesSet(100_000)
	load := NewLoad(set, 1, 1_700_000_000_000, 4)
	p := load.Partition(0)
	var raw, comp int
	for b.Loop() {
		batch, _ := p.Next(context.Background(), 10_000)
		raw += batch.RawSize
		comp += len(batch.Payload)
	}
	b.ReportMetric(float64(b.N*10_000)/b.Elapsed().Seconds(), "samples/s")
	b.ReportMetric(float64(raw)/float64(b.N*10_000), "raw-B/sample")
	b.ReportMetric(float64(comp)/float64(b.N*10_000), "snappy-B/sample")
}
