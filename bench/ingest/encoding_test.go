package ingest

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"
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
	const nSeries, rounds, chunk = 5120, 683, 240
	set := GenerateSeries(nSeries)
	var xor, dec []byte
	for range b.N {
		xor, dec = xor[:0], dec[:0]
		for _, id := range rand.New(rand.NewPCG(1, 2)).Perm(len(set)) {
			s := &set[id]
			ts := make([]int64, rounds)
			vs := make([]float64, rounds)
			prev := 0.0
			for r := range rounds {
				ts[r] = timestamp(1763597400000, s.Host, r)
				prev = s.model.next(prev, id, r, ts[r])
				vs[r] = prev
			}
			for i := 0; i < rounds; i += chunk {
				j := min(i+chunk, rounds)
				c := chunkenc.NewXORChunk()
				app, _ := c.Appender()
				for k := i; k < j; k++ {
					app.Append(0, ts[k], vs[k])
				}
				xor = append(xor, c.Bytes()...)
				dec = appendDecimalChunk(dec, ts[i:j], vs[i:j])
			}
		}
	}
	samples := float64(nSeries * rounds)
	b.ReportMetric(float64(zstdSize(xor))/samples, "xor-zstd-B/sample")
	b.ReportMetric(float64(zstdSize(dec))/samples, "decimal-zstd-B/sample")
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
