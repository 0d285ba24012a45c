package booking

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bureauhub/bureauhub/hub/refsvc"
	"github.com/bureauhub/bureauhub/hub/refsvc/capacity"
)

// replica is one replica's handler state: its capacity, rate limiter,
// slot cache and metrics. The store and waiting room are the Service's.
type replica struct {
	svc      *Service
	id       string
	limiter  *limiter
	capacity *capacity.Limiter
	metrics  *replicaMetrics
	handler  http.Handler

	cacheMu sync.Mutex
	cache   map[*visaType]cacheEntry
}

type cacheEntry struct {
	gen   uint64
	slots []availSlot
}

// NewReplica builds one replica's handler for the /api/v1 endpoints of
// docs/refsvc.md, and registers the replica's metrics (booking_*,
// refsvc_capacity_*) with r.Registerer. Requests pass through, in order:
// metrics, the replica's rate limits (not for waiting-room polls), the
// replica's emulated capacity, the endpoint; booking attempts take their
// capacity slot after the waiting room admits them.
func (s *Service) NewReplica(r refsvc.Replica) (http.Handler, error) {
	rp := &replica{svc: s, id: r.ID, cache: map[*visaType]cacheEntry{}}
	var evictions func()
	rp.limiter = newLimiter(s.cfg.RateLimit, func() { evictions() })
	m, err := newReplicaMetrics(rp, r.Registerer)
	if err != nil {
		return nil, fmt.Errorf("replica %s: %w", r.ID, err)
	}
	rp.metrics = m
	evictions = m.evictions.Inc

	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/consulates", rp.handleConsulates)
	mux.HandleFunc("GET /api/v1/slots", rp.handleSlots)
	mux.HandleFunc("POST /api/v1/bookings", rp.handleBook)
	mux.HandleFunc("GET /api/v1/bookings/{id}", rp.handleGet)
	mux.HandleFunc("POST /api/v1/bookings/{id}/pay", rp.handlePay)
	mux.HandleFunc("POST /api/v1/bookings/{id}/cancel", rp.handleCancel)
	mux.HandleFunc("GET /api/v1/queue/{ticket}", rp.handleQueue)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("path: no endpoint %s %s", r.Method, r.URL.Path))
	})
	rp.capacity = capacity.New(s.cfg.Capacity, r.Registerer)
	// Booking attempts take their capacity slot after the waiting room has
	// admitted them, so "in progress" covers the wait for capacity too and
	// the waiting room takes over when replicas queue, as in the incident.
	outer := http.NewServeMux()
	outer.HandleFunc("POST /api/v1/bookings", rp.handleBook)
	outer.Handle("/", rp.capacity.Middleware(mux))
	rp.handler = rp.instrument(rp.rateLimit(outer))
	return rp, nil
}

// ServeHTTP serves the replica's API.
func (rp *replica) ServeHTTP(w http.ResponseWriter, r *http.Request) { rp.handler.ServeHTTP(w, r) }

// endpointOf names a request's endpoint for the metrics, before routing.
func endpointOf(r *http.Request) string {
	p := r.URL.Path
	switch {
	case p == "/api/v1/consulates":
		return "consulates"
	case p == "/api/v1/slots":
		return "slots"
	case p == "/api/v1/bookings":
		return "book"
	case strings.HasPrefix(p, "/api/v1/bookings/"):
		switch {
		case strings.HasSuffix(p, "/pay"):
			return "pay"
		case strings.HasSuffix(p, "/cancel"):
			return "cancel"
		}
		return "get_booking"
	case strings.HasPrefix(p, "/api/v1/queue/"):
		return "queue"
	}
	return "other"
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (rp *replica) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ep := endpointOf(r)
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.code == 0 {
			rec.code = http.StatusOK
		}
		rp.metrics.duration.WithLabelValues(ep).Observe(time.Since(start).Seconds())
		rp.metrics.requests.WithLabelValues(ep, strconv.Itoa(rec.code)).Inc()
	})
}

// clientID is the X-Client-ID header, else the remote IP.
func clientID(r *http.Request) string {
	if id := r.Header.Get("X-Client-ID"); id != "" {
		return "id:" + id
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "ip:" + host
}

// rateLimit refuses requests beyond the client's or the replica's rate
// with 429. Waiting-room polls are exempt: the room bounds them, and a
// refused poll would cost the client its place.
func (rp *replica) rateLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ep := endpointOf(r)
		if ep == "queue" {
			next.ServeHTTP(w, r)
			return
		}
		ok, retry := rp.limiter.allow(clientID(r), time.Now())
		if ok {
			next.ServeHTTP(w, r)
			return
		}
		rp.metrics.rateLimitedTot.WithLabelValues(ep).Inc()
		if ep == "book" && r.Method == http.MethodPost {
			rp.metrics.outcome(outcomeRateLimited)
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(retry/time.Second)))
		writeError(w, http.StatusTooManyRequests, "rate_limited", fmt.Sprintf("rate limit exceeded; retry after %ds", int(retry/time.Second)))
	})
}

// errorBody is every error answer.
type errorBody struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, reason, msg string) {
	writeJSON(w, code, errorBody{Error: msg, Reason: reason})
}

// consulatesBody answers GET /api/v1/consulates.
type consulatesBody struct {
	Consulates []consulateBody `json:"consulates"`
}

type consulateBody struct {
	Name      string         `json:"name"`
	VisaTypes []visaTypeBody `json:"visa_types"`
}

type visaTypeBody struct {
	Name        string   `json:"name"`
	SlotsPerDay int      `json:"slots_per_day"`
	Times       []string `json:"times"`
}

func (rp *replica) handleConsulates(w http.ResponseWriter, r *http.Request) {
	var body consulatesBody
	for _, co := range rp.svc.cat.consulates {
		cb := consulateBody{Name: co.name}
		for _, vt := range co.visas {
			vb := visaTypeBody{Name: vt.name, SlotsPerDay: vt.slotsPerDay}
			for _, m := range vt.times {
				vb.Times = append(vb.Times, fmt.Sprintf("%02d:%02d", m/60, m%60))
			}
			cb.VisaTypes = append(cb.VisaTypes, vb)
		}
		body.Consulates = append(body.Consulates, cb)
	}
	writeJSON(w, http.StatusOK, body)
}

// slotsBody answers GET /api/v1/slots.
type slotsBody struct {
	Available int        `json:"available"`
	Slots     []slotBody `json:"slots"`
}

type slotBody struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
}

const maxLimit = 1000

func (rp *replica) handleSlots(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cat := rp.svc.cat
	cname, vname := q.Get("consulate"), q.Get("visa_type")
	if cname == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "consulate: query parameter required")
		return
	}
	co := cat.byName[cname]
	if co == nil {
		writeError(w, http.StatusBadRequest, "unknown_consulate", fmt.Sprintf("consulate: unknown consulate %q", cname))
		return
	}
	if vname == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "visa_type: query parameter required")
		return
	}
	vt := co.byName[vname]
	if vt == nil {
		writeError(w, http.StatusBadRequest, "unknown_visa_type", fmt.Sprintf("visa_type: consulate %q has no visa type %q", cname, vname))
		return
	}
	var day time.Time
	if d := q.Get("date"); d != "" {
		var err error
		if day, err = time.ParseInLocation(time.DateOnly, d, cat.loc); err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("date: %q is not YYYY-MM-DD", d))
			return
		}
	}
	limit := 20
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxLimit {
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("limit: %q is not an integer 1..%d", l, maxLimit))
			return
		}
		limit = n
	}
	all, err := rp.availableSlots(co, vt)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", "read slots: "+err.Error())
		return
	}
	body := slotsBody{Slots: []slotBody{}}
	for _, s := range all {
		if !day.IsZero() && !midnight(s.at).Equal(day) {
			continue
		}
		body.Available++
		if len(body.Slots) < limit {
			body.Slots = append(body.Slots, slotBody{ID: s.id, Time: s.at})
		}
	}
	writeJSON(w, http.StatusOK, body)
}

// availableSlots returns the future available slots of a consulate and
// visa type from this replica's cache, refilling it from the store when
// any replica has changed availability since.
func (rp *replica) availableSlots(co *consulate, vt *visaType) ([]availSlot, error) {
	svc := rp.svc
	now := svc.clock.Now()
	gen := svc.gen.Load() // before reading, so a change during the read invalidates
	rp.cacheMu.Lock()
	e, ok := rp.cache[vt]
	rp.cacheMu.Unlock()
	if ok && e.gen == gen {
		rp.metrics.cacheHits.Inc()
	} else {
		rp.metrics.cacheMisses.Inc()
		slots, err := svc.store.available(co, vt, now, svc.cfg.DaysAhead)
		if err != nil {
			return nil, err
		}
		e = cacheEntry{gen: gen, slots: slots}
		rp.cacheMu.Lock()
		rp.cache[vt] = e
		rp.cacheMu.Unlock()
	}
	// Drop slots whose time has passed since the entry was filled.
	i := 0
	for i < len(e.slots) && !e.slots[i].at.After(now) {
		i++
	}
	return e.slots[i:], nil
}

// bookRequest is POST /api/v1/bookings's body.
type bookRequest struct {
	SlotID      string `json:"slot_id"`
	ApplicantID string `json:"applicant_id"`
}

// queuedBody answers a booking sent to the waiting room.
type queuedBody struct {
	QueueTicket string `json:"queue_ticket"`
	Position    int    `json:"position"`
	PollAfterMS int64  `json:"poll_after_ms"`
}

const maxBody = 64 << 10

// decodeJSON reads one JSON object into v, refusing unknown fields and
// trailing data; its errors name the field.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF):
			return errors.New("body: empty, want a JSON object")
		case errors.As(err, &syn):
			return fmt.Errorf("body: invalid JSON at byte %d: %w", syn.Offset, err)
		case errors.As(err, &typ):
			return fmt.Errorf("body.%s: want a JSON %s, got %s", typ.Field, typ.Type, typ.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return fmt.Errorf("body: unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return fmt.Errorf("body: %w", err)
	}
	if dec.More() {
		return errors.New("body: trailing data after the JSON object")
	}
	return nil
}

var keyPattern = regexp.MustCompile(`^[\x21-\x7e]{1,128}$`)

func (rp *replica) handleBook(w http.ResponseWriter, r *http.Request) {
	outcome := outcomeError
	defer func() { rp.metrics.outcome(outcome) }()
	fail := func(o string, code int, reason, msg string) {
		outcome = o
		writeError(w, code, reason, msg)
	}
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		fail(outcomeInvalid, http.StatusBadRequest, "missing_idempotency_key", "Idempotency-Key: header required")
		return
	}
	if !keyPattern.MatchString(key) {
		fail(outcomeInvalid, http.StatusBadRequest, "bad_idempotency_key", "Idempotency-Key: want 1..128 printable ASCII characters without spaces")
		return
	}
	var req bookRequest
	if err := decodeJSON(r, &req); err != nil {
		fail(outcomeInvalid, http.StatusBadRequest, "bad_body", err.Error())
		return
	}
	if req.SlotID == "" {
		fail(outcomeInvalid, http.StatusBadRequest, "bad_body", "body.slot_id: required")
		return
	}
	if req.ApplicantID == "" || len(req.ApplicantID) > 128 {
		fail(outcomeInvalid, http.StatusBadRequest, "bad_body", "body.applicant_id: required, at most 128 bytes")
		return
	}
	slot, err := rp.svc.cat.parseSlotID(req.SlotID)
	switch {
	case errors.Is(err, errUnknownSlot):
		fail(outcomeUnknownSlot, http.StatusNotFound, "unknown_slot", "slot_id: "+err.Error())
		return
	case err != nil:
		fail(outcomeInvalid, http.StatusBadRequest, "bad_slot_id", "slot_id: "+err.Error())
		return
	}
	body := slot.id() + "\n" + req.ApplicantID

	// A retry of a booking already made is answered before queueing.
	rec, found, err := rp.svc.store.lookupKey(key, body)
	switch {
	case errors.Is(err, errKeyReused):
		fail(outcomeKeyReused, http.StatusUnprocessableEntity, "idempotency_key_reused",
			"Idempotency-Key: already used with a different slot_id or applicant_id")
		return
	case err != nil:
		fail(outcomeError, http.StatusInternalServerError, "internal", "look up idempotency key: "+err.Error())
		return
	case found:
		outcome = outcomeReplay
		writeJSON(w, http.StatusOK, rp.svc.view(rec))
		return
	}

	adm := rp.svc.room.admit(r.Header.Get("X-Queue-Pass"), time.Now())
	switch {
	case adm.full:
		rp.metrics.roomRefused.Inc()
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(rp.svc.cfg.WaitingRoom.PollAfter.Seconds()))))
		fail(outcomeRoomFull, http.StatusServiceUnavailable, "waiting_room_full", "waiting room is full; retry later")
		return
	case !adm.admitted:
		outcome = outcomeQueued
		writeJSON(w, http.StatusAccepted, queuedBody{
			QueueTicket: adm.ticket, Position: adm.position,
			PollAfterMS: rp.svc.cfg.WaitingRoom.PollAfter.Milliseconds()})
		return
	}
	defer func() { rp.svc.room.done(time.Now()) }()
	if adm.waited > 0 {
		rp.metrics.roomWait.Observe(adm.waited.Seconds())
	}
	release, err := rp.capacity.Acquire(r.Context())
	if err != nil {
		if r.Context().Err() != nil {
			return // the client has gone
		}
		w.Header().Set("Retry-After", "1")
		fail(outcomeError, http.StatusServiceUnavailable, err.Error(), "replica overloaded: "+err.Error())
		return
	}
	defer release()
	rp.capacity.Work()

	rec, created, err := rp.svc.store.book(key, slot, req.ApplicantID, rp.svc.clock.Now(), rp.svc.cfg.PaymentWindow)
	switch {
	case err == nil && created:
		rp.svc.gen.Add(1)
		outcome = outcomeSuccess
		writeJSON(w, http.StatusCreated, rp.svc.view(rec))
	case err == nil:
		outcome = outcomeReplay
		writeJSON(w, http.StatusOK, rp.svc.view(rec))
	case errors.Is(err, errSlotTaken):
		fail(outcomeNoSlot, http.StatusConflict, "slot_taken", "slot_id: "+req.SlotID+" is already booked")
	case errors.Is(err, errNotReleased):
		fail(outcomeNotReleased, http.StatusConflict, "not_released", "slot_id: "+req.SlotID+" is not released yet")
	case errors.Is(err, errSlotPast):
		fail(outcomeSlotPast, http.StatusConflict, "slot_past", "slot_id: "+req.SlotID+" is in the past")
	case errors.Is(err, errKeyReused):
		fail(outcomeKeyReused, http.StatusUnprocessableEntity, "idempotency_key_reused",
			"Idempotency-Key: already used with a different slot_id or applicant_id")
	case errors.Is(err, refsvc.ErrNotDurable):
		// Committed here, perhaps holding the slot: caches must see it.
		rp.svc.gen.Add(1)
		w.Header().Set("Retry-After", "1")
		fail(outcomeError, http.StatusServiceUnavailable, "not_durable",
			"the booking is not confirmed yet ("+err.Error()+"); retry with the same Idempotency-Key")
	default:
		fail(outcomeError, http.StatusInternalServerError, "internal", "book: "+err.Error())
	}
}

// view is the answer for a booking: a hold past its window reads expired
// even before the sweep has ended it.
func (s *Service) view(rec record) record {
	if rec.Status == StatusHeld && !rec.ExpiresAt.After(s.clock.Now()) {
		rec.Status = StatusExpired
		rec.ExpiresAt = time.Time{}
	}
	return rec
}

var bookingIDPattern = regexp.MustCompile(`^[0-9a-f]{16}$`)

// bookingID reads and checks the {id} path value, answering 400 if bad.
func bookingID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !bookingIDPattern.MatchString(id) {
		writeError(w, http.StatusBadRequest, "bad_booking_id", fmt.Sprintf("id: %q is not a booking ID (16 lowercase hex digits)", id))
		return "", false
	}
	return id, true
}

func (rp *replica) handleGet(w http.ResponseWriter, r *http.Request) {
	id, ok := bookingID(w, r)
	if !ok {
		return
	}
	rec, err := rp.svc.store.get(id, rp.svc.clock.Now())
	rp.answerBooking(w, id, rec, err)
}

func (rp *replica) handlePay(w http.ResponseWriter, r *http.Request) {
	id, ok := bookingID(w, r)
	if !ok {
		return
	}
	rec, err := rp.svc.store.pay(id, rp.svc.clock.Now())
	switch {
	case err == nil:
		rp.svc.gen.Add(1)
		rp.metrics.outcome(outcomeConfirmed)
	case errors.Is(err, errExpired):
		rp.svc.gen.Add(1)
		rp.metrics.outcome(outcomeExpired)
	}
	rp.answerBooking(w, id, rec, err)
}

func (rp *replica) handleCancel(w http.ResponseWriter, r *http.Request) {
	id, ok := bookingID(w, r)
	if !ok {
		return
	}
	rec, err := rp.svc.store.cancel(id, rp.svc.clock.Now())
	switch {
	case err == nil:
		rp.svc.gen.Add(1)
		rp.metrics.outcome(outcomeCancelled)
	case errors.Is(err, errExpired):
		rp.svc.gen.Add(1)
		rp.metrics.outcome(outcomeExpired)
	}
	rp.answerBooking(w, id, rec, err)
}

func (rp *replica) answerBooking(w http.ResponseWriter, id string, rec record, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, rp.svc.view(rec))
	case errors.Is(err, errUnknownBooking):
		writeError(w, http.StatusNotFound, "unknown_booking", fmt.Sprintf("id: no booking %q", id))
	case errors.Is(err, errExpired):
		writeError(w, http.StatusConflict, "expired", fmt.Sprintf("id: booking %s expired: its payment window has passed", id))
	case errors.Is(err, errCancelled):
		writeError(w, http.StatusConflict, "cancelled", fmt.Sprintf("id: booking %s is cancelled", id))
	case errors.Is(err, refsvc.ErrNotDurable):
		rp.svc.gen.Add(1)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "not_durable",
			fmt.Sprintf("id: the change to booking %s is not confirmed yet (%v); retry", id, err))
	default:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}

// queueBody answers GET /api/v1/queue/{ticket}.
type queueBody struct {
	Position    int    `json:"position"`
	Ready       bool   `json:"ready"`
	Pass        string `json:"pass,omitempty"`
	PollAfterMS int64  `json:"poll_after_ms"`
}

var ticketPattern = regexp.MustCompile(`^[0-9a-f]{16}$`)

func (rp *replica) handleQueue(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("ticket")
	if !ticketPattern.MatchString(t) {
		writeError(w, http.StatusBadRequest, "bad_ticket", fmt.Sprintf("ticket: %q is not a queue ticket (16 lowercase hex digits)", t))
		return
	}
	pos, pass, ok := rp.svc.room.poll(t, time.Now())
	if !ok {
		writeError(w, http.StatusNotFound, "unknown_ticket", fmt.Sprintf("ticket: %q is unknown or expired (unpolled for over %s)", t, rp.svc.cfg.WaitingRoom.TicketTTL))
		return
	}
	writeJSON(w, http.StatusOK, queueBody{Position: pos, Ready: pass != "", Pass: pass,
		PollAfterMS: rp.svc.cfg.WaitingRoom.PollAfter.Milliseconds()})
}
