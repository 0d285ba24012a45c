package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/bureauhub/bureauhub/hub/refsvc/healthcode"
)

// maxBody bounds how much of an answer is read; the services' answers are
// far smaller.
const maxBody = 1 << 20

// clients holds what every simulated client shares.
type clients struct {
	cfg   *Config
	http  *http.Client
	rec   *recorder
	toSim func(time.Time) time.Time
	// ctx ends when the drain is over (or the caller cancels): no request
	// is sent after that and those outstanding are abandoned.
	ctx context.Context
}

// session is one simulated client working through one arrival. Its random
// choices come from its own generator, seeded by the arrival process, so
// they do not depend on the order goroutines run in.
type session struct {
	c   *clients
	rng *rand.Rand
	id  string
}

// call is one HTTP request a session makes.
type call struct {
	op     string
	method string
	url    string
	body   []byte
	header http.Header
}

// answer is how a call ended.
type answer struct {
	status     int
	body       []byte
	retryAfter time.Duration
	failed     bool // timeout, connection error, 429 or 5xx
	abandoned  bool // the run ended first
}

// run performs the session that starts with op.
func (s *session) run(op string) {
	switch op {
	case OpScan:
		s.scan()
	case OpResult:
		s.result()
	case OpSlots:
		s.listSlots(kindFresh)
	case OpBook:
		s.book()
	}
}

func (s *session) scan() {
	id := healthcode.PersonID(s.rng.IntN(s.c.cfg.Healthcode.Population))
	s.do(call{op: OpScan, method: http.MethodGet, url: s.c.cfg.Targets.Healthcode + "/api/v1/codes/" + id}, kindFresh)
}

func (s *session) result() {
	res := "negative"
	if s.rng.Float64() < s.c.cfg.Healthcode.PositiveFraction {
		res = "positive"
	}
	body, _ := json.Marshal(map[string]string{
		"id":     healthcode.PersonID(s.rng.IntN(s.c.cfg.Healthcode.Population)),
		"time":   s.c.toSim(time.Now()).UTC().Format(time.RFC3339),
		"result": res,
	})
	s.do(call{op: OpResult, method: http.MethodPost, url: s.c.cfg.Targets.Healthcode + "/api/v1/results", body: body}, kindFresh)
}

func (s *session) listSlots(k kind) (answer, bool) {
	b := s.c.cfg.Booking
	q := url.Values{
		"consulate": {b.Consulates[s.rng.IntN(len(b.Consulates))]},
		"visa_type": {b.VisaTypes[s.rng.IntN(len(b.VisaTypes))]},
	}
	return s.do(call{op: OpSlots, method: http.MethodGet, url: s.c.cfg.Targets.Booking + "/api/v1/slots?" + q.Encode()}, k)
}

// book is a client trying to get an appointment: list the slots, hold one
// (maybe double-clicking), wait in the waiting room if told to, and maybe
// pay.
func (s *session) book() {
	a, ok := s.listSlots(kindFresh)
	if !ok || a.status != http.StatusOK {
		return
	}
	var list struct {
		Slots []struct {
			ID string `json:"id"`
		} `json:"slots"`
	}
	if json.Unmarshal(a.body, &list) != nil || len(list.Slots) == 0 {
		return
	}
	slot := list.Slots[s.rng.IntN(len(list.Slots))].ID
	body, _ := json.Marshal(map[string]string{"slot_id": slot, "applicant_id": fmt.Sprintf("A%012d", s.rng.Int64N(1e12))})
	key := fmt.Sprintf("%016x%016x", s.rng.Uint64(), s.rng.Uint64())
	base := s.c.cfg.Targets.Booking

	a, ok = s.hold(base, key, body, "", s.rng.Float64() < s.c.cfg.Clients.DoubleClickProbability)
	if ok && a.status == http.StatusAccepted {
		a, ok = s.waitingRoom(base, key, body, a)
	}
	if !ok || (a.status != http.StatusOK && a.status != http.StatusCreated) {
		return
	}
	var held struct {
		BookingID string `json:"booking_id"`
	}
	if json.Unmarshal(a.body, &held) != nil || held.BookingID == "" {
		return
	}
	if s.rng.Float64() < s.c.cfg.Booking.PayProbability {
		s.do(call{op: OpPay, method: http.MethodPost, url: base + "/api/v1/bookings/" + url.PathEscape(held.BookingID) + "/pay"}, kindFollowUp)
	}
}

// hold sends POST /api/v1/bookings; with doubleClick a second copy with the
// same Idempotency-Key goes out at the same moment (the session waits for
// both and goes on with the first one's answer).
func (s *session) hold(base, key string, body []byte, pass string, doubleClick bool) (answer, bool) {
	h := http.Header{"Idempotency-Key": {key}, "Content-Type": {"application/json"}}
	if pass != "" {
		h.Set("X-Queue-Pass", pass)
	}
	c := call{op: OpBook, method: http.MethodPost, url: base + "/api/v1/bookings", body: body, header: h}
	if !doubleClick {
		return s.do(c, kindFollowUp)
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.send(c, kindDoubleClick) })
	a, ok := s.do(c, kindFollowUp)
	wg.Wait()
	return a, ok
}

// waitingRoom polls the queue ticket of a 202 every poll_after_ms until it
// is ready, then books with the pass.
func (s *session) waitingRoom(base, key string, body []byte, accepted answer) (answer, bool) {
	var q struct {
		Ticket      string `json:"queue_ticket"`
		PollAfterMS int64  `json:"poll_after_ms"`
	}
	if json.Unmarshal(accepted.body, &q) != nil || q.Ticket == "" {
		return accepted, false
	}
	every := time.Duration(q.PollAfterMS) * time.Millisecond
	every = min(max(every, 10*time.Millisecond), 10*time.Second)
	if q.PollAfterMS == 0 {
		every = 500 * time.Millisecond
	}
	for range s.c.cfg.Clients.MaxPolls {
		if !s.sleep(every) {
			return answer{abandoned: true}, false
		}
		a, ok := s.do(call{op: OpPoll, method: http.MethodGet, url: base + "/api/v1/queue/" + url.PathEscape(q.Ticket)}, kindPoll)
		if !ok || a.status != http.StatusOK {
			return a, false // an unknown or expired ticket: the client gives up
		}
		var st struct {
			Ready bool   `json:"ready"`
			Pass  string `json:"pass"`
		}
		if json.Unmarshal(a.body, &st) != nil {
			return a, false
		}
		if st.Ready {
			return s.hold(base, key, body, st.Pass, false)
		}
	}
	return accepted, false
}

// do sends c with the clients' retry and refresh behaviour: a failure is
// re-sent at once up to Retries times; if it still fails, the client
// refreshes with RefreshProbability after a think time, up to MaxRefreshes
// times (each refresh gets its own retries). Retry-After on 429/503 is
// waited for unless IgnoreRetryAfter. ok is false if the last answer
// failed or the run ended.
func (s *session) do(c call, k kind) (answer, bool) {
	cl := s.c.cfg.Clients
	for refresh := 0; ; refresh++ {
		a := s.sendWithRetries(c, k)
		if a.abandoned {
			return a, false
		}
		if !a.failed {
			return a, true
		}
		if refresh >= cl.MaxRefreshes || !(s.rng.Float64() < cl.RefreshProbability) {
			return a, false
		}
		think := time.Duration((0.5 + s.rng.Float64()) * float64(cl.RefreshThink))
		if !cl.IgnoreRetryAfter {
			think = max(think, a.retryAfter)
		}
		if !s.sleep(think) {
			return answer{abandoned: true}, false
		}
		k = kindRefresh
	}
}

func (s *session) sendWithRetries(c call, k kind) answer {
	cl := s.c.cfg.Clients
	for i := 0; ; i++ {
		a := s.send(c, k)
		if a.abandoned || !a.failed || i >= cl.Retries {
			return a
		}
		if !cl.IgnoreRetryAfter && a.retryAfter > 0 && !s.sleep(a.retryAfter) {
			return answer{abandoned: true}
		}
		k = kindRetry
	}
}

// send makes one HTTP request and records it.
func (s *session) send(c call, k kind) answer {
	cfg := s.c.cfg
	if s.c.ctx.Err() != nil {
		return answer{abandoned: true}
	}
	ctx, cancel := context.WithTimeout(s.c.ctx, cfg.Timeout)
	defer cancel()
	var body io.Reader
	if c.body != nil {
		body = bytes.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, c.url, body)
	if err != nil {
		// The URLs are built from validated targets; this is a bug.
		panic(fmt.Sprintf("loadgen: build request: %v", err))
	}
	for name, v := range c.header {
		req.Header[name] = v
	}
	req.Header.Set("X-Client-ID", s.id)
	if c.body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}

	start := time.Now()
	s.c.rec.sent(start, c.op, k)
	var a answer
	resp, err := s.c.http.Do(req)
	if err == nil {
		a.status = resp.StatusCode
		a.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), cfg.Clients.MaxRetryAfter, start)
		a.body, err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
		resp.Body.Close()
	}
	end := time.Now()
	o := outcome{status: a.status, latency: end.Sub(start)}
	switch {
	case err != nil && s.c.ctx.Err() != nil:
		s.c.rec.abandon()
		return answer{abandoned: true}
	case err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		o.reason, o.status = ReasonTimeout, 0
	case err != nil:
		o.reason, o.status = ReasonConnError, 0
	default:
		o.reason = classify(a.status)
	}
	s.c.rec.done(end, c.op, o)
	a.failed = o.reason != ""
	return a
}

// sleep waits d unless the run ends first (then it returns false).
func (s *session) sleep(d time.Duration) bool {
	if d <= 0 {
		return s.c.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.c.ctx.Done():
		return false
	}
}

// parseRetryAfter reads delay-seconds or an HTTP date, capped at limit.
func parseRetryAfter(v string, limit time.Duration, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		d = time.Duration(n * float64(time.Second))
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), limit)
}
