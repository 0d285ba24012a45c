package ingest

import (
	"cmp"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/bureauhub/bureauhub/hub/store/chunk"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// BenchmarkChunkEncodings measures, in bytes per sample, two encodings of
// the ingest benchmark's series (5,120 of them, 683 samples each, in a
// shuffled order as fingerprints order them in ClickHouse), cut into
// chunks of 240 samples and compressed with ZSTD in 1 MiB blocks as
// ClickHouse compresses a column:
//   - xor: Prometheus's XOR chunks, what the hub's compaction writes;
//   - decimal: delta-of-delta varint timestamps, and values as integer
//     mantissas at one decimal exponent per chunk, delta-of-delta varints
//     (VictoriaMetrics's approach), a candidate for the next chunk format.
//
// Run: go test -run '^$' -bench ChunkEncodings -benchtime 1x ./bench/ingest/
func BenchmarkChunkEncodings(b *testing.B) {
	const nSeries, rounds, chunkLen = 5120, 683, 240
	set := GenerateSeries(nSeries)
	var xor, dec, ours []byte
	for range b.N {
		xor, dec, ours = xor[:0], dec[:0], ours[:0]
		for _, id := range rand.New(rand.NewPCG(1, 2)).Perm(len(set)) {
			ts, vs := seriesSamples(&set[id], id, rounds)
			for i := 0; i < rounds; i += chunkLen {
				j := min(i+chunkLen, rounds)
				c := chunkenc.NewXORChunk()
				app, _ := c.Appender()
				for k := i; k < j; k++ {
					app.Append(0, ts[k], vs[k])
				}
				xor = append(xor, c.Bytes()...)
				dec = appendDecimalChunk(dec, ts[i:j], vs[i:j])
				ours = chunk.Append(ours, ts[i:j], vs[i:j])
			}
		}
	}
	samples := float64(nSeries * rounds)
	b.ReportMetric(float64(zstdSize(xor))/samples, "xor-zstd-B/sample")
	b.ReportMetric(float64(zstdSize(dec))/samples, "decimal-zstd-B/sample")
	b.ReportMetric(float64(len(ours))/samples, "chunk-B/sample")
	b.ReportMetric(float64(zstdSize(ours))/samples, "chunk-zstd-B/sample")
	b.ReportMetric(float64(lz4Size(ours))/samples, "chunk-lz4-B/sample")
}

// appendDecimalChunk encodes one chunk: delta-of-delta timestamps, then
// the values as mantissas at the chunk's smallest decimal exponent (or raw
// float bits when one value has no short decimal form), delta-of-delta.
func appendDecimalChunk(b []byte, ts []int64, vs []float64) []byte {
	b = binary.AppendVarint(b, ts[0])
	var pd int64
	for k := 1; k < len(ts); k++ {
		d := ts[k] - ts[k-1]
		b = binary.AppendVarint(b, d-pd)
		pd = d
	}
	ms := make([]int64, len(vs))
	es := make([]int, len(vs))
	minE := math.MaxInt
	for k, v := range vs {
		m, e, ok := toDecimal(v)
		if !ok {
			b = append(b, 0)
			for _, v := range vs {
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
			}
			return b
		}
		ms[k], es[k] = m, e
		minE = min(minE, e)
	}
	b = append(b, 1, byte(int8(minE)))
	var pm, pdm int64
	for k := range ms {
		m := ms[k] * int64(math.Pow10(es[k]-minE))
		d := m - pm
		b = binary.AppendVarint(b, d-pdm)
		pm, pdm = m, d
	}
	return b
}

// toDecimal returns m and e with v == m * 10^e, for values with at most 12
// decimals and 17 digits.
func toDecimal(v float64) (int64, int, bool) {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		m, e := int64(v), 0
		for m != 0 && m%10 == 0 {
			m /= 10
			e++
		}
		return m, e, true
	}
	for e := -1; e >= -12; e-- {
		x := math.Round(v * math.Pow10(-e))
		if math.Abs(x) < 1e17 && float64(int64(x))*math.Pow10(e) == v {
			return int64(x), e, true
		}
	}
	return 0, 0, false
}

// lz4Size is b's size in LZ4 blocks of 1 MiB, ClickHouse's default.
func lz4Size(b []byte) int {
	n := 0
	var c lz4.Compressor
	buf := make([]byte, lz4.CompressBlockBound(1<<20))
	for i := 0; i < len(b); i += 1 << 20 {
		k, err := c.CompressBlock(b[i:min(i+1<<20, len(b))], buf)
		if err != nil {
			panic(err)
		}
		if k == 0 { // incompressible: stored as is
			k = min(1<<20, len(b)-i)
		}
		n += k
	}
	return n
}

func zstdSize(b []byte) int {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		panic(err)
	}
	n := 0
	for i := 0; i < len(b); i += 1 << 20 {
		n += len(enc.EncodeAll(b[i:min(i+1<<20, len(b))], nil))
	}
	return n
}

// seriesSamples is what the load sends for series id over its first
// rounds.
func seriesSamples(s *Series, id, rounds int) ([]int64, []float64) {
	ts := make([]int64, rounds)
	vs := make([]float64, rounds)
	prev := 0.0
	for r := range rounds {
		ts[r] = timestamp(1763597400000, s.Host, r)
		prev = s.model.next(prev, id, r, ts[r])
		vs[r] = prev
	}
	return ts, vs
}

// valueEntropyBits is the information, in bits, in one new value of a
// series with model m given everything before it: what no lossless
// encoding can store in less, on average.
func valueEntropyBits(m model) float64 {
	// discrete is the entropy of round(a + b*u) with u uniform in [0,1),
	// in units of one quantum.
	discrete := func(a, b float64) float64 {
		if b >= 4096 {
			return math.Log2(b)
		}
		h := 0.0
		for k := math.Round(a); k <= math.Round(a+b); k++ {
			lo, hi := max(a, k-0.5), min(a+b, k+0.5)
			if p := (hi - lo) / b; p > 0 {
				h -= p * math.Log2(p)
			}
		}
		return h
	}
	switch m.kind {
	case kindCounter:
		step := m.rate * ScrapeIntervalMillis / 1000
		if m.quantum == 0 {
			return 52
		}
		return discrete(0.8*step/m.quantum, 0.4*step/m.quantum)
	case kindDrift:
		stay := 1 - m.prob + m.prob/41
		return -stay*math.Log2(stay) - 40*(m.prob/41)*math.Log2(m.prob/41)
	case kindNoise:
		if m.quantum == 0 {
			return 52
		}
		return discrete(m.start*(1-m.rate)/m.quantum, 2*m.start*m.rate/m.quantum)
	default: // constants, and node_time_seconds, which the timestamp fixes
		return 0
	}
}

// TestEntropyFloor logs the least bytes per sample any lossless encoding
// can store the ingest benchmark's load in: each value's information given
// the series' past, plus the timestamp's (its jitter, one of five values,
// when each series stores its own timestamps; nothing when a host's series
// share them). It checks the computation against the hub's chunk format:
// chunks that each hold one series' own samples, uncompressed, cannot be
// smaller than that floor. Run: go test -run EntropyFloor -v ./bench/ingest/
func TestEntropyFloor(t *testing.T) {
	set := GenerateSeries(100_000)
	var bits float64
	byName := map[string]float64{}
	for i := range set {
		b := valueEntropyBits(set[i].model)
		bits += b
		byName[set[i].Labels[0][1]] += b
	}
	if bits == 0 {
		t.Fatal("the load has no information")
	}
	n := float64(len(set))
	t.Logf("values: %.3f bytes/sample; with per-series timestamps (log2 5 bits): %.3f bytes/sample",
		bits/n/8, (bits/n+math.Log2(5))/8)

	// Ten whole hosts, a day's worth of 240-sample chunks each.
	const hosts, rounds, chunkLen = 10, 5760, 240
	sub := set[:hosts*SeriesPerHost()]
	var subBits float64
	var encoded int
	var buf []byte
	for id := range sub {
		subBits += valueEntropyBits(sub[id].model) + math.Log2(5)
		ts, vs := seriesSamples(&sub[id], id, rounds)
		for i := 0; i < rounds; i += chunkLen {
			buf = chunk.Append(buf[:0], ts[i:i+chunkLen], vs[i:i+chunkLen])
			encoded += len(buf)
		}
	}
	floor, got := subBits/8/float64(len(sub)), float64(encoded)/float64(len(sub)*rounds)
	t.Logf("%d series: floor %.3f bytes/sample, chunks %.3f", len(sub), floor, got)
	if floor > got {
		t.Errorf("the floor (%.3f bytes/sample) is above what the chunk format stores (%.3f): the entropy is overstated", floor, got)
	}
	type kv struct {
		name string
		b    float64
	}
	var top []kv
	for k, v := range byName {
		top = append(top, kv{k, v})
	}
	slices.SortFunc(top, func(a, b kv) int { return cmp.Compare(b.b, a.b) })
	for _, x := range top[:12] {
		t.Logf("%-45s %5.1f%% of the values' bits", x.name, 100*x.b/bits)
	}
}
