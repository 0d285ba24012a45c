// Package remotewrite accepts Prometheus remote_write 1.0 (snappy-compressed
// protobuf) so a bureau's existing Prometheus can federate through its agent.
package remotewrite

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
)

// Writer stores decoded series durably; *sink.Sink implements it.
type Writer interface {
	Write(source string, ts []prompb.TimeSeries) error
}

// MaxRequestBytes bounds a request body, compressed and decoded.
const MaxRequestBytes = 32 << 20

// MaxSnappyRatio bounds how much a snappy block can expand; a header that
// claims more is corrupt. Callers decoding snappy check it before
// allocating the decoded size.
const MaxSnappyRatio = 24

// Handler serves POST requests at the remote_write endpoint. It answers 204
// only once the samples are in the agent's durable buffer, 400 for a request
// that can never be accepted (Prometheus drops it) and 500 when the buffer
// failed (Prometheus retries).
type Handler struct {
	w        Writer
	logger   *slog.Logger
	requests *prometheus.CounterVec
	samples  prometheus.Counter
}

// New returns a Handler. reg may be nil.
func New(w Writer, logger *slog.Logger, reg prometheus.Registerer) (*Handler, error) {
	h := &Handler{
		w:      w,
		logger: logger,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_agent_remote_write_requests_total",
			Help: "remote_write requests received, by HTTP status code answered.",
		}, []string{"code"}),
		samples: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bureauhub_agent_remote_write_samples_total",
			Help: "Samples accepted through remote_write.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{h.requests, h.samples} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return h, nil
}

// Decode parses one remote_write request body.
func Decode(body []byte) (*prompb.WriteRequest, error) {
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	if n > MaxRequestBytes {
		return nil, fmt.Errorf("decoded body of %d bytes exceeds %d", n, MaxRequestBytes)
	}
	// Snappy expands at most ~21x (a 3-byte copy yields 64 bytes); a
	// header claiming more is a lie meant to make us allocate.
	if n > MaxSnappyRatio*len(body)+64 {
		return nil, fmt.Errorf("snappy header claims %d bytes from %d compressed: corrupt", n, len(body))
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	var wr prompb.WriteRequest
	if err := wr.Unmarshal(raw); err != nil {
		return nil, fmt.Errorf("protobuf: %w", err)
	}
	return &wr, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		h.fail(w, http.StatusMethodNotAllowed, "remote_write takes POST")
		return
	}
	if enc := r.Header.Get("Content-Encoding"); enc != "" && enc != "snappy" {
		h.fail(w, http.StatusUnsupportedMediaType, fmt.Sprintf("unsupported Content-Encoding %q: want snappy", enc))
		return
	}
	if v := r.Header.Get("X-Prometheus-Remote-Write-Version"); v != "" && v[0] != '0' && v[0] != '1' {
		h.fail(w, http.StatusUnsupportedMediaType, fmt.Sprintf("unsupported remote write version %q: this endpoint speaks 1.0", v))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body exceeds %d bytes", MaxRequestBytes))
			return
		}
		h.fail(w, http.StatusBadRequest, "read body: "+err.Error())
		return
	}
	wr, err := Decode(body)
	if err != nil {
		h.fail(w, http.StatusBadRequest, "decode remote_write request: "+err.Error())
		return
	}
	n := 0
	for i := range wr.Timeseries {
		n += len(wr.Timeseries[i].Samples)
	}
	if err := h.w.Write("remote_write", wr.Timeseries); err != nil {
		h.logger.Error("remote_write: buffer append failed", "err", err)
		h.fail(w, http.StatusInternalServerError, "store in agent buffer failed; retry")
		return
	}
	h.samples.Add(float64(n))
	h.requests.WithLabelValues("204").Inc()
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) fail(w http.ResponseWriter, code int, msg string) {
	h.requests.WithLabelValues(fmt.Sprint(code)).Inc()
	http.Error(w, msg, code)
}
