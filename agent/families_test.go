package agent

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/proto"
)

// seriesKey renders ls sorted by name, so that tests do not depend on the
// order familiesToSeries emits labels in.
func seriesKey(ls []prompb.Label) string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = l.Name + "=" + l.Value
	}
	slices.Sort(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

// flatten maps each series' sorted labels to its single sample's value,
// failing on a duplicate series, a sample count other than one, or a
// timestamp other than ts.
func flatten(tb testing.TB, series []prompb.TimeSeries, ts int64) map[string]float64 {
	tb.Helper()
	out := make(map[string]float64, len(series))
	for _, s := range series {
		k := seriesKey(s.Labels)
		if _, dup := out[k]; dup {
			tb.Fatalf("series %s emitted twice", k)
		}
		if len(s.Samples) != 1 {
			tb.Fatalf("series %s has %d samples, want 1", k, len(s.Samples))
		}
		if s.Samples[0].Timestamp != ts {
			tb.Fatalf("series %s at %d, want %d", k, s.Samples[0].Timestamp, ts)
		}
		out[k] = s.Samples[0].Value
	}
	return out
}

// gather registers cs in a fresh registry and gathers it.
func gather(tb testing.TB, cs ...prometheus.Collector) []*dto.MetricFamily {
	tb.Helper()
	reg := prometheus.NewRegistry()
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			tb.Fatalf("register: %v", err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatalf("gather: %v", err)
	}
	return mfs
}

func k(nv ...string) string {
	ls := make([]prompb.Label, 0, len(nv)/2)
	for i := 0; i < len(nv); i += 2 {
		ls = append(ls, prompb.Label{Name: nv[i], Value: nv[i+1]})
	}
	return seriesKey(ls)
}

func TestFamiliesToSeries(t *testing.T) {
	const ts = 1_700_000_000_000
	tests := []struct {
		name  string
		mfs   func(tb testing.TB) []*dto.MetricFamily
		extra []prompb.Label
		want  map[string]float64
	}{
		{
			name: "counter",
			mfs: func(tb testing.TB) []*dto.MetricFamily {
				c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "req_total", Help: "h"}, []string{"code"})
				c.WithLabelValues("200").Add(3)
				c.WithLabelValues("500").Inc()
				return gather(tb, c)
			},
			want: map[string]float64{
				k("__name__", "req_total", "code", "200"): 3,
				k("__name__", "req_total", "code", "500"): 1,
			},
		},
		{
			name: "gauge",
			mfs: func(tb testing.TB) []*dto.MetricFamily {
				g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "temp", Help: "h", ConstLabels: prometheus.Labels{"room": "a"}})
				g.Set(-2.5)
				return gather(tb, g)
			},
			want: map[string]float64{k("__name__", "temp", "room", "a"): -2.5},
		},
		{
			name: "untyped",
			mfs: func(tb testing.TB) []*dto.MetricFamily {
				return gather(tb, prometheus.NewUntypedFunc(prometheus.UntypedOpts{Name: "u", Help: "h"}, func() float64 { return 7 }))
			},
			want: map[string]float64{k("__name__", "u"): 7},
		},
		{
			name: "summary",
			mfs: func(tb testing.TB) []*dto.MetricFamily {
				s := prometheus.NewSummaryVec(prometheus.SummaryOpts{Name: "lat", Help: "h",
					Objectives: map[float64]float64{0.5: 0.05, 0.99: 0.001}}, []string{"op"})
				for i := 1; i <= 10; i++ {
					s.WithLabelValues("get").Observe(float64(i))
				}
				return gather(tb, s)
			},
			want: map[string]float64{
				k("__name__", "lat", "op", "get", "quantile", "0.5"):  5,
				k("__name__", "lat", "op", "get", "quantile", "0.99"): 10,
				k("__name__", "lat_sum", "op", "get"):                 55,
				k("__name__", "lat_count", "op", "get"):               10,
			},
		},
		{
			name: "histogram without an explicit +Inf bucket",
			mfs: func(tb testing.TB) []*dto.MetricFamily {
				h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "size", Help: "h", Buckets: []float64{1, 2.5}})
				for _, v := range []float64{0.5, 2, 3} {
					h.Observe(v)
				}
				return gather(tb, h)
			},
			want: map[string]float64{
				k("__name__", "size_bucket", "le", "1"):    1,
				k("__name__", "size_bucket", "le", "2.5"):  2,
				k("__name__", "size_bucket", "le", "+Inf"): 3,
				k("__name__", "size_sum"):                  5.5,
				k("__name__", "size_count"):                3,
			},
		},
		{
			name: "histogram with an explicit +Inf bucket",
			mfs: func(testing.TB) []*dto.MetricFamily {
				return []*dto.MetricFamily{{
					Name: proto.String("size"),
					Type: dto.MetricType_HISTOGRAM.Enum(),
					Metric: []*dto.Metric{{
						Label: []*dto.LabelPair{{Name: proto.String("path"), Value: proto.String("/x")}},
						Histogram: &dto.Histogram{
							SampleCount: proto.Uint64(4),
							SampleSum:   proto.Float64(9),
							Bucket: []*dto.Bucket{
								{UpperBound: proto.Float64(1), CumulativeCount: proto.Uint64(1)},
								{UpperBound: proto.Float64(math.Inf(1)), CumulativeCount: proto.Uint64(4)},
							},
						},
					}},
				}}
			},
			want: map[string]float64{
				k("__name__", "size_bucket", "path", "/x", "le", "1"):    1,
				k("__name__", "size_bucket", "path", "/x", "le", "+Inf"): 4,
				k("__name__", "size_sum", "path", "/x"):                  9,
				k("__name__", "size_count", "path", "/x"):                4,
			},
		},
		{
			name: "histogram with only native buckets",
			mfs: func(tb testing.TB) []*dto.MetricFamily {
				h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "nat", Help: "h", Buckets: []float64{},
					NativeHistogramBucketFactor: 1.1})
				h.Observe(2)
				return gather(tb, h)
			},
			want: map[string]float64{
				k("__name__", "nat_bucket", "le", "+Inf"): 1,
				k("__name__", "nat_sum"):                  2,
				k("__name__", "nat_count"):                1,
			},
		},
		{
			name: "extra labels on every series",
			mfs: func(tb testing.TB) []*dto.MetricFamily {
				c := prometheus.NewCounter(prometheus.CounterOpts{Name: "c_total", Help: "h"})
				c.Add(2)
				s := prometheus.NewSummary(prometheus.SummaryOpts{Name: "s", Help: "h"})
				s.Observe(4)
				h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h", Help: "h", Buckets: []float64{5}})
				h.Observe(4)
				return gather(tb, c, s, h)
			},
			extra: []prompb.Label{{Name: "job", Value: "node"}, {Name: "zone", Value: "z1"}},
			want: map[string]float64{
				k("__name__", "c_total", "job", "node", "zone", "z1"):                2,
				k("__name__", "s_sum", "job", "node", "zone", "z1"):                  4,
				k("__name__", "s_count", "job", "node", "zone", "z1"):                1,
				k("__name__", "h_bucket", "le", "5", "job", "node", "zone", "z1"):    1,
				k("__name__", "h_bucket", "le", "+Inf", "job", "node", "zone", "z1"): 1,
				k("__name__", "h_sum", "job", "node", "zone", "z1"):                  4,
				k("__name__", "h_count", "job", "node", "zone", "z1"):                1,
			},
		},
		{
			name: "nothing gathered",
			mfs:  func(testing.TB) []*dto.MetricFamily { return nil },
			want: map[string]float64{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			series := familiesToSeries(tt.mfs(t), ts, tt.extra)
			got := flatten(t, series, ts)
			if !maps.Equal(got, tt.want) {
				t.Errorf("series:\n%s\nwant:\n%s", dump(got), dump(tt.want))
			}
			for _, s := range series {
				if s.Labels[0].Name != "__name__" {
					t.Errorf("series %s does not start with __name__", seriesKey(s.Labels))
				}
			}
		})
	}
}

// TestFamiliesToSeriesDoesNotShareExtra checks that each series owns its
// label slice, since the sink sorts and rewrites labels in place.
func TestFamiliesToSeriesDoesNotShareExtra(t *testing.T) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total", Help: "h"}, []string{"x"})
	c.WithLabelValues("1").Inc()
	c.WithLabelValues("2").Inc()
	extra := []prompb.Label{{Name: "job", Value: "node"}}
	series := familiesToSeries(gather(t, c), 1, extra)
	if len(series) != 2 {
		t.Fatalf("%d series, want 2", len(series))
	}
	series[0].Labels[len(series[0].Labels)-1].Value = "changed"
	if got := series[1].Labels[len(series[1].Labels)-1].Value; got != "node" {
		t.Errorf("changing one series' labels changed another's to %q", got)
	}
	if extra[0].Value != "node" {
		t.Errorf("changing a series' labels changed extra to %q", extra[0].Value)
	}
}

func dump(m map[string]float64) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "  %s %v\n", k, m[k])
	}
	return b.String()
}
