package agent

import (
	"math"
	"strconv"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/prompb"
)

// familiesToSeries flattens gathered metric families into series the way
// the text exposition format would: histograms and summaries become their
// _bucket/_sum/_count and quantile series. extra labels are added to each.
func familiesToSeries(mfs []*dto.MetricFamily, ts int64, extra []prompb.Label) []prompb.TimeSeries {
	var out []prompb.TimeSeries
	add := func(name string, m *dto.Metric, v float64, more ...prompb.Label) {
		ls := make([]prompb.Label, 0, len(m.Label)+len(extra)+len(more)+1)
		ls = append(ls, prompb.Label{Name: "__name__", Value: name})
		for _, lp := range m.Label {
			ls = append(ls, prompb.Label{Name: lp.GetName(), Value: lp.GetValue()})
		}
		ls = append(ls, more...)
		ls = append(ls, extra...)
		out = append(out, prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Timestamp: ts, Value: v}}})
	}
	fmtF := func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.Metric {
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				add(name, m, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(name, m, m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				add(name, m, m.GetUntyped().GetValue())
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				for _, q := range s.Quantile {
					add(name, m, q.GetValue(), prompb.Label{Name: "quantile", Value: fmtF(q.GetQuantile())})
				}
				add(name+"_sum", m, s.GetSampleSum())
				add(name+"_count", m, float64(s.GetSampleCount()))
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				sawInf := false
				for _, b := range h.Bucket {
					if math.IsInf(b.GetUpperBound(), 1) {
						sawInf = true
					}
					add(name+"_bucket", m, float64(b.GetCumulativeCount()), prompb.Label{Name: "le", Value: fmtF(b.GetUpperBound())})
				}
				if !sawInf {
					add(name+"_bucket", m, float64(h.GetSampleCount()), prompb.Label{Name: "le", Value: "+Inf"})
				}
				add(name+"_sum", m, h.GetSampleSum())
				add(name+"_count", m, float64(h.GetSampleCount()))
			}
		}
	}
	return out
}
