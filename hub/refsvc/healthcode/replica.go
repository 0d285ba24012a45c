package healthcode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bureauhub/bureauhub/hub/refsvc"
	"github.com/bureauhub/bureauhub/hub/refsvc/capacity"
)

// Scan outcomes, as the healthcode_scans_total outcome label spells them.
const (
	OutcomeOK       = "ok"
	OutcomeNotFound = "not_found"
	OutcomeBadID    = "bad_id"
	// OutcomeError is a scan that got no code for reasons of the service:
	// refused for capacity (503), the client gave up waiting, or a store
	// error (500).
	OutcomeError = "error"
)

// maxBody bounds a POST body; a result is well under 200 bytes.
const maxBody = 64 << 10

// ResultRequest is the body of POST /api/v1/results.
type ResultRequest struct {
	// ID is the person's ID.
	ID string `json:"id"`
	// Time is when the sample was taken, in simulated time (RFC 3339).
	Time time.Time `json:"time"`
	// Result is negative or positive.
	Result string `json:"result"`
}

// errorBody is every error answer.
type errorBody struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

// replica is one replica's handler.
type replica struct {
	svc    *Service
	logger *slog.Logger
	cache  *cache
	mux    *http.ServeMux
	m      replicaMetrics
	closed sync.Once
}

type replicaMetrics struct {
	scans         *prometheus.CounterVec
	scanDuration  prometheus.Histogram
	cacheRequests *prometheus.CounterVec
	evictions     *prometheus.CounterVec
	invalidations prometheus.Counter
	updates       *prometheus.CounterVec
	requests      *prometheus.CounterVec
}

func newReplica(s *Service, r refsvc.Replica) (*replica, error) {
	rp := &replica{svc: s, logger: s.logger.With("replica", r.ID), mux: http.NewServeMux()}
	m := &rp.m
	m.scans = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "healthcode_scans_total",
		Help: "Code scans by outcome (ok, not_found, bad_id, error) and the colour answered (none unless ok)."},
		[]string{"colour", "outcome"})
	m.scanDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "healthcode_scan_duration_seconds",
		Help:    "Code-scan latency, from the request's arrival (so including the wait for capacity) to the answer, whatever the outcome.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}})
	m.cacheRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "healthcode_cache_requests_total",
		Help: "Lookups of existing people in the replica's cache, by result (hit, miss)."},
		[]string{"result"})
	m.evictions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "healthcode_cache_evictions_total",
		Help: "People dropped from the replica's cache, by reason (capacity: least recently used beyond cache.size; expired: older than cache.ttl)."},
		[]string{"reason"})
	m.invalidations = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "healthcode_cache_invalidations_total",
		Help: "Invalidations of one person in the replica's cache after an update through any replica."})
	m.updates = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "healthcode_updates_total",
		Help: "Test results stored, by outcome (applied; superseded: older than the person's latest test, code unchanged)."},
		[]string{"outcome"})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "healthcode_http_requests_total",
		Help: "HTTP requests by endpoint (scan, result, other) and status code (499: the client went away unanswered)."},
		[]string{"endpoint", "code"})
	for _, c := range []string{Green, Yellow, Red} {
		m.scans.WithLabelValues(c, OutcomeOK)
	}
	for _, o := range []string{OutcomeNotFound, OutcomeBadID, OutcomeError} {
		m.scans.WithLabelValues("none", o)
	}
	m.cacheRequests.WithLabelValues("hit")
	m.cacheRequests.WithLabelValues("miss")
	m.evictions.WithLabelValues("capacity")
	m.evictions.WithLabelValues("expired")
	m.updates.WithLabelValues("applied")
	m.updates.WithLabelValues("superseded")

	rp.cache = newCache(s.cfg.Cache.Size, s.cfg.Cache.TTL, s.wallNow)
	rp.cache.onEvict = func(reason string) { m.evictions.WithLabelValues(reason).Inc() }
	rp.cache.onInvalidate = m.invalidations.Inc
	entries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "healthcode_cache_entries", Help: "People in the replica's cache."},
		func() float64 { return float64(rp.cache.len()) })

	if reg := r.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{m.scans, m.scanDuration, m.cacheRequests, m.evictions,
			m.invalidations, m.updates, m.requests, entries} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}

	limiter := capacity.New(s.cfg.Capacity, r.Registerer)
	rp.mux.Handle("/api/v1/codes/{id}", rp.endpoint("scan", http.MethodGet, limiter.Middleware(http.HandlerFunc(rp.scan))))
	rp.mux.Handle("/api/v1/results", rp.endpoint("result", http.MethodPost, limiter.Middleware(http.HandlerFunc(rp.result))))
	rp.mux.Handle("/", rp.endpoint("other", "", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		writeError(w, http.StatusNotFound, "path: no such endpoint: "+req.URL.Path, "no_endpoint")
	})))
	return rp, nil
}

// ServeHTTP serves the replica's API.
func (rp *replica) ServeHTTP(w http.ResponseWriter, r *http.Request) { rp.mux.ServeHTTP(w, r) }

// Close detaches the replica's cache from the service's invalidations.
func (rp *replica) Close() error {
	rp.closed.Do(func() {
		rp.svc.detach(rp.cache)
	})
	return nil
}

// scanNote is how a scan's handler tells endpoint what to count.
type scanNote struct{ outcome, colour string }

type scanNoteKey struct{}

// endpoint counts the requests to one endpoint by status and, for scans,
// times them from arrival (so including the capacity wait that next does)
// and counts their outcome.
func (rp *replica) endpoint(name, method string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		if method != "" && r.Method != method {
			sw.Header().Set("Allow", method)
			writeError(sw, http.StatusMethodNotAllowed, "method: "+name+" takes "+method+", got "+r.Method, "method_not_allowed")
			rp.m.requests.WithLabelValues(name, strconv.Itoa(sw.status)).Inc()
			return
		}
		note := &scanNote{}
		if name == "scan" {
			r = r.WithContext(context.WithValue(r.Context(), scanNoteKey{}, note))
		}
		next.ServeHTTP(sw, r)
		code := sw.status
		if code == 0 {
			code = 499
		}
		rp.m.requests.WithLabelValues(name, strconv.Itoa(code)).Inc()
		if name == "scan" {
			if note.outcome == "" {
				note.outcome, note.colour = OutcomeError, ""
			}
			if note.colour == "" {
				note.colour = "none"
			}
			rp.m.scans.WithLabelValues(note.colour, note.outcome).Inc()
			rp.m.scanDuration.Observe(time.Since(start).Seconds())
		}
	})
}

// scan answers GET /api/v1/codes/{id}.
func (rp *replica) scan(w http.ResponseWriter, r *http.Request) {
	note, _ := r.Context().Value(scanNoteKey{}).(*scanNote)
	if note == nil {
		note = &scanNote{}
	}
	id := r.PathValue("id")
	i, err := ParseID(id)
	if err != nil {
		note.outcome = OutcomeBadID
		writeError(w, http.StatusBadRequest, err.Error(), "bad_id")
		return
	}
	rec, ok, err := rp.lookup(i)
	switch {
	case err != nil:
		note.outcome = OutcomeError
		rp.logger.Error("scan failed", "id", id, "err", err)
		writeError(w, http.StatusInternalServerError, "store: "+err.Error(), "internal")
		return
	case !ok:
		note.outcome = OutcomeNotFound
		writeError(w, http.StatusNotFound, "id: no such person: "+id, "not_found")
		return
	}
	code := rec.code(id, rp.svc.clock.Now())
	note.outcome, note.colour = OutcomeOK, code.Colour
	writeJSON(w, http.StatusOK, code)
}

// lookup reads person i through the replica's cache. People are never
// added, so indexes beyond the population are unknown without a lookup.
func (rp *replica) lookup(i int) (*record, bool, error) {
	if i >= rp.svc.cfg.Population {
		return nil, false, nil
	}
	if rec, ok := rp.cache.get(i); ok {
		rp.m.cacheRequests.WithLabelValues("hit").Inc()
		return rec, true, nil
	}
	rp.m.cacheRequests.WithLabelValues("miss").Inc()
	epoch := rp.cache.epoch(i)
	rec, ok, err := rp.svc.store.get(i)
	if err != nil || !ok {
		return nil, ok, err
	}
	rp.cache.fill(i, rec, epoch)
	return rec, true, nil
}

// resultBody is ResultRequest as decoded: pointers tell a missing field
// from an empty one, and the time is parsed by hand so that its error
// names the field.
type resultBody struct {
	ID     *string `json:"id"`
	Time   *string `json:"time"`
	Result *string `json:"result"`
}

// result answers POST /api/v1/results.
func (rp *replica) result(w http.ResponseWriter, r *http.Request) {
	var body resultBody
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		status, msg, reason := decodeError(err)
		writeError(w, status, msg, reason)
		return
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "body: more than one JSON value", "bad_json")
		return
	}
	switch {
	case body.ID == nil:
		writeError(w, http.StatusBadRequest, "id: required", "missing_field")
		return
	case body.Time == nil:
		writeError(w, http.StatusBadRequest, "time: required", "missing_field")
		return
	case body.Result == nil:
		writeError(w, http.StatusBadRequest, "result: required", "missing_field")
		return
	}
	i, err := ParseID(*body.ID)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "bad_id")
		return
	}
	at, err := time.Parse(time.RFC3339Nano, *body.Time)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("time: must be an RFC 3339 time, got %q", *body.Time), "bad_value")
		return
	}
	if *body.Result != Negative && *body.Result != Positive {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("result: must be %q or %q, got %q", Negative, Positive, *body.Result), "bad_value")
		return
	}
	if i >= rp.svc.cfg.Population {
		writeError(w, http.StatusNotFound, "id: no such person: "+*body.ID, "not_found")
		return
	}
	rec, applied, ok, err := rp.svc.recordResult(i, at, *body.Result == Positive)
	switch {
	case errors.Is(err, refsvc.ErrNotDurable):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "the result is not confirmed yet ("+err.Error()+"); retry", "not_durable")
		return
	case err != nil:
		rp.logger.Error("recording a result failed", "id", *body.ID, "err", err)
		writeError(w, http.StatusInternalServerError, "store: "+err.Error(), "internal")
		return
	case !ok:
		writeError(w, http.StatusNotFound, "id: no such person: "+*body.ID, "not_found")
		return
	case applied:
		rp.m.updates.WithLabelValues("applied").Inc()
	default:
		rp.m.updates.WithLabelValues("superseded").Inc()
	}
	writeJSON(w, http.StatusOK, rec.code(*body.ID, rp.svc.clock.Now()))
}

// decodeError turns a JSON decoding error into an answer naming the field.
func decodeError(err error) (status int, msg, reason string) {
	var (
		tooLarge *http.MaxBytesError
		typeErr  *json.UnmarshalTypeError
		syntax   *json.SyntaxError
	)
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("body: larger than %d bytes", tooLarge.Limit), "too_large"
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return http.StatusBadRequest, "body: must be a JSON object, got " + typeErr.Value, "bad_json"
		}
		// Every field of the body is a string.
		return http.StatusBadRequest, fmt.Sprintf("%s: must be a string, got %s", typeErr.Field, typeErr.Value), "bad_json"
	case errors.As(err, &syntax):
		return http.StatusBadRequest, "body: invalid JSON: " + err.Error(), "bad_json"
	case errors.Is(err, io.EOF):
		return http.StatusBadRequest, "body: empty", "bad_json"
	}
	// encoding/json reports unknown fields only as text.
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return http.StatusBadRequest, strings.Trim(f, `"`) + ": unknown field", "unknown_field"
	}
	return http.StatusBadRequest, "body: " + err.Error(), "bad_json"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // a failed write means the client left
}

func writeError(w http.ResponseWriter, status int, msg, reason string) {
	writeJSON(w, status, errorBody{Error: msg, Reason: reason})
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
