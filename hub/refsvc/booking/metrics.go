package booking

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of booking requests (booking_bookings_total's outcome label).
// Each booking POST ends in exactly one of the first group; pay and cancel
// add the second.
const (
	outcomeSuccess     = "success"           // 201, a new hold
	outcomeReplay      = "replay"            // 200, same key and body again
	outcomeNoSlot      = "no_slot"           // 409 slot_taken
	outcomeNotReleased = "not_released"      // 409 not_released
	outcomeSlotPast    = "slot_past"         // 409 slot_past
	outcomeUnknownSlot = "unknown_slot"      // 404
	outcomeInvalid     = "invalid"           // 400 bad key, body or slot ID
	outcomeKeyReused   = "key_reused"        // 422
	outcomeRateLimited = "rate_limited"      // 429
	outcomeQueued      = "queued"            // 202, a waiting-room ticket
	outcomeRoomFull    = "waiting_room_full" // 503
	outcomeError       = "error"             // 500

	outcomeConfirmed = "confirmed" // pay: 200
	outcomeExpired   = "expired"   // pay or cancel: 409, the hold had expired
	outcomeCancelled = "cancelled" // cancel: 200
)

// isAttempt says which outcomes count in booking_attempts_total: real
// attempts to get a slot. Client errors, replays and queueing (the
// pass-holder's retry is the attempt) do not.
func isAttempt(outcome string) bool {
	switch outcome {
	case outcomeSuccess, outcomeNoSlot, outcomeNotReleased, outcomeSlotPast,
		outcomeRateLimited, outcomeRoomFull, outcomeError:
		return true
	}
	return false
}

// latencyBuckets are the buckets all reference services share.
var latencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// endpoints label the request metrics.
var endpoints = []string{"consulates", "slots", "book", "pay", "cancel", "get_booking", "queue", "other"}

// replicaMetrics are one replica's metrics. Counters and histograms count
// this replica's requests (sum them across replicas). The gauges read the
// state all replicas share and so report identical values from every
// replica: aggregate them with max, e.g.
// max by (consulate, visa_type) (booking_slots_available).
type replicaMetrics struct {
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	bookings       *prometheus.CounterVec
	attempts       prometheus.Counter
	successes      prometheus.Counter
	roomWait       prometheus.Histogram
	roomRefused    prometheus.Counter
	cacheHits      prometheus.Counter
	cacheMisses    prometheus.Counter
	evictions      prometheus.Counter
	rateLimitedTot *prometheus.CounterVec
}

func (m *replicaMetrics) outcome(o string) {
	m.bookings.WithLabelValues(o).Inc()
	if isAttempt(o) {
		m.attempts.Inc()
	}
	if o == outcomeSuccess {
		m.successes.Inc()
	}
}

// newReplicaMetrics builds and registers rp's metrics with reg.
func newReplicaMetrics(rp *replica, reg prometheus.Registerer) (*replicaMetrics, error) {
	m := &replicaMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "booking_requests_total", Help: "API requests answered by this replica, by endpoint and HTTP status code."},
			[]string{"endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "booking_request_duration_seconds", Help: "API request latency on this replica, by endpoint (capacity queueing included).",
			Buckets: latencyBuckets}, []string{"endpoint"}),
		bookings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "booking_bookings_total", Help: "Booking requests on this replica by outcome (POST /api/v1/bookings; pay and cancel add confirmed, cancelled, expired)."},
			[]string{"outcome"}),
		attempts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "booking_attempts_total", Help: "Booking attempts on this replica: the success ratio's denominator (excludes client errors, replays and waiting-room tickets)."}),
		successes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "booking_successes_total", Help: "Bookings that got a slot on this replica: the success ratio's numerator."}),
		roomWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "booking_waiting_room_wait_seconds", Help: "Time from a waiting-room ticket to its pass being redeemed on this replica.",
			Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}}),
		roomRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "booking_waiting_room_refused_total", Help: "Booking attempts this replica refused because the waiting room was full."}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "booking_slots_cache_hits_total", Help: "Slot queries this replica answered from its cache."}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "booking_slots_cache_misses_total", Help: "Slot queries that had to read the store (cache empty or invalidated)."}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "booking_rate_limit_client_evictions_total", Help: "Per-client token buckets this replica evicted to bound its client map."}),
		rateLimitedTot: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "booking_rate_limited_total", Help: "Requests this replica refused with 429, by endpoint."}, []string{"endpoint"}),
	}
	for _, o := range []string{outcomeSuccess, outcomeReplay, outcomeNoSlot, outcomeNotReleased, outcomeSlotPast,
		outcomeUnknownSlot, outcomeInvalid, outcomeKeyReused, outcomeRateLimited, outcomeQueued, outcomeRoomFull,
		outcomeError, outcomeConfirmed, outcomeExpired, outcomeCancelled} {
		m.bookings.WithLabelValues(o)
	}
	for _, e := range endpoints {
		m.duration.WithLabelValues(e)
	}
	cs := []prometheus.Collector{m.requests, m.duration, m.bookings, m.attempts, m.successes, m.roomWait,
		m.roomRefused, m.cacheHits, m.cacheMisses, m.evictions, m.rateLimitedTot}

	svc := rp.svc
	for _, co := range svc.cat.consulates {
		for _, vt := range co.visas {
			cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name:        "booking_slots_available",
				Help:        "Released, unbooked future slots (service-wide; every replica reports the same value, aggregate with max).",
				ConstLabels: prometheus.Labels{"consulate": co.name, "visa_type": vt.name},
			}, func() float64 {
				slots, err := rp.availableSlots(co, vt)
				if err != nil {
					return -1
				}
				return float64(len(slots))
			}))
		}
	}
	cs = append(cs,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "booking_waiting_room_depth", Help: "Tickets waiting in the waiting room (service-wide; same on every replica, aggregate with max)."},
			func() float64 { n, _ := svc.room.stats(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "booking_in_progress", Help: "Booking attempts in progress (service-wide; same on every replica, aggregate with max)."},
			func() float64 { _, n := svc.room.stats(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "booking_waiting_room_expired_tickets_total", Help: "Tickets and passes dropped unused (service-wide since start; same on every replica, aggregate with max)."},
			func() float64 { return float64(svc.room.expiredTickets.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "booking_rate_limit_clients", Help: "Per-client token buckets this replica keeps."},
			func() float64 { return float64(rp.limiter.size()) }),
	)
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register booking metrics: %w", err)
		}
	}
	return m, nil
}
