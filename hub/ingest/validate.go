package ingest

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
)

// Rejection reasons: stable tokens used in acks and in the
// bureauhub_ingest_rejected_samples_total{reason} metric.
const (
	ReasonMalformed         = "malformed_batch"
	ReasonMissingName       = "missing_metric_name"
	ReasonInvalidMetricName = "invalid_metric_name"
	ReasonInvalidLabelName  = "invalid_label_name"
	ReasonDuplicateLabel    = "duplicate_label_name"
	ReasonInvalidLabelValue = "invalid_label_value"
	ReasonTooManyLabels     = "too_many_labels"
	ReasonLabelTooLong      = "label_too_long"
	ReasonTooFarInFuture    = "sample_too_far_in_future"
	ReasonTooOld            = "sample_too_old"
	ReasonHistogram         = "native_histograms_unsupported"
	ReasonSeriesLimit       = "series_limit"
	ReasonRateLimited       = "rate_limited"
	ReasonUnauthenticated   = "unauthenticated"
)

// TenantLabel is forced to the tenant's name on every series, so that no
// bureau can write series that claim to be another's.
const TenantLabel = "bureau"

// rejectionSet counts refused samples per reason and keeps one example each.
type rejectionSet struct {
	counts   map[string]int
	examples map[string]string
}

func (r *rejectionSet) add(reason string, n int, example func() string) {
	if r.counts == nil {
		r.counts = make(map[string]int)
		r.examples = make(map[string]string)
	}
	if _, seen := r.counts[reason]; !seen {
		ex := example()
		if len(ex) > 256 {
			ex = ex[:256] + "..."
		}
		r.examples[reason] = ex
	}
	r.counts[reason] += n
}

func (r *rejectionSet) total() int {
	n := 0
	for _, c := range r.counts {
		n += c
	}
	return n
}

// item is one batch's validated samples, in columns, ready for the writer.
type item struct {
	tenant  string
	fps     []uint64
	ts      []int64
	vals    []float64
	series  []clickhouse.SeriesRow // series not yet written today by this hub
	samples int
}

func validMetricName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b == '_' || b == ':' || b >= '0' && b <= '9' && i > 0) {
			return false
		}
	}
	return true
}

func validLabelName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b == '_' || b >= '0' && b <= '9' && i > 0) {
			return false
		}
	}
	return true
}

func describe(ls []prompb.Label) string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, l := range ls {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "%s=%q", l.Name, l.Value)
	}
	sb.WriteByte('}')
	return sb.String()
}

// checkLabels validates one series' labels, sorted in place; it returns the
// reason for refusing them, or "".
func (c *Config) checkLabels(ls []prompb.Label) string {
	// The tenant label is added where absent: count it.
	n := len(ls) + 1
	for _, l := range ls {
		if l.Name == TenantLabel {
			n--
			break
		}
	}
	if n > c.MaxLabelsPerSeries {
		return ReasonTooManyLabels
	}
	if !slices.IsSortedFunc(ls, func(a, b prompb.Label) int { return strings.Compare(a.Name, b.Name) }) {
		slices.SortFunc(ls, func(a, b prompb.Label) int { return strings.Compare(a.Name, b.Name) })
	}
	hasName := false
	for i, l := range ls {
		if len(l.Name) > c.MaxLabelNameLength || len(l.Value) > c.MaxLabelValueLength {
			return ReasonLabelTooLong
		}
		if i > 0 && ls[i-1].Name == l.Name {
			return ReasonDuplicateLabel
		}
		if l.Name == labels.MetricName {
			if !validMetricName(l.Value) {
				return ReasonInvalidMetricName
			}
			hasName = true
			continue
		}
		if !validLabelName(l.Name) {
			return ReasonInvalidLabelName
		}
		if !utf8.ValidString(l.Value) {
			return ReasonInvalidLabelValue
		}
	}
	if !hasName {
		return ReasonMissingName
	}
	return ""
}

// convert validates wr for tenant and returns the accepted samples. Series
// that fail validation or exceed the tenant's series limit are counted in
// rej; their samples are not stored.
func (s *Service) convert(tenant string, wr *prompb.WriteRequest, now time.Time, rej *rejectionSet) *item {
	c := &s.cfg
	minT := now.Add(-c.MaxAge).UnixMilli()
	maxT := now.Add(c.MaxFuture).UnixMilli()
	n := 0
	for i := range wr.Timeseries {
		n += len(wr.Timeseries[i].Samples)
	}
	it := &item{
		tenant: tenant,
		fps:    make([]uint64, 0, n),
		ts:     make([]int64, 0, n),
		vals:   make([]float64, 0, n),
	}
	ts := s.tenant(tenant)
	var b labels.ScratchBuilder
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for i := range wr.Timeseries {
		series := &wr.Timeseries[i]
		if len(series.Histograms) > 0 {
			rej.add(ReasonHistogram, len(series.Histograms), func() string { return describe(series.Labels) })
		}
		if len(series.Samples) == 0 {
			continue
		}
		if reason := c.checkLabels(series.Labels); reason != "" {
			rej.add(reason, len(series.Samples), func() string { return describe(series.Labels) })
			continue
		}
		b.Reset()
		name := ""
		tenantSet := false
		for _, l := range series.Labels {
			switch {
			case l.Value == "":
				// An empty label value is the same as no label.
				continue
			case l.Name == labels.MetricName:
				name = l.Value
			case l.Name == TenantLabel:
				l.Value = tenant
				tenantSet = true
			}
			b.Add(l.Name, l.Value)
		}
		if !tenantSet {
			b.Add(TenantLabel, tenant)
			b.Sort()
		}
		lset := b.Labels()
		fp := lset.Hash()
		st, known := ts.series[fp]
		if !known && ts.limits.MaxActiveSeries > 0 && len(ts.series) >= ts.limits.MaxActiveSeries {
			rej.add(ReasonSeriesLimit, len(series.Samples), func() string { return lset.String() })
			continue
		}
		kept := 0
		var names, values []string
		for _, smp := range series.Samples {
			switch {
			case smp.Timestamp > maxT:
				rej.add(ReasonTooFarInFuture, 1, func() string {
					return fmt.Sprintf("%s @%d is %s ahead", lset.String(), smp.Timestamp, time.UnixMilli(smp.Timestamp).Sub(now).Round(time.Second))
				})
				continue
			case smp.Timestamp < minT:
				rej.add(ReasonTooOld, 1, func() string { return fmt.Sprintf("%s @%d", lset.String(), smp.Timestamp) })
				continue
			}
			it.fps = append(it.fps, fp)
			it.ts = append(it.ts, smp.Timestamp)
			it.vals = append(it.vals, smp.Value)
			kept++
			// The series table is indexed by the UTC days of the samples
			// (not of arrival), so that buffered or backfilled data is
			// found by day-pruned lookups.
			if day := SampleDay(smp.Timestamp); !known || st.writtenDay != day {
				if names == nil {
					names, values = splitLabels(lset)
				}
				it.series = append(it.series, clickhouse.SeriesRow{
					Tenant: tenant, Date: time.Unix(int64(day)*86400, 0).UTC(), Fingerprint: fp,
					MetricName: name, LabelNames: names, LabelValues: values,
				})
				st.writtenDay, known = day, true
			}
		}
		if kept == 0 {
			continue
		}
		st.lastSeen = now.Unix()
		ts.series[fp] = st
	}
	it.samples = len(it.ts)
	return it
}

// SampleDay is the UTC day (days since the epoch) of a timestamp in
// milliseconds; times before the epoch count as day 0, the first day a
// ClickHouse Date can hold.
func SampleDay(ms int64) int32 {
	if ms < 0 {
		return 0
	}
	return int32(ms / 86_400_000)
}

// splitLabels returns the names and values of lset without __name__, in
// the series table's layout.
func splitLabels(lset labels.Labels) (names, values []string) {
	names = make([]string, 0, lset.Len())
	values = make([]string, 0, lset.Len())
	lset.Range(func(l labels.Label) {
		if l.Name != labels.MetricName {
			names = append(names, l.Name)
			values = append(values, l.Value)
		}
	})
	return names, values
}
