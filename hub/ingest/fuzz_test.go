package ingest

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/grpc/codes"

	fpb "github.com/bureauhub/bureauhub/api/federationpb"
)

// FuzzBatchDecode feeds arbitrary payloads through admit. With encode set
// the bytes are snappy-compressed first, so that the protobuf decoder and
// validation see arbitrary input too.
func FuzzBatchDecode(f *testing.F) {
	now := time.Now().UnixMilli()
	valid := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		ser(lbls("__name__", "up", "job", "x"), now, now-1000),
		ser(lbls("job", "x", "__name__", "down", "bureau", "other"), now),
		ser(lbls("__name__", "bad-name"), now),
		ser(lbls("__name__", "old"), now-30*24*time.Hour.Milliseconds()),
		{Labels: lbls("__name__", "h"), Histograms: []prompb.Histogram{{Count: &prompb.Histogram_CountInt{CountInt: 1}, Timestamp: now}}},
	}}
	raw, err := valid.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(snappy.Encode(nil, raw), false)
	f.Add(raw, true)
	f.Add([]byte{}, false)
	f.Add([]byte{}, true)
	f.Add(snappy.Encode(nil, nil), false)
	f.Add([]byte("\xff\xff\xff\xff\x0fgarbage"), false)
	f.Add([]byte("garbage"), true)

	cfg := Config{MaxBatchBytes: 1 << 20}
	cfg.DefaultLimits.MaxActiveSeries = 1000 // bounds memory across runs
	s, _ := newTestService(f, cfg)

	f.Fuzz(func(t *testing.T, data []byte, encode bool) {
		payload := data
		if encode {
			payload = snappy.Encode(nil, data)
		}
		held := heldSamples(payload, cfg.MaxBatchBytes)
		const claimed = 7
		b := &fpb.Batch{AgentId: "a", Seq: 1, Encoding: fpb.Encoding_ENCODING_SNAPPY_PROMPB, Payload: payload, Samples: claimed}
		it, ack, err := s.admit(context.Background(), "t", b)
		if err != nil {
			t.Fatalf("admit ended the stream for a batch under no rate limit: %v", err)
		}
		if ack == nil {
			t.Fatal("admit returned no ack")
		}
		if ack.Seq != b.Seq {
			t.Fatalf("ack seq %d, want %d", ack.Seq, b.Seq)
		}
		rejected := 0
		for _, r := range ack.Rejections {
			if r.Samples == 0 {
				t.Errorf("rejection %s of 0 samples", r.Reason)
			}
			rejected += int(r.Samples)
		}
		if held < 0 {
			if it != nil || codes.Code(ack.Code) != codes.InvalidArgument || len(ack.Rejections) != 1 ||
				ack.Rejections[0].Reason != ReasonMalformed || rejected != claimed {
				t.Fatalf("undecodable payload: item %v, ack %v", it != nil, ack)
			}
			return
		}
		accepted := int(ack.AcceptedSamples)
		// Every sample is either accepted or refused for one reason.
		if accepted+rejected != held {
			t.Fatalf("accepted %d + rejected %d, but the payload held %d samples", accepted, rejected, held)
		}
		if it == nil {
			if accepted != 0 {
				t.Fatalf("no item but ack accepted %d", accepted)
			}
			return
		}
		if it.samples == 0 || it.samples != accepted {
			t.Fatalf("item has %d samples, ack accepted %d", it.samples, accepted)
		}
		if len(it.fps) != it.samples || len(it.ts) != it.samples || len(it.vals) != it.samples {
			t.Fatalf("item columns: %d fps, %d ts, %d vals for %d samples", len(it.fps), len(it.ts), len(it.vals), it.samples)
		}
		fps := make(map[uint64]bool, len(it.fps))
		for _, fp := range it.fps {
			fps[fp] = true
		}
		for _, r := range it.series {
			if !fps[r.Fingerprint] {
				t.Fatalf("series row %x has no sample", r.Fingerprint)
			}
			if r.Tenant != "t" || len(r.LabelNames) != len(r.LabelValues) {
				t.Fatalf("bad series row %+v", r)
			}
			hasBureau := false
			for i, n := range r.LabelNames {
				if n == TenantLabel {
					hasBureau = r.LabelValues[i] == "t"
				}
				if r.LabelValues[i] == "" {
					t.Fatalf("series row %+v keeps an empty label", r)
				}
			}
			if !hasBureau {
				t.Fatalf("series row %+v lacks bureau=\"t\"", r)
			}
		}
		nowMs := time.Now().UnixMilli()
		for _, ts := range it.ts {
			if ts > nowMs+s.cfg.MaxFuture.Milliseconds() || ts < nowMs-s.cfg.MaxAge.Milliseconds()-time.Minute.Milliseconds() {
				t.Fatalf("accepted sample at %d outside the allowed range", ts)
			}
		}
	})
}

// heldSamples decodes payload independently of admit and counts its samples
// and histograms; -1 if it does not decode within maxBytes.
func heldSamples(payload []byte, maxBytes int) int {
	n, err := snappy.DecodedLen(payload)
	if err != nil || n > maxBytes {
		return -1
	}
	if n > maxSnappyRatio*len(payload)+64 {
		return -1
	}
	return wireSamples(payload)
}

// wireSamples counts the samples and histograms the hub's decoder finds in
// a snappy payload, or -1 if it refuses it.
func wireSamples(payload []byte) int {
	raw, err := snappy.Decode(nil, payload)
	if err != nil {
		return -1
	}
	var r wireRequest
	if r.unmarshal(raw) != nil {
		return -1
	}
	n := len(r.samples)
	for _, s := range r.series {
		n += s.histograms
	}
	return n
}

// FuzzWireMatchesPrompb checks the hub's hand-written decoder against the
// generated one: every request prompb's encoder produces decodes to the
// same labels, samples and histogram counts; and whenever both decoders
// accept an input, they agree. (On malformed input the two may differ in
// what they tolerate, e.g. overlong varints; neither panics.)
func FuzzWireMatchesPrompb(f *testing.F) {
	valid, _ := (&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "x"}},
		Samples: []prompb.Sample{{Timestamp: 5, Value: 1.5}, {Timestamp: -3, Value: math.NaN()}},
	}}}).Marshal()
	f.Add(valid)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		var want prompb.WriteRequest
		if want.Unmarshal(data) != nil {
			var got wireRequest
			_ = got.unmarshal(data) // must not panic
			return
		}
		// gogo keeps unknown fields verbatim and re-emits them: drop them
		// so that canonical holds only what an encoder produces.
		want.XXX_unrecognized = nil
		for i := range want.Timeseries {
			ts := &want.Timeseries[i]
			ts.XXX_unrecognized = nil
			for j := range ts.Labels {
				ts.Labels[j].XXX_unrecognized = nil
			}
			for j := range ts.Samples {
				ts.Samples[j].XXX_unrecognized = nil
			}
		}
		want.Metadata = nil
		canonical, err := want.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		var got wireRequest
		if err := got.unmarshal(canonical); err != nil {
			t.Fatalf("wireRequest refuses what prompb encodes: %v", err)
		}
		compareWire(t, &got, &want)
		var direct wireRequest
		if direct.unmarshal(data) == nil {
			compareWire(t, &direct, &want)
		}
	})
}

func compareWire(t *testing.T, got *wireRequest, want *prompb.WriteRequest) {
	t.Helper()
	if len(got.series) != len(want.Timeseries) {
		t.Fatalf("%d series, want %d", len(got.series), len(want.Timeseries))
	}
	for i, ws := range want.Timeseries {
		ls, ss := got.seriesLabels(i), got.seriesSamples(i)
		if len(ls) != len(ws.Labels) || len(ss) != len(ws.Samples) || got.series[i].histograms != len(ws.Histograms) {
			t.Fatalf("series %d: %d labels %d samples %d histograms, want %d %d %d", i,
				len(ls), len(ss), got.series[i].histograms, len(ws.Labels), len(ws.Samples), len(ws.Histograms))
		}
		for j, l := range ws.Labels {
			if ls[j].name != l.Name || ls[j].value != l.Value {
				t.Fatalf("series %d label %d: %v, want %v", i, j, ls[j], l)
			}
		}
		for j, smp := range ws.Samples {
			if ss[j].t != smp.Timestamp || math.Float64bits(ss[j].v) != math.Float64bits(smp.Value) {
				t.Fatalf("series %d sample %d: %v, want %v", i, j, ss[j], smp)
			}
		}
	}
}
