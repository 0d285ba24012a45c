package ingest

import (
	"context"
	"encoding/binary"
	"math"
	"sync"

	"github.com/golang/snappy"
)

// SeriesSet is the generated series with their labels encoded once.
type SeriesSet struct {
	Series  []Series
	encoded [][]byte // per series: its labels as prompb Label fields
}

// NewSeriesSet generates n series (see GenerateSeries).
func NewSeriesSet(n int) *SeriesSet {
	set := &SeriesSet{Series: GenerateSeries(n), encoded: make([][]byte, n)}
	for i, s := range set.Series {
		set.encoded[i] = encodeLabels(s.Labels)
	}
	return set
}

// Load is the generated series and their values, cut into partitions that
// senders own: a series belongs to one partition, so its samples leave in
// time order, which Prometheus needs.
type Load struct {
	set      *SeriesSet
	baseMs   int64
	maxSkew  int
	mu       sync.Mutex
	cond     *sync.Cond
	rounds   []int // per partition: the round it is generating
	stopped  bool
	parts    []*Partition
	minRound int
}

// NewLoad prepares series for nparts partitions whose first scrape is at
// baseMs. No partition starts a round more than maxSkew rounds ahead of the
// slowest one, so that every target sees the same roughly time-ordered
// stream (Prometheus refuses samples over an hour older than its newest).
func NewLoad(set *SeriesSet, nparts int, baseMs int64, maxSkew int) *Load {
	l := &Load{set: set, baseMs: baseMs, maxSkew: maxSkew, rounds: make([]int, nparts)}
	l.cond = sync.NewCond(&l.mu)
	n := len(set.Series)
	for p := range nparts {
		lo, hi := p*n/nparts, (p+1)*n/nparts
		part := &Partition{load: l, idx: p, lo: lo, hi: hi, next: lo, values: make([]float64, hi-lo)}
		l.parts = append(l.parts, part)
	}
	return l
}

// Partition returns partition i. A partition is used by one goroutine.
func (l *Load) Partition(i int) *Partition { return l.parts[i] }

// Stop releases partitions waiting for slower ones; their Next returns
// false from then on.
func (l *Load) Stop() {
	l.mu.Lock()
	l.stopped = true
	l.cond.Broadcast()
	l.mu.Unlock()
}

// Rounds returns the scrape rounds every partition has completed.
func (l *Load) Rounds() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.minRound
}

// advance records that partition p starts round r and waits until that
// is at most maxSkew rounds ahead of the slowest partition.
func (l *Load) advance(ctx context.Context, p, r int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rounds[p] = r
	m := r
	for _, x := range l.rounds {
		m = min(m, x)
	}
	if m > l.minRound {
		l.minRound = m
		l.cond.Broadcast()
	}
	for !l.stopped && ctx.Err() == nil && r-l.minRound > l.maxSkew {
		l.cond.Wait()
	}
	return !l.stopped && ctx.Err() == nil
}

// Partition generates the samples of a contiguous range of series, scrape
// round after scrape round.
type Partition struct {
	load   *Load
	idx    int
	lo, hi int // series [lo, hi)
	next   int // next series to emit
	round  int
	values []float64 // last value per series of the partition
	raw    []byte
}

// Batch is one encoded remote_write 1.0 payload.
type Batch struct {
	Payload []byte // snappy-compressed prompb.WriteRequest; owned by the caller
	Samples int
	RawSize int // bytes before compression
}

// Next encodes the next batchSize samples: one per series, the series'
// next scrape. It returns false when the load stopped or ctx ended.
func (p *Partition) Next(ctx context.Context, batchSize int) (Batch, bool) {
	if p.hi == p.lo {
		return Batch{}, false
	}
	if p.next == p.lo && !p.load.advance(ctx, p.idx, p.round) {
		return Batch{}, false
	}
	raw := p.raw[:0]
	n := 0
	for n < batchSize {
		if p.next == p.hi {
			p.next = p.lo
			p.round++
			if !p.load.advance(ctx, p.idx, p.round) {
				return Batch{}, false
			}
		}
		id := p.next
		s := &p.load.set.Series[id]
		ts := timestamp(p.load.baseMs, s.Host, p.round)
		v := s.model.next(p.values[id-p.lo], id, p.round, ts)
		p.values[id-p.lo] = v
		raw = appendTimeSeries(raw, p.load.set.encoded[id], v, ts)
		p.next++
		n++
	}
	p.raw = raw
	return Batch{Payload: snappy.Encode(nil, raw), Samples: n, RawSize: len(raw)}, true
}

// The prompb wire format, written by hand: labels are encoded once per
// series, and a sample costs a copy and a few bytes.
const (
	tagTimeseries = 1<<3 | 2 // WriteRequest.timeseries
	tagLabels     = 1<<3 | 2 // TimeSeries.labels
	tagSamples    = 2<<3 | 2 // TimeSeries.samples
	tagName       = 1<<3 | 2 // Label.name
	tagValue      = 2<<3 | 2 // Label.value
	tagSampleVal  = 1<<3 | 1 // Sample.value, fixed64
	tagSampleTS   = 2<<3 | 0 // Sample.timestamp, varint
)

func encodeLabels(ls [][2]string) []byte {
	var b []byte
	for _, l := range ls {
		n := 1 + varintLen(uint64(len(l[0]))) + len(l[0]) + 1 + varintLen(uint64(len(l[1]))) + len(l[1])
		b = append(b, tagLabels)
		b = binary.AppendUvarint(b, uint64(n))
		b = append(b, tagName)
		b = binary.AppendUvarint(b, uint64(len(l[0])))
		b = append(b, l[0]...)
		b = append(b, tagValue)
		b = binary.AppendUvarint(b, uint64(len(l[1])))
		b = append(b, l[1]...)
	}
	return b
}

func appendTimeSeries(b, labels []byte, v float64, ts int64) []byte {
	sampleLen := 1 + 8
	if ts != 0 {
		sampleLen += 1 + varintLen(uint64(ts))
	}
	seriesLen := len(labels) + 1 + varintLen(uint64(sampleLen)) + sampleLen
	b = append(b, tagTimeseries)
	b = binary.AppendUvarint(b, uint64(seriesLen))
	b = append(b, labels...)
	b = append(b, tagSamples)
	b = binary.AppendUvarint(b, uint64(sampleLen))
	b = append(b, tagSampleVal)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	if ts != 0 {
		b = append(b, tagSampleTS)
		b = binary.AppendUvarint(b, uint64(ts))
	}
	return b
}

func varintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}
