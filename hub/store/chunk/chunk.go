// Package chunk encodes a run of one series' float samples into the bytes
// the hub stores in ClickHouse's chunks table, and decodes them.
//
// Two formats, told apart by the first byte:
//
//   - Decimal (1), for chunks whose every value is the float64 nearest to a
//     short decimal, as every value parsed from the text exposition format
//     is (node_exporter's 12345.67 is float64(1234567)/100). Timestamps are
//     stored as their offsets from a regular grid (first timestamp plus i
//     times the chunk's typical interval), values as integer mantissas at
//     one decimal exponent per chunk, as differences from the previous
//     mantissa divided by their greatest common divisor. Both are
//     bit-packed at the width their range needs (frame of reference); the
//     differences of a gauge that mostly holds its value are stored as a
//     bitmap of the samples that changed plus the changes. This is
//     VictoriaMetrics's idea (decimal mantissas, then deltas) with fixed
//     width packing instead of varints and a general-purpose compressor, so
//     that ClickHouse's default LZ4 has little left to do and decoding is a
//     loop over words.
//   - XOR (2): Prometheus's XOR chunk bytes follow, for every other chunk
//     (NaN, stale markers, infinities, negative zero, values with no short
//     decimal form such as 1/3 or sums of floats).
//
// Both are lossless: Append checks that the decimal form decodes to the
// same bits as each input value and uses XOR when one does not.
package chunk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"

	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// Chunk formats, the first byte of an encoded chunk.
const (
	FormatDecimal byte = 1
	FormatXOR     byte = 2
)

// Value modes of a decimal chunk.
const (
	modeDelta  byte = 0 // every difference, packed
	modeSparse byte = 1 // a bitmap of the differences that are not 0, then those
)

// maxMantissa keeps mantissas exact as float64 and their differences far
// from int64 overflow.
const maxMantissa = 1 << 53

// pow10 holds the powers of ten float64 represents exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// maxFrac is the most decimal places a decimal chunk's values may have.
const maxFrac = 15

// ErrCorrupt is wrapped by every error Decode returns for bad bytes.
var ErrCorrupt = errors.New("corrupt chunk")

// Append appends the encoding of the samples (ts[i], vs[i]) to dst and
// returns it. ts must be in increasing order and as long as vs; a chunk
// holds at least one sample.
func Append(dst []byte, ts []int64, vs []float64) []byte {
	if len(ts) != len(vs) || len(ts) == 0 {
		panic(fmt.Sprintf("chunk.Append: %d timestamps and %d values", len(ts), len(vs)))
	}
	if b, ok := appendDecimal(dst, ts, vs); ok {
		return b
	}
	c := chunkenc.NewXORChunk()
	app, err := c.Appender()
	if err != nil {
		panic(err) // a new XOR chunk always has an appender
	}
	for i := range ts {
		app.Append(0, ts[i], vs[i])
	}
	return append(append(dst, FormatXOR), c.Bytes()...)
}

// decimalOf returns m and e such that decoding m at exponent e (see
// decodeValue) gives exactly v, with e as large as possible.
func decimalOf(v float64) (m int64, e int, ok bool) {
	if v == math.Trunc(v) {
		if v == 0 && math.Signbit(v) {
			return 0, 0, false
		}
		if math.Abs(v) >= maxMantissa {
			// A large integer such as 1e18 or 9.223372036854776e18: a
			// short mantissa times a power of ten, or nothing.
			for e := 1; e < len(pow10); e++ {
				x := math.Round(v / pow10[e])
				if math.Abs(x) < maxMantissa && x*pow10[e] == v {
					return int64(x), e, true
				}
			}
			return 0, 0, false
		}
		m = int64(v)
		for m != 0 && m%10 == 0 && e < len(pow10)-1 {
			m /= 10
			e++
		}
		return m, e, true
	}
	for f := 1; f <= maxFrac; f++ {
		x := math.Round(v * pow10[f])
		if math.Abs(x) >= maxMantissa {
			return 0, 0, false
		}
		if x/pow10[f] == v {
			return int64(x), -f, true
		}
	}
	return 0, 0, false
}

// decodeValue is the value of mantissa m at decimal exponent e: a single
// correctly rounded multiplication or division of two exact float64s.
func decodeValue(m int64, e int) float64 {
	if e >= 0 {
		return float64(m) * pow10[e]
	}
	return float64(m) / pow10[-e]
}

func appendDecimal(dst []byte, ts []int64, vs []float64) ([]byte, bool) {
	n := len(ts)
	ms := make([]int64, n)
	es := make([]int, n)
	e := len(pow10) - 1
	for i, v := range vs {
		m, ei, ok := decimalOf(v)
		if !ok {
			return dst, false
		}
		ms[i], es[i] = m, ei
		if m != 0 {
			e = min(e, ei)
		}
	}
	if e == len(pow10)-1 { // all zero
		e = 0
	}
	for i := range ms {
		for k := es[i]; k > e && ms[i] != 0; k-- {
			if math.Abs(float64(ms[i])) >= maxMantissa/10 {
				return dst, false
			}
			ms[i] *= 10
		}
		if decodeValue(ms[i], e) != vs[i] || math.Signbit(decodeValue(ms[i], e)) != math.Signbit(vs[i]) {
			return dst, false
		}
	}
	for i := 1; i < n; i++ {
		if ts[i] <= ts[i-1] {
			panic(fmt.Sprintf("chunk.Append: timestamp %d after %d", ts[i], ts[i-1]))
		}
	}

	dst = append(dst, FormatDecimal)
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = binary.AppendVarint(dst, ts[0])
	if n > 1 {
		// The grid's step: the mean interval, so that the offsets of a
		// series scraped at a steady interval stay within its jitter.
		step := int64(math.Round(float64(ts[n-1]-ts[0]) / float64(n-1)))
		offs := make([]int64, n-1)
		for i := 1; i < n; i++ {
			offs[i-1] = ts[i] - ts[0] - int64(i)*step
		}
		dst = binary.AppendVarint(dst, step)
		dst = appendFOR(dst, offs)
	}
	dst = append(dst, byte(int8(e)))
	dst = binary.AppendVarint(dst, ms[0])
	if n > 1 {
		ds := make([]int64, n-1)
		g := uint64(0)
		nonzero := 0
		for i := 1; i < n; i++ {
			ds[i-1] = ms[i] - ms[i-1]
			if ds[i-1] != 0 {
				nonzero++
				g = gcd(g, uint64(abs(ds[i-1])))
			}
		}
		if g > 1 {
			for i := range ds {
				ds[i] /= int64(g)
			}
		}
		dense := appendFOR(nil, ds)
		var sparse []byte
		if nonzero < len(ds) {
			changed := make([]int64, len(ds))
			nz := make([]int64, 0, nonzero)
			for i, d := range ds {
				if d != 0 {
					changed[i] = 1
					nz = append(nz, d)
				}
			}
			sparse = appendPacked(nil, changed, 0, 1)
			sparse = appendFOR(sparse, nz)
		}
		dst = binary.AppendUvarint(dst, g)
		if sparse != nil && len(sparse) < len(dense) {
			dst = append(dst, modeSparse)
			dst = append(dst, sparse...)
		} else {
			dst = append(dst, modeDelta)
			dst = append(dst, dense...)
		}
	}
	return dst, true
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// appendFOR appends xs as their minimum (varint), a width byte and each
// x-min packed at that width.
func appendFOR(dst []byte, xs []int64) []byte {
	if len(xs) == 0 {
		return append(binary.AppendVarint(dst, 0), 0)
	}
	lo, hi := xs[0], xs[0]
	for _, x := range xs[1:] {
		lo, hi = min(lo, x), max(hi, x)
	}
	w := bits.Len64(uint64(hi - lo))
	dst = binary.AppendVarint(dst, lo)
	dst = append(dst, byte(w))
	return appendPacked(dst, xs, lo, w)
}

// appendPacked appends each x-lo in w bits, little-endian, in
// ceil(len(xs)*w/8) bytes.
func appendPacked(dst []byte, xs []int64, lo int64, w int) []byte {
	if w == 0 {
		return dst
	}
	var acc uint64
	var nacc int
	for _, x := range xs {
		v := uint64(x - lo)
		acc |= v << nacc
		if nacc+w >= 64 {
			dst = binary.LittleEndian.AppendUint64(dst, acc)
			spill := nacc + w - 64
			if spill > 0 {
				acc = v >> (w - spill)
			} else {
				acc = 0
			}
			nacc = spill
		} else {
			nacc += w
		}
	}
	return appendTail(dst, acc, nacc)
}

// appendTail appends the low nbits of acc in as few bytes as they need.
func appendTail(dst []byte, acc uint64, nbits int) []byte {
	for ; nbits > 0; nbits -= 8 {
		dst = append(dst, byte(acc))
		acc >>= 8
	}
	return dst
}

// Decode appends the samples of the encoded chunk data to ts and vs and
// returns them.
func Decode(data []byte, ts []int64, vs []float64) ([]int64, []float64, error) {
	if len(data) == 0 {
		return ts, vs, fmt.Errorf("%w: empty", ErrCorrupt)
	}
	switch data[0] {
	case 0:
		// A Prometheus XOR chunk of fewer than 256 samples with no format
		// byte (its count's high byte is 0), as builds before this
		// package wrote.
		return decodeXOR(data, ts, vs)
	case FormatDecimal:
		return decodeDecimal(data[1:], ts, vs)
	case FormatXOR:
		return decodeXOR(data[1:], ts, vs)
	default:
		return ts, vs, fmt.Errorf("%w: unknown format %d", ErrCorrupt, data[0])
	}
}

func decodeXOR(data []byte, ts []int64, vs []float64) ([]int64, []float64, error) {
	if len(data) < 3 { // a 2-byte sample count, then at least one sample
		return ts, vs, fmt.Errorf("%w: XOR chunk of %d bytes", ErrCorrupt, len(data))
	}
	c, err := chunkenc.FromData(chunkenc.EncXOR, data)
	if err != nil {
		return ts, vs, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	start, vstart := len(ts), len(vs)
	it := c.Iterator(nil)
	for it.Next() != chunkenc.ValNone {
		t, v := it.At()
		ts, vs = append(ts, t), append(vs, v)
	}
	if err := it.Err(); err != nil {
		return ts[:start], vs[:vstart], fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return ts, vs, nil
}

// reader reads a decimal chunk; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated or bad %s", ErrCorrupt, what)
	}
	r.b = nil
}

func (r *reader) uvarint(what string) uint64 {
	x, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[k:]
	return x
}

// varint reads what binary.AppendVarint wrote: a zigzag-encoded uvarint.
func (r *reader) varint(what string) int64 {
	ux := r.uvarint(what)
	return int64(ux>>1) ^ -int64(ux&1)
}

func (r *reader) byte(what string) byte {
	if len(r.b) == 0 {
		r.fail(what)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// packed is n values bit-packed at width w, each plus base.
type packed struct {
	src  []byte
	w    int
	mask uint64
	base int64
}

// at returns value i; i must be below the count the field was read with.
func (p packed) at(i int) int64 {
	if p.w == 0 {
		return p.base
	}
	return p.base + int64(readBits(p.src, i*p.w, p.w)&p.mask)
}

// packed takes n values of width w from the chunk.
func (r *reader) packed(what string, n, w int, base int64) packed {
	if w > 64 {
		r.fail(what + " width")
		return packed{}
	}
	nbytes := (n*w + 7) / 8
	if len(r.b) < nbytes {
		r.fail(what)
		return packed{}
	}
	p := packed{src: r.b[:nbytes], w: w, mask: math.MaxUint64 >> (64 - w), base: base}
	r.b = r.b[nbytes:]
	return p
}

// field reads what appendFOR wrote for n values: base, width, values.
func (r *reader) field(what string, n int) packed {
	base := r.varint(what)
	w := int(r.byte(what))
	return r.packed(what, n, w, base)
}

// readBits returns the w bits at bit offset off of src (little-endian).
func readBits(src []byte, off, w int) uint64 {
	i, sh := off/8, off%8
	var word uint64
	if i+8 <= len(src) {
		word = binary.LittleEndian.Uint64(src[i:])
	} else {
		var tmp [8]byte
		copy(tmp[:], src[i:])
		word = binary.LittleEndian.Uint64(tmp[:])
	}
	v := word >> sh
	if sh+w > 64 {
		var next byte
		if i+8 < len(src) {
			next = src[i+8]
		}
		v |= uint64(next) << (64 - sh)
	}
	return v
}

// maxSamples bounds a chunk's declared sample count, so that a corrupt
// count cannot make Decode allocate without limit.
const maxSamples = 1 << 20

func decodeDecimal(b []byte, ts []int64, vs []float64) ([]int64, []float64, error) {
	r := reader{b: b}
	n64 := r.uvarint("sample count")
	if r.err != nil {
		return ts, vs, r.err
	}
	if n64 == 0 || n64 > maxSamples {
		return ts, vs, fmt.Errorf("%w: %d samples", ErrCorrupt, n64)
	}
	n := int(n64)
	t0 := r.varint("first timestamp")
	start, vstart := len(ts), len(vs)
	ts = append(ts, t0)
	if n > 1 {
		step := r.varint("timestamp step")
		offs := r.field("timestamp offsets", n-1)
		if r.err != nil {
			return ts[:start], vs[:vstart], r.err
		}
		for i := 1; i < n; i++ {
			ts = append(ts, t0+int64(i)*step+offs.at(i-1))
		}
	}
	e := int(int8(r.byte("exponent")))
	if e < -maxFrac || e >= len(pow10) {
		return ts[:start], vs[:vstart], fmt.Errorf("%w: exponent %d", ErrCorrupt, e)
	}
	m := r.varint("first value")
	vs = append(vs, decodeValue(m, e))
	if n > 1 {
		g := max(int64(r.uvarint("divisor")), 1)
		switch mode := r.byte("mode"); mode {
		case modeDelta:
			ds := r.field("differences", n-1)
			if r.err != nil {
				break
			}
			for i := range n - 1 {
				m += ds.at(i) * g
				vs = append(vs, decodeValue(m, e))
			}
		case modeSparse:
			changed := r.packed("bitmap", n-1, 1, 0)
			k := 0
			for _, c := range changed.src {
				k += bits.OnesCount8(c)
			}
			ds := r.field("differences", k)
			if r.err != nil {
				break
			}
			j := 0
			for i := range n - 1 {
				if changed.at(i) != 0 { // j < k: k counts these bits and more
					m += ds.at(j) * g
					j++
				}
				vs = append(vs, decodeValue(m, e))
			}
			if j != k {
				return ts[:start], vs[:vstart], fmt.Errorf("%w: bitmap has bits past the last sample", ErrCorrupt)
			}
		default:
			return ts[:start], vs[:vstart], fmt.Errorf("%w: value mode %d", ErrCorrupt, mode)
		}
	}
	if r.err != nil {
		return ts[:start], vs[:vstart], r.err
	}
	if len(r.b) != 0 {
		return ts[:start], vs[:vstart], fmt.Errorf("%w: %d bytes after the values", ErrCorrupt, len(r.b))
	}
	return ts, vs, nil
}
