package remotewrite_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"

	"github.com/bureauhub/bureauhub/agent/remotewrite"
)

// fakeWriter records what it is given and answers err.
type fakeWriter struct {
	err error

	mu    sync.Mutex
	calls []writeCall
}

type writeCall struct {
	source string
	ts     []prompb.TimeSeries
}

var _ remotewrite.Writer = (*fakeWriter)(nil)

func (w *fakeWriter) Write(source string, ts []prompb.TimeSeries) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, writeCall{source, ts})
	return w.err
}

func (w *fakeWriter) snapshot() []writeCall {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.calls)
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newHandler(tb testing.TB, w remotewrite.Writer) (*remotewrite.Handler, *prometheus.Registry) {
	tb.Helper()
	reg := prometheus.NewRegistry()
	h, err := remotewrite.New(w, discardLogger(), reg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return h, reg
}

func encode(tb testing.TB, wr *prompb.WriteRequest) []byte {
	tb.Helper()
	raw, err := wr.Marshal()
	if err != nil {
		tb.Fatalf("marshal: %v", err)
	}
	return snappy.Encode(nil, raw)
}

func validRequest() *prompb.WriteRequest {
	return &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "prom"}},
			Samples: []prompb.Sample{{Timestamp: 1000, Value: 1}, {Timestamp: 2000, Value: 0}}},
		{Labels: []prompb.Label{{Name: "__name__", Value: "temp"}},
			Samples: []prompb.Sample{{Timestamp: 1000, Value: -3.5}}},
	}}
}

// post sends body through h and returns the response.
func post(h http.Handler, method string, body io.Reader, header map[string]string) *http.Response {
	req := httptest.NewRequest(method, "/api/v1/write", body)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

var promHeaders = map[string]string{
	"Content-Encoding":                  "snappy",
	"Content-Type":                      "application/x-protobuf",
	"X-Prometheus-Remote-Write-Version": "0.1.0",
}

func TestHandler(t *testing.T) {
	valid := encode(t, validRequest())
	tests := []struct {
		name      string
		method    string
		body      func(tb testing.TB) io.Reader
		header    map[string]string
		writerErr error
		want      int
		written   bool // whether the writer must have been called
		samples   int  // counted on success
	}{
		{name: "valid", method: http.MethodPost, body: bodyOf(valid), header: promHeaders, want: http.StatusNoContent, written: true, samples: 3},
		{name: "valid without headers", method: http.MethodPost, body: bodyOf(valid), want: http.StatusNoContent, written: true, samples: 3},
		{name: "version 1.0", method: http.MethodPost, body: bodyOf(valid), header: map[string]string{"X-Prometheus-Remote-Write-Version": "1.0"},
			want: http.StatusNoContent, written: true, samples: 3},
		{name: "empty request", method: http.MethodPost, body: func(tb testing.TB) io.Reader {
			return bytes.NewReader(encode(tb, &prompb.WriteRequest{}))
		}, want: http.StatusNoContent, written: true},
		{name: "bad snappy", method: http.MethodPost, body: bodyOf([]byte("\x0athis is not snappy at all")), want: http.StatusBadRequest},
		{name: "empty body", method: http.MethodPost, body: bodyOf(nil), want: http.StatusBadRequest},
		{name: "bad protobuf", method: http.MethodPost, body: bodyOf(snappy.Encode(nil, []byte{0x0a, 0xff, 0xff, 0xff})), want: http.StatusBadRequest},
		{name: "uncompressed protobuf", method: http.MethodPost, body: func(tb testing.TB) io.Reader {
			raw, _ := validRequest().Marshal()
			return bytes.NewReader(raw)
		}, want: http.StatusBadRequest},
		{name: "decoded size over the limit", method: http.MethodPost, body: func(testing.TB) io.Reader {
			// A varint length header claiming more than MaxRequestBytes.
			var hdr [10]byte
			n := binary.PutUvarint(hdr[:], remotewrite.MaxRequestBytes+1)
			return bytes.NewReader(append(hdr[:n], 0x00))
		}, want: http.StatusBadRequest},
		{name: "GET", method: http.MethodGet, body: bodyOf(nil), want: http.StatusMethodNotAllowed},
		{name: "PUT", method: http.MethodPut, body: bodyOf(valid), want: http.StatusMethodNotAllowed},
		{name: "gzip", method: http.MethodPost, body: bodyOf(valid), header: map[string]string{"Content-Encoding": "gzip"}, want: http.StatusUnsupportedMediaType},
		{name: "remote write 2.0", method: http.MethodPost, body: bodyOf(valid), header: map[string]string{"X-Prometheus-Remote-Write-Version": "2.0.0"},
			want: http.StatusUnsupportedMediaType},
		{name: "body too large", method: http.MethodPost, body: func(testing.TB) io.Reader {
			return io.LimitReader(zeros{}, remotewrite.MaxRequestBytes+1)
		}, want: http.StatusRequestEntityTooLarge},
		{name: "body at the limit is read", method: http.MethodPost, body: func(testing.TB) io.Reader {
			return io.LimitReader(zeros{}, remotewrite.MaxRequestBytes)
		}, want: http.StatusBadRequest},
		{name: "writer fails", method: http.MethodPost, body: bodyOf(valid), header: promHeaders, writerErr: errors.New("disk full"),
			want: http.StatusInternalServerError, written: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fw := &fakeWriter{err: tt.writerErr}
			h, reg := newHandler(t, fw)
			resp := post(h, tt.method, tt.body(t), tt.header)
			if resp.StatusCode != tt.want {
				msg, _ := io.ReadAll(resp.Body)
				t.Fatalf("status = %d (%s), want %d", resp.StatusCode, strings.TrimSpace(string(msg)), tt.want)
			}
			calls := fw.snapshot()
			if tt.written != (len(calls) == 1) || len(calls) > 1 {
				t.Fatalf("writer called %d times, want written=%v", len(calls), tt.written)
			}
			want := fmt.Sprintf(`
# HELP bureauhub_agent_remote_write_requests_total remote_write requests received, by HTTP status code answered.
# TYPE bureauhub_agent_remote_write_requests_total counter
bureauhub_agent_remote_write_requests_total{code="%d"} 1
# HELP bureauhub_agent_remote_write_samples_total Samples accepted through remote_write.
# TYPE bureauhub_agent_remote_write_samples_total counter
bureauhub_agent_remote_write_samples_total %d
`, tt.want, tt.samples)
			if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
				"bureauhub_agent_remote_write_requests_total", "bureauhub_agent_remote_write_samples_total"); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestHandlerPassesSeries(t *testing.T) {
	fw := &fakeWriter{}
	h, _ := newHandler(t, fw)
	resp := post(h, http.MethodPost, bytes.NewReader(encode(t, validRequest())), promHeaders)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status = %d, want 204", resp.StatusCode)
	}
	calls := fw.snapshot()
	if len(calls) != 1 {
		t.Fatalf("writer called %d times, want 1", len(calls))
	}
	if calls[0].source != "remote_write" {
		t.Errorf("source = %q, want remote_write", calls[0].source)
	}
	want := validRequest().Timeseries
	got := calls[0].ts
	if len(got) != len(want) {
		t.Fatalf("writer got %d series, want %d", len(got), len(want))
	}
	for i := range want {
		if !slices.EqualFunc(got[i].Labels, want[i].Labels, func(a, b prompb.Label) bool { return a.Name == b.Name && a.Value == b.Value }) ||
			!slices.EqualFunc(got[i].Samples, want[i].Samples, func(a, b prompb.Sample) bool { return a.Timestamp == b.Timestamp && a.Value == b.Value }) {
			t.Errorf("series %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestHandlerCountsByCode(t *testing.T) {
	fw := &fakeWriter{}
	h, reg := newHandler(t, fw)
	valid := encode(t, validRequest())
	for range 3 {
		post(h, http.MethodPost, bytes.NewReader(valid), nil)
	}
	post(h, http.MethodGet, http.NoBody, nil)
	post(h, http.MethodPost, strings.NewReader("junk"), nil)
	post(h, http.MethodPost, strings.NewReader("junk"), nil)
	want := `
# HELP bureauhub_agent_remote_write_requests_total remote_write requests received, by HTTP status code answered.
# TYPE bureauhub_agent_remote_write_requests_total counter
bureauhub_agent_remote_write_requests_total{code="204"} 3
bureauhub_agent_remote_write_requests_total{code="400"} 2
bureauhub_agent_remote_write_requests_total{code="405"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "bureauhub_agent_remote_write_requests_total"); err != nil {
		t.Error(err)
	}
}

func TestDecode(t *testing.T) {
	wr, err := remotewrite.Decode(encode(t, validRequest()))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if len(wr.Timeseries) != 2 || len(wr.Timeseries[0].Samples) != 2 {
		t.Errorf("Decode = %v", wr)
	}
	for _, body := range [][]byte{nil, []byte("x"), snappy.Encode(nil, []byte{0xff})} {
		if _, err := remotewrite.Decode(body); err == nil {
			t.Errorf("Decode(%q) succeeded", body)
		}
	}
}

func TestNewRegistersOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := remotewrite.New(&fakeWriter{}, discardLogger(), reg); err != nil {
		t.Fatal(err)
	}
	if _, err := remotewrite.New(&fakeWriter{}, discardLogger(), reg); err == nil {
		t.Error("second handler on one registry registered its metrics without error")
	}
	if _, err := remotewrite.New(&fakeWriter{}, discardLogger(), nil); err != nil {
		t.Errorf("New with a nil registerer: %v", err)
	}
}

func bodyOf(b []byte) func(testing.TB) io.Reader {
	return func(testing.TB) io.Reader { return bytes.NewReader(b) }
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
