package ingest

import (
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/encoding/protowire"
)

// wireLabel is one label. Decoded from a batch, its strings view the
// batch's decoded buffer (no copy); anything kept past the batch must be
// cloned.
type wireLabel struct{ name, value string }

type wireSample struct {
	t int64
	v float64
}

// wireSeries indexes one series' labels and samples in wireRequest's
// shared slices.
type wireSeries struct {
	lo, hi     int // labels[lo:hi]
	slo, shi   int // samples[slo:shi]
	histograms int
}

// wireRequest is a decoded prometheus.WriteRequest (remote_write 1.0) that
// keeps only what the hub stores. It is reused between batches, so decoding
// allocates nothing once its slices have grown; the gogo-generated decoder
// allocated two strings per label and grew slices sample by sample, which
// was 38% of the hub's CPU at full ingest load.
type wireRequest struct {
	series  []wireSeries
	labels  []wireLabel
	samples []wireSample
}

func (r *wireRequest) reset() {
	r.series, r.labels, r.samples = r.series[:0], r.labels[:0], r.samples[:0]
}

func (r *wireRequest) seriesLabels(i int) []wireLabel {
	return r.labels[r.series[i].lo:r.series[i].hi]
}

func (r *wireRequest) seriesSamples(i int) []wireSample {
	return r.samples[r.series[i].slo:r.series[i].shi]
}

// view returns a string sharing b's memory.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

var errTruncated = errors.New("truncated field")

// unmarshal decodes b, which must stay unchanged while r is in use.
func (r *wireRequest) unmarshal(b []byte) error {
	r.reset()
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return fmt.Errorf("write request: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("timeseries: %w", protowire.ParseError(n))
			}
			if err := r.unmarshalSeries(v); err != nil {
				return fmt.Errorf("timeseries %d: %w", len(r.series), err)
			}
			b = b[n:]
			continue
		}
		n = skipField(num, typ, b)
		if n < 0 {
			return fmt.Errorf("write request field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}

func (r *wireRequest) unmarshalSeries(b []byte) error {
	s := wireSeries{lo: len(r.labels), slo: len(r.samples)}
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = skipField(num, typ, b); n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case 1:
			l, err := unmarshalLabel(v)
			if err != nil {
				return fmt.Errorf("label: %w", err)
			}
			r.labels = append(r.labels, l)
		case 2:
			smp, err := unmarshalSample(v)
			if err != nil {
				return fmt.Errorf("sample: %w", err)
			}
			r.samples = append(r.samples, smp)
		case 4:
			s.histograms++
		}
	}
	s.hi, s.shi = len(r.labels), len(r.samples)
	r.series = append(r.series, s)
	return nil
}

func unmarshalLabel(b []byte) (wireLabel, error) {
	var l wireLabel
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return l, protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == 1 || num == 2) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return l, protowire.ParseError(n)
			}
			if num == 1 {
				l.name = view(v)
			} else {
				l.value = view(v)
			}
			b = b[n:]
			continue
		}
		if n = skipField(num, typ, b); n < 0 {
			return l, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return l, nil
}

func unmarshalSample(b []byte) (wireSample, error) {
	var s wireSample
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return s, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return s, errTruncated
			}
			s.v = math.Float64frombits(v)
			b = b[n:]
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return s, errTruncated
			}
			s.t = int64(v)
			b = b[n:]
		default:
			if n = skipField(num, typ, b); n < 0 {
				return s, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return s, nil
}

// fromProto fills r from already decoded series (local writes, tests).
func (r *wireRequest) fromProto(ts []prompb.TimeSeries) {
	r.reset()
	for i := range ts {
		s := wireSeries{lo: len(r.labels), slo: len(r.samples), histograms: len(ts[i].Histograms)}
		for _, l := range ts[i].Labels {
			r.labels = append(r.labels, wireLabel{l.Name, l.Value})
		}
		for _, smp := range ts[i].Samples {
			r.samples = append(r.samples, wireSample{smp.Timestamp, smp.Value})
		}
		s.hi, s.shi = len(r.labels), len(r.samples)
		r.series = append(r.series, s)
	}
}

// skipField consumes an unknown field's value, as prompb's generated
// decoder does: a stray end-group marker carries nothing, and a group ends
// at the end-group marker that closes its depth, whatever its number.
func skipField(num protowire.Number, typ protowire.Type, b []byte) int {
	switch typ {
	case protowire.EndGroupType:
		return 0
	case protowire.StartGroupType:
		n, depth := 0, 1
		for depth > 0 {
			if n >= len(b) {
				return -1 // truncated
			}
			// Tags inside a skipped group are not checked beyond their wire
			// type, as in prompb's decoder.
			v, m := protowire.ConsumeVarint(b[n:])
			if m < 0 {
				return m
			}
			n += m
			t := protowire.Type(v & 7)
			switch t {
			case protowire.StartGroupType:
				depth++
			case protowire.EndGroupType:
				depth--
			default:
				if m = protowire.ConsumeFieldValue(0, t, b[n:]); m < 0 {
					return m
				}
				n += m
			}
		}
		return n
	}
	return protowire.ConsumeFieldValue(num, typ, b)
}

// consumeTag reads a field tag as prompb's generated decoder does: any
// positive field number (as an int32) is accepted, unknown ones skipped.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	v, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return 0, 0, n
	}
	num := int32(v >> 3)
	if num <= 0 {
		return 0, 0, -2 // protowire's code for an invalid field number
	}
	return protowire.Number(num), protowire.Type(v & 7), n
}
