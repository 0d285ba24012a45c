package chunk

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// roundTrip encodes and decodes, and fails unless every timestamp and
// every value's bits come back; it returns the encoding.
func roundTrip(tb testing.TB, ts []int64, vs []float64) []byte {
	tb.Helper()
	data := Append([]byte{0xff}, ts, vs)[1:] // Append appends
	gotT, gotV, err := Decode(data, []int64{-1}, []float64{-1})
	if err != nil {
		tb.Fatalf("decode: %v", err)
	}
	if len(gotT) != len(ts)+1 || len(gotV) != len(vs)+1 || gotT[0] != -1 || gotV[0] != -1 {
		tb.Fatalf("decoded %d timestamps and %d values after the existing one, want %d", len(gotT)-1, len(gotV)-1, len(ts))
	}
	for i := range ts {
		if gotT[i+1] != ts[i] || math.Float64bits(gotV[i+1]) != math.Float64bits(vs[i]) {
			tb.Fatalf("sample %d: got (%d, %v) want (%d, %v) (format %d)", i, gotT[i+1], gotV[i+1], ts[i], vs[i], data[0])
		}
	}
	return data
}

func regular(n int, start, step int64, jitter int64, rnd *rand.Rand) []int64 {
	ts := make([]int64, n)
	for i := range ts {
		ts[i] = start + int64(i)*step
		if jitter > 0 {
			ts[i] += rnd.Int64N(jitter + 1)
		}
	}
	return ts
}

func TestRoundTrip(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	const n = 240
	t0 := int64(1763597400000)
	counter := func(q float64, div float64) []float64 { // ticks / div, as node_exporter computes
		vs := make([]float64, n)
		ticks := int64(rnd.Int64N(1 << 40))
		for i := range vs {
			ticks += rnd.Int64N(int64(q))
			vs[i] = float64(ticks) / div
		}
		return vs
	}
	gauge := func(hold float64, quantum float64) []float64 {
		vs := make([]float64, n)
		v := 40 * float64(1<<30)
		for i := range vs {
			if rnd.Float64() > hold {
				v += float64(rnd.IntN(41)-20) * quantum
			}
			vs[i] = v
		}
		return vs
	}
	fill := func(v float64) []float64 {
		vs := make([]float64, n)
		for i := range vs {
			vs[i] = v
		}
		return vs
	}
	noise := make([]float64, n)
	for i := range noise {
		noise[i] = rnd.Float64() * 0.03
	}
	negative := counter(1000, 100)
	for i := range negative {
		negative[i] = -negative[i]
	}
	withStale := counter(100, 100)
	withStale[n/2] = math.Float64frombits(value.StaleNaN)
	withInf := fill(1)
	withInf[7] = math.Inf(-1)
	negZero := fill(0)
	negZero[3] = math.Copysign(0, -1)
	sums := make([]float64, n) // float sums carry rounding error: no short decimal
	for i := 1; i < n; i++ {
		sums[i] = sums[i-1] + 0.1
	}
	mixedExp := fill(1.5)
	mixedExp[9] = 0.001
	mixedExp[10] = 1e9

	for _, tc := range []struct {
		name   string
		ts     []int64
		vs     []float64
		format byte
	}{
		{"cpu seconds (ticks/100)", regular(n, t0, 15000, 4, rnd), counter(1500, 100), FormatDecimal},
		{"bytes counter", regular(n, t0, 15000, 4, rnd), counter(1<<24, 1), FormatDecimal},
		{"gauge that mostly holds, 4 KiB steps", regular(n, t0, 15000, 4, rnd), gauge(0.7, 4096), FormatDecimal},
		{"constant", regular(n, t0, 15000, 0, rnd), fill(1), FormatDecimal},
		{"zero", regular(n, t0, 15000, 0, rnd), fill(0), FormatDecimal},
		{"large constant", regular(n, t0, 15000, 0, rnd), fill(1e18), FormatDecimal},
		{"2^63", regular(n, t0, 15000, 0, rnd), fill(9.223372036854776e18), FormatXOR},
		{"negative", regular(n, t0, 15000, 4, rnd), negative, FormatDecimal},
		{"mixed exponents", regular(n, t0, 15000, 4, rnd), mixedExp, FormatDecimal},
		{"one sample", []int64{t0}, []float64{12.5}, FormatDecimal},
		{"two samples", []int64{t0, t0 + 1}, []float64{-3, 3}, FormatDecimal},
		{"irregular timestamps", []int64{-5, 0, 7, 100000, 100001, 1 << 50}, []float64{1, 2, 3, 4, 5, 6}, FormatDecimal},
		{"extreme timestamps", []int64{math.MinInt64, 0, math.MaxInt64}, []float64{1, 2, 3}, FormatDecimal},
		{"full-precision noise", regular(n, t0, 15000, 4, rnd), noise, FormatXOR},
		{"stale marker", regular(n, t0, 15000, 4, rnd), withStale, FormatXOR},
		{"infinity", regular(n, t0, 15000, 4, rnd), withInf, FormatXOR},
		{"negative zero", regular(n, t0, 15000, 4, rnd), negZero, FormatXOR},
		{"float sums", regular(n, t0, 15000, 4, rnd), sums, FormatXOR},
		{"NaN", []int64{t0}, []float64{math.NaN()}, FormatXOR},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := roundTrip(t, tc.ts, tc.vs)
			if data[0] != tc.format {
				t.Errorf("format %d, want %d", data[0], tc.format)
			}
			t.Logf("%d samples in %d bytes (%.2f per sample)", len(tc.ts), len(data), float64(len(data))/float64(len(tc.ts)))
		})
	}
}

// TestCompact checks that the packing does what it is for: a steady
// series costs a few bits per sample, not bytes.
func TestCompact(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	const n = 240
	ts := regular(n, 1763597400000, 15000, 4, rnd) // jitter 0-4 ms: 3 bits
	cst := make([]float64, n)
	for i := range cst {
		cst[i] = 42
	}
	if got := len(roundTrip(t, ts, cst)); got > n*3/8+24 {
		t.Errorf("constant with jittered timestamps: %d bytes, want at most %d", got, n*3/8+24)
	}
	// A gauge that changes at 10% of samples by up to ±20 pages: the
	// bitmap (1 bit) and the changes (6 bits at 10%) instead of 6 bits
	// each.
	g := make([]float64, n)
	v := 1e10
	for i := range g {
		if i%10 == 0 {
			v += float64(rnd.IntN(41)-20) * 4096
		}
		g[i] = v
	}
	if got, want := len(roundTrip(t, ts, g)), n*3/8+n/8+n/10+32; got > want {
		t.Errorf("sparse gauge: %d bytes, want at most %d", got, want)
	}
}

// TestDecodeUnprefixedXOR reads chunks as development builds wrote them:
// Prometheus XOR chunk bytes with no format byte.
func TestDecodeUnprefixedXOR(t *testing.T) {
	c := chunkenc.NewXORChunk()
	app, err := c.Appender()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		app.Append(0, int64(i)*15000, float64(i)/3)
	}
	ts, vs, err := Decode(c.Bytes(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 200 || ts[199] != 199*15000 || vs[199] != 199.0/3 {
		t.Fatalf("decoded %d samples, the last (%d, %v)", len(ts), ts[len(ts)-1], vs[len(vs)-1])
	}
}

func TestDecodeCorrupt(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 6))
	ts := regular(100, 1763597400000, 15000, 4, rnd)
	vs := make([]float64, 100)
	for i := range vs {
		vs[i] = float64(i*i) / 100
	}
	good := Append(nil, ts, vs)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"unknown format", append([]byte{9}, good[1:]...)},
		{"unprefixed XOR, empty", []byte{0}},
		{"truncated", good[:len(good)-3]},
		{"trailing bytes", append(append([]byte{}, good...), 0)},
		{"zero samples", []byte{FormatDecimal, 0}},
		{"huge count", []byte{FormatDecimal, 0xff, 0xff, 0xff, 0xff, 0x0f, 0}},
		{"bad XOR", []byte{FormatXOR, 0, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, vs, err := Decode(tc.data, []int64{1}, []float64{1})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if len(ts) != 1 || len(vs) != 1 {
				t.Errorf("a failed decode left %d timestamps and %d values, want the 1 it was given", len(ts), len(vs))
			}
		})
	}
}

// FuzzRoundTrip encodes what the fuzzer makes of its input and checks it
// decodes to the same bits; then it decodes the raw input, which must not
// panic.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, uint8(3), int64(15000))
	f.Add(Append(nil, []int64{1, 2, 3}, []float64{0.5, 0.25, 1e18}), uint8(1), int64(1))
	f.Fuzz(func(t *testing.T, raw []byte, scale uint8, step int64) {
		if _, _, err := Decode(raw, nil, nil); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("decode error %v does not wrap ErrCorrupt", err)
		}
		n := len(raw) / 4
		if n == 0 {
			return
		}
		ts := make([]int64, n)
		vs := make([]float64, n)
		t0 := int64(1763597400000)
		for i := range n {
			w := raw[i*4 : i*4+4]
			t0 += max(1, step) + int64(w[0]&7)
			ts[i] = t0
			// Mostly short decimals at one scale, sometimes a raw bit pattern.
			m := int64(int16(uint16(w[1])<<8|uint16(w[2]))) * int64(w[3])
			switch {
			case w[0]&0xf8 == 0xf8:
				vs[i] = math.Float64frombits(uint64(m) * 0x9e3779b97f4a7c15)
			default:
				vs[i] = float64(m) / math.Pow10(int(scale%8))
			}
		}
		if ts[n-1] < ts[0] { // overflow of the fuzzed step
			return
		}
		roundTrip(t, ts, vs)
	})
}

func BenchmarkDecode(b *testing.B) {
	rnd := rand.New(rand.NewPCG(7, 8))
	const n = 240
	ts := regular(n, 1763597400000, 15000, 4, rnd)
	vs := make([]float64, n)
	ticks := int64(1 << 30)
	for i := range vs {
		ticks += rnd.Int64N(1500)
		vs[i] = float64(ticks) / 100
	}
	data := Append(nil, ts, vs)
	var dt []int64
	var dv []float64
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var err error
		dt, dv, err = Decode(data, dt[:0], dv[:0])
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
}
