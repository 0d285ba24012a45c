package remotewrite_test

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/bureauhub/bureauhub/agent/remotewrite"
)

// FuzzRemoteWriteHandler posts arbitrary bodies. The handler must answer
// 204, 400 or 413 and never panic; on 204 the writer got exactly the series
// the body decodes to.
func FuzzRemoteWriteHandler(f *testing.F) {
	valid, err := validRequest().Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(snappy.Encode(nil, valid))
	f.Add(snappy.Encode(nil, nil))
	f.Add([]byte{})
	f.Add([]byte("garbage"))
	f.Add(valid)
	f.Add([]byte("\xff\xff\xff\xff\x0f"))

	f.Fuzz(func(t *testing.T, body []byte) {
		if n, err := snappy.DecodedLen(body); err == nil && n > 1<<20 && n <= remotewrite.MaxSnappyRatio*len(body)+64 {
			// A plausible claim of over 1 MiB: decoding it is legitimate
			// but slow to fuzz. Implausible claims are refused before any
			// allocation (TestSnappyBombIsRefused).
			t.Skip("claims a large decoded size")
		}
		fw := &fakeWriter{}
		h, err := remotewrite.New(fw, discardLogger(), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp := post(h, http.MethodPost, bytes.NewReader(body), promHeaders)
		calls := fw.snapshot()
		switch resp.StatusCode {
		case http.StatusNoContent:
			wr, err := remotewrite.Decode(body)
			if err != nil {
				t.Fatalf("204 for a body Decode refuses: %v", err)
			}
			if len(calls) != 1 {
				t.Fatalf("204 with the writer called %d times", len(calls))
			}
			if got, want := countSamples(calls[0].ts), countSamples(wr.Timeseries); len(calls[0].ts) != len(wr.Timeseries) || got != want {
				t.Fatalf("writer got %d series, %d samples; body holds %d, %d", len(calls[0].ts), got, len(wr.Timeseries), want)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if len(calls) != 0 {
				t.Fatalf("status %d but the writer was called", resp.StatusCode)
			}
		default:
			t.Fatalf("status %d, want 204, 400 or 413", resp.StatusCode)
		}
	})
}

func countSamples(ts []prompb.TimeSeries) int {
	n := 0
	for _, s := range ts {
		n += len(s.Samples)
	}
	return n
}
