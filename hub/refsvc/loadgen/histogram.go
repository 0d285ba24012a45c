package loadgen

import (
	"math"
	"time"
)

// Histogram is a fixed-size latency sketch with logarithmic buckets, in the
// spirit of HDR histograms: values from 1µs to about 2 minutes are kept
// with a relative error under 1% (each bucket is 2% wide and a quantile is
// reported at its geometric middle), values outside are clamped. Its size
// does not grow with the number of values. The zero value is not usable;
// build it with NewHistogram. Not safe for concurrent use.
type Histogram struct {
	counts []uint64
	n      uint64
	max    time.Duration
}

const (
	histMin    = time.Microsecond
	histGrowth = 1.02
	histMaxLog = 18.7 // ln(2 min / 1µs) rounded up
)

var (
	histLogGrowth = math.Log(histGrowth)
	histBuckets   = int(histMaxLog/histLogGrowth) + 2
)

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{counts: make([]uint64, histBuckets)}
}

func histIndex(d time.Duration) int {
	if d <= histMin {
		return 0
	}
	i := int(math.Log(float64(d)/float64(histMin))/histLogGrowth) + 1
	return min(i, histBuckets-1)
}

// histValue is the geometric middle of bucket i (bucket 0 holds ≤ 1µs).
func histValue(i int) time.Duration {
	if i == 0 {
		return histMin
	}
	return time.Duration(float64(histMin) * math.Exp((float64(i-1)+0.5)*histLogGrowth))
}

// Record adds one value.
func (h *Histogram) Record(d time.Duration) {
	h.counts[histIndex(d)]++
	h.n++
	h.max = max(h.max, d)
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest value recorded (exact).
func (h *Histogram) Max() time.Duration { return h.max }

// Quantile returns the q-quantile (0 ≤ q ≤ 1) within 1%, or 0 if empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			if i == len(h.counts)-1 { // clamped values: only the max is known
				return h.max
			}
			return min(histValue(i), h.max)
		}
	}
	return h.max
}

// Merge adds o's values to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// Reset empties h, keeping its memory.
func (h *Histogram) Reset() {
	clear(h.counts)
	h.n = 0
	h.max = 0
}
