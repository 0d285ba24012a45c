package ingest

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
	"github.com/bureauhub/bureauhub/internal/fpchain"
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

func describe(ls []wireLabel) string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, l := range ls {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "%s=%q", l.name, l.value)
	}
	sb.WriteByte('}')
	return sb.String()
}

func byName(a, b wireLabel) int { return strings.Compare(a.name, b.name) }

// checkWire validates one series' labels, as sent (empty values included),
// sorting them in place.
func (c *Config) checkWire(ls []wireLabel) string {
	// The tenant label is added where absent: count it.
	n := len(ls) + 1
	for _, l := range ls {
		if l.name == TenantLabel {
			n--
			break
		}
	}
	if n > c.MaxLabelsPerSeries {
		return ReasonTooManyLabels
	}
	if !slices.IsSortedFunc(ls, byName) {
		slices.SortFunc(ls, byName)
	}
	hasName := false
	for i, l := range ls {
		if len(l.name) > c.MaxLabelNameLength || len(l.value) > c.MaxLabelValueLength {
			return ReasonLabelTooLong
		}
		if i > 0 && ls[i-1].name == l.name {
			return ReasonDuplicateLabel
		}
		if l.name == labels.MetricName {
			if !validMetricName(l.value) {
				return ReasonInvalidMetricName
			}
			hasName = true
			continue
		}
		if !validLabelName(l.name) {
			return ReasonInvalidLabelName
		}
		if !utf8.ValidString(l.value) {
			return ReasonInvalidLabelValue
		}
	}
	if !hasName {
		return ReasonMissingName
	}
	return ""
}

// convert validates already decoded series (local writes, tests).
func (s *Service) convert(tenant string, wr *prompb.WriteRequest, now time.Time, rej *rejectionSet) *item {
	var req wireRequest
	req.fromProto(wr.Timeseries)
	return s.convertWire(tenant, &req, now, rej)
}

// normalize writes into dst the labels a series is stored with: empty
// values dropped (an empty label is no label), the tenant label forced to
// the tenant, in name order.
func normalize(dst, ls []wireLabel, tenant string) []wireLabel {
	start := len(dst)
	tenantSet := false
	for _, l := range ls {
		// Sorted labels (as senders must send them) get the tenant label
		// in its place, and need no sort below.
		if !tenantSet && l.name > TenantLabel {
			dst = append(dst, wireLabel{TenantLabel, tenant})
			tenantSet = true
		}
		switch {
		case l.value == "":
			continue
		case l.name == TenantLabel:
			if tenantSet {
				continue // placed already, with the tenant's value
			}
			l.value = tenant
			tenantSet = true
		}
		dst = append(dst, l)
	}
	if !tenantSet {
		dst = append(dst, wireLabel{TenantLabel, tenant})
	}
	if out := dst[start:]; !slices.IsSortedFunc(out, byName) {
		slices.SortFunc(out, byName)
	}
	return dst
}

// convertScratch is convertWire's working space.
type convertScratch struct {
	norm   []wireLabel
	bounds []int
	fps    []uint64
}

var convertScratchPool = sync.Pool{New: func() any { return new(convertScratch) }}

// convertWire validates req for tenant and returns the accepted samples.
// Series that fail validation or exceed the tenant's series limit are
// counted in rej; their samples are not stored. A series already known to
// the tenant was validated when first seen (the fingerprint covers every
// label), so only new series are checked in full.
func (s *Service) convertWire(tenant string, req *wireRequest, now time.Time, rej *rejectionSet) *item {
	c := &s.cfg
	minT := now.Add(-c.MaxAge).UnixMilli()
	maxT := now.Add(c.MaxFuture).UnixMilli()
	it := &item{
		tenant: tenant,
		fps:    make([]uint64, 0, len(req.samples)),
		ts:     make([]int64, 0, len(req.samples)),
		vals:   make([]float64, 0, len(req.samples)),
	}
	// Outside the tenant's lock: stored label sets and fingerprints, in
	// scratch space reused across batches (labels are copied out of it
	// into series rows before it goes back).
	sc := convertScratchPool.Get().(*convertScratch)
	defer convertScratchPool.Put(sc)
	norm := slices.Grow(sc.norm[:0], len(req.labels)+len(req.series))
	bounds := slices.Grow(sc.bounds[:0], len(req.series)+1)[:len(req.series)+1]
	fps := slices.Grow(sc.fps[:0], len(req.series))[:len(req.series)]
	bounds[0] = 0
	defer func() { sc.norm, sc.bounds, sc.fps = norm[:0], bounds[:0], fps[:0] }()
	var h clickhouse.Hasher
	for i := range req.series {
		if n := req.series[i].histograms; n > 0 {
			rej.add(ReasonHistogram, n, func() string { return describe(req.seriesLabels(i)) })
		}
		lo := len(norm)
		if len(req.seriesSamples(i)) > 0 {
			norm = normalize(norm, req.seriesLabels(i), tenant)
			h.Reset()
			for _, l := range norm[lo:] {
				h.Add(l.name, l.value)
			}
			fps[i] = h.Sum()
		}
		bounds[i+1] = len(norm)
	}

	ts := s.tenant(tenant)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var prev *fpchain.Node[seriesState]
	for i := range req.series {
		samples := req.seriesSamples(i)
		if len(samples) == 0 {
			continue
		}
		fp, stored := fps[i], norm[bounds[i]:bounds[i+1]]
		node := ts.series.Next(prev, fp)
		var st *seriesState
		if node != nil {
			st = &node.V
		} else {
			if reason := c.checkWire(req.seriesLabels(i)); reason != "" {
				rej.add(reason, len(samples), func() string { return describe(req.seriesLabels(i)) })
				continue
			}
			if ts.limits.MaxActiveSeries > 0 && ts.series.Len() >= ts.limits.MaxActiveSeries {
				rej.add(ReasonSeriesLimit, len(samples), func() string { return describe(stored) })
				continue
			}
			st = &seriesState{writtenDay: -1} // added below once a sample is kept
		}
		kept := 0
		for _, smp := range samples {
			switch {
			case smp.t > maxT:
				rej.add(ReasonTooFarInFuture, 1, func() string {
					return fmt.Sprintf("%s @%d is %s ahead", describe(stored), smp.t, time.UnixMilli(smp.t).Sub(now).Round(time.Second))
				})
				continue
			case smp.t < minT:
				rej.add(ReasonTooOld, 1, func() string { return fmt.Sprintf("%s @%d", describe(stored), smp.t) })
				continue
			}
			it.fps = append(it.fps, fp)
			it.ts = append(it.ts, smp.t)
			it.vals = append(it.vals, smp.v)
			kept++
			// The series table is indexed by the UTC days of the samples
			// (not of arrival), so that buffered or backfilled data is
			// found by day-pruned lookups.
			if day := SampleDay(smp.t); st.writtenDay != day {
				it.series = append(it.series, seriesRow(tenant, day, fp, stored))
				st.writtenDay = day
			}
		}
		if kept == 0 {
			continue
		}
		st.lastSeen = now.Unix()
		if node == nil {
			node = ts.series.Add(prev, fp, *st)
		}
		prev = node
	}
	it.samples = len(it.ts)
	return it
}

// seriesRow builds a series table row, copying the strings out of the
// batch's buffer.
func seriesRow(tenant string, day int32, fp uint64, ls []wireLabel) clickhouse.SeriesRow {
	r := clickhouse.SeriesRow{Tenant: tenant, Date: time.Unix(int64(day)*86400, 0).UTC(), Fingerprint: fp,
		LabelNames: make([]string, 0, len(ls)), LabelValues: make([]string, 0, len(ls))}
	for _, l := range ls {
		if l.name == labels.MetricName {
			r.MetricName = strings.Clone(l.value)
			continue
		}
		r.LabelNames = append(r.LabelNames, strings.Clone(l.name))
		r.LabelValues = append(r.LabelValues, strings.Clone(l.value))
	}
	return r
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
