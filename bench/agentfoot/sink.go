package agentfoot

import (
	"io"
	"net/http"
	"sync/atomic"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// maxWriteBytes bounds one remote_write request body.
const maxWriteBytes = 64 << 20

// WriteSink is a Prometheus remote_write receiver that decodes each request
// to count its series and samples, then discards it. It stands in for the
// database behind vmagent, so that only vmagent's own work is measured. It
// is safe for concurrent use.
type WriteSink struct {
	requests, failed      atomic.Int64
	series, samples, body atomic.Int64
}

// WriteStats is what a WriteSink has received.
type WriteStats struct {
	Requests int64 `json:"requests"`
	Failed   int64 `json:"failed"`
	Series   int64 `json:"series"`
	Samples  int64 `json:"samples"`
	Bytes    int64 `json:"bytes"`
}

// Stats returns the counts so far.
func (s *WriteSink) Stats() WriteStats {
	return WriteStats{Requests: s.requests.Load(), Failed: s.failed.Load(), Series: s.series.Load(),
		Samples: s.samples.Load(), Bytes: s.body.Load()}
}

// ServeHTTP accepts a snappy-compressed prompb.WriteRequest.
func (s *WriteSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	b, err := io.ReadAll(io.LimitReader(r.Body, maxWriteBytes))
	if err != nil {
		s.failed.Add(1)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.body.Add(int64(len(b)))
	raw, err := snappy.Decode(nil, b)
	if err != nil {
		s.failed.Add(1)
		http.Error(w, "snappy: "+err.Error(), http.StatusBadRequest)
		return
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		s.failed.Add(1)
		http.Error(w, "protobuf: "+err.Error(), http.StatusBadRequest)
		return
	}
	n := 0
	for _, ts := range req.Timeseries {
		n += len(ts.Samples)
	}
	s.series.Add(int64(len(req.Timeseries)))
	s.samples.Add(int64(n))
	w.WriteHeader(http.StatusNoContent)
}
