package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// target is a test server that counts what it sees and answers with
// handle. It tracks the requests in flight at once.
type target struct {
	*httptest.Server
	mu          sync.Mutex
	requests    []seen
	inflight    int
	maxInflight int
}

type seen struct {
	at     time.Time
	method string
	path   string
	client string
	key    string // Idempotency-Key
	pass   string // X-Queue-Pass
}

func newTarget(tb testing.TB, handle func(w http.ResponseWriter, r *http.Request)) *target {
	tb.Helper()
	tg := &target{}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.mu.Lock()
		tg.requests = append(tg.requests, seen{at: time.Now(), method: r.Method, path: r.URL.Path,
			client: r.Header.Get("X-Client-ID"), key: r.Header.Get("Idempotency-Key"), pass: r.Header.Get("X-Queue-Pass")})
		tg.inflight++
		tg.maxInflight = max(tg.maxInflight, tg.inflight)
		tg.mu.Unlock()
		defer func() {
			tg.mu.Lock()
			tg.inflight--
			tg.mu.Unlock()
		}()
		handle(w, r)
	}))
	tb.Cleanup(tg.Close)
	return tg
}

func (tg *target) seen() []seen {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return append([]seen(nil), tg.requests...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// testConfig is a short steady run at real time against url.
func testConfig(target, url string, rate float64, d time.Duration) Config {
	cfg := Config{Scenario: ScenarioSteady, SteadyTarget: target, Rate: rate, Duration: d, Seed: 7}
	if target == TargetBooking {
		cfg.Targets.Booking = url
	} else {
		cfg.Targets.Healthcode = url
	}
	cfg.SetDefaults()
	return cfg
}

func run(tb testing.TB, cfg Config) (*Report, time.Duration) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	rep, err := Run(ctx, cfg, nil, prometheus.NewRegistry())
	if err != nil {
		tb.Fatalf("Run: %v", err)
	}
	if rep.Interrupted {
		tb.Fatal("run was interrupted by the test deadline")
	}
	return rep, time.Since(start)
}

// TestOpenLoopSlowTarget: a target that takes 300 ms per request does not
// slow the offered load. At 200 arrivals/s for 2 s the arrival count is
// Poisson with mean 400 and sd 20; we allow 4 sd (a false alarm once in
// ~15000 seeds, and the seed is fixed). Each full wall second is Poisson
// with mean 200, sd 14, and gets 4 sd as well. A closed-loop generator
// would be limited by the server's latency and could not meet it, and the
// server must see about rate x latency = 60 requests at once.
func TestOpenLoopSlowTarget(t *testing.T) {
	tg := newTarget(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(300 * time.Millisecond):
		case <-r.Context().Done():
		}
		writeJSON(w, http.StatusOK, map[string]string{"colour": "green"})
	})
	cfg := testConfig(TargetHealthcode, tg.URL, 200, 2*time.Second)
	rep, elapsed := run(t, cfg)

	tot := rep.Totals
	arrivals := tot.Offered.Fresh + tot.Failed[ReasonDropped]
	if math.Abs(float64(arrivals)-400) > 4*20 {
		t.Errorf("%d arrivals in 2 s at 200/s, want 400 ± 80", arrivals)
	}
	if tot.Failed[ReasonDropped] != 0 {
		t.Errorf("%d arrivals dropped with a bound of %d", tot.Failed[ReasonDropped], cfg.MaxOutstanding)
	}
	for i := range 2 {
		if f := rep.Seconds[i].Offered.Fresh; math.Abs(float64(f)-200) > 4*math.Sqrt(200) {
			t.Errorf("second %d offered %d fresh, want 200 ± 57", i, f)
		}
	}
	if got := int64(len(tg.seen())); got != tot.Offered.Total {
		t.Errorf("server saw %d requests, report says %d offered", got, tot.Offered.Total)
	}
	if tot.Succeeded != tot.Offered.Total || tot.Abandoned != 0 {
		t.Errorf("succeeded %d, abandoned %d of %d", tot.Succeeded, tot.Abandoned, tot.Offered.Total)
	}
	if tg.maxInflight < 30 {
		t.Errorf("at most %d requests in flight at the server, want about 60 (open loop)", tg.maxInflight)
	}
	if p50 := tot.Latency.P50; p50 < 0.29 || p50 > 0.6 {
		t.Errorf("p50 latency %v, want about 0.3 s", p50)
	}
	// 300 ms is within the 500 ms SLO: no second violates it.
	if tot.ViolationSeconds != 0 {
		t.Errorf("%d violation seconds, want 0 (300 ms < 500 ms)", tot.ViolationSeconds)
	}
	if elapsed > 4*time.Second {
		t.Errorf("run took %v, want about 2.3 s", elapsed)
	}
}

// TestClientRetriesAndRefreshes counts the requests a failing target sees
// per arrival: each arrival's request is sent 1+retries times per attempt,
// and there are 1+refreshes attempts.
func TestClientRetriesAndRefreshes(t *testing.T) {
	tests := []struct {
		name         string
		status       int
		retries      int
		refreshProb  float64
		maxRefreshes int
		wantRetry    int64 // per arrival
		wantRefresh  int64 // per arrival
	}{
		{"no retry, no refresh", 503, 0, 0, 3, 0, 0},
		{"retry storm of 3", 503, 3, 0, 3, 3, 0},
		{"refresh twice", 500, 0, 1, 2, 0, 2},
		{"retries within refreshes", 429, 2, 1, 2, 6, 2},
		{"success is not retried", 200, 3, 1, 3, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := newTarget(t, func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, tt.status, map[string]string{"reason": "test"})
			})
			cfg := testConfig(TargetHealthcode, tg.URL, 50, 400*time.Millisecond)
			cfg.Clients.Retries = tt.retries
			cfg.Clients.RefreshProbability = tt.refreshProb
			cfg.Clients.MaxRefreshes = tt.maxRefreshes
			cfg.Clients.RefreshThink = 10 * time.Millisecond
			rep, _ := run(t, cfg)
			o := rep.Totals.Offered
			if o.Fresh < 5 {
				t.Fatalf("only %d arrivals", o.Fresh)
			}
			perArrival := 1 + tt.wantRetry + tt.wantRefresh
			if got := int64(len(tg.seen())); got != o.Fresh*perArrival {
				t.Errorf("server saw %d requests for %d arrivals, want %d each", got, o.Fresh, perArrival)
			}
			if o.Retry != o.Fresh*tt.wantRetry || o.Refresh != o.Fresh*tt.wantRefresh {
				t.Errorf("offered %+v, want %d retries and %d refreshes per arrival", o, tt.wantRetry, tt.wantRefresh)
			}
			if o.Total != o.Fresh+o.Retry+o.Refresh {
				t.Errorf("offered total %d != fresh+retry+refresh", o.Total)
			}
			if tt.status >= 400 && rep.Totals.Failed[reasonOf(tt.status)] != o.Total {
				t.Errorf("failed %v, want all %d as %s", rep.Totals.Failed, o.Total, reasonOf(tt.status))
			}
		})
	}
}

func reasonOf(status int) string { return classify(status) }

// TestRetryAfter: a 429 with Retry-After: 1 delays the retry by a second
// unless the clients ignore it.
func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name           string
		ignore         bool
		minGap, maxGap time.Duration
	}{
		{"honoured", false, 950 * time.Millisecond, 1500 * time.Millisecond},
		{"ignored", true, 0, 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := newTarget(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "1")
				writeJSON(w, http.StatusTooManyRequests, map[string]string{"reason": "rate_limited"})
			})
			cfg := testConfig(TargetHealthcode, tg.URL, 20, 300*time.Millisecond)
			cfg.Clients.Retries = 1
			cfg.Clients.IgnoreRetryAfter = tt.ignore
			rep, _ := run(t, cfg)
			byClient := map[string][]time.Time{}
			for _, s := range tg.seen() {
				byClient[s.client] = append(byClient[s.client], s.at)
			}
			if int64(len(byClient)) != rep.Totals.Offered.Fresh || len(byClient) == 0 {
				t.Fatalf("%d clients seen, %d arrivals", len(byClient), rep.Totals.Offered.Fresh)
			}
			for c, ts := range byClient {
				if len(ts) != 2 {
					t.Fatalf("client %s sent %d requests, want 2", c, len(ts))
				}
				if gap := ts[1].Sub(ts[0]); gap < tt.minGap || gap > tt.maxGap {
					t.Errorf("client %s retried after %v, want in [%v, %v]", c, gap, tt.minGap, tt.maxGap)
				}
			}
		})
	}
}

// bookingServer emulates the booking contract for one client flow: slots
// to list, holds (201, or 202 and the waiting room), queue polls ready on
// the readyAfter-th poll, payments.
type bookingServer struct {
	queue      bool
	pollMS     int
	readyAfter int

	mu      sync.Mutex
	tickets int
	polls   map[string]int
	pollAt  map[string][]time.Time
}

func (b *bookingServer) handle(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/slots":
		if r.URL.Query().Get("consulate") == "" || r.URL.Query().Get("visa_type") == "" {
			writeJSON(w, 400, map[string]string{"reason": "missing"})
			return
		}
		writeJSON(w, 200, map[string]any{"available": 3, "slots": []map[string]string{
			{"id": "beijing/tourist/2026-11-21/0930-01"}, {"id": "beijing/tourist/2026-11-21/0930-02"}, {"id": "beijing/tourist/2026-11-21/0930-03"}}})
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/bookings":
		var body struct {
			SlotID      string `json:"slot_id"`
			ApplicantID string `json:"applicant_id"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.SlotID == "" || body.ApplicantID == "" || r.Header.Get("Idempotency-Key") == "" {
			writeJSON(w, 400, map[string]string{"reason": "bad_body"})
			return
		}
		if pass := r.Header.Get("X-Queue-Pass"); pass != "" {
			writeJSON(w, 201, map[string]string{"booking_id": "b-" + strings.TrimPrefix(pass, "pass-"), "status": "held"})
			return
		}
		if !b.queue {
			writeJSON(w, 201, map[string]string{"booking_id": "b-" + r.Header.Get("Idempotency-Key"), "status": "held"})
			return
		}
		b.mu.Lock()
		b.tickets++
		ticket := fmt.Sprintf("t%d", b.tickets)
		b.mu.Unlock()
		writeJSON(w, 202, map[string]any{"queue_ticket": ticket, "position": 3, "poll_after_ms": b.pollMS})
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/v1/queue/"):
		ticket := strings.TrimPrefix(r.URL.Path, "/api/v1/queue/")
		b.mu.Lock()
		b.polls[ticket]++
		b.pollAt[ticket] = append(b.pollAt[ticket], time.Now())
		n := b.polls[ticket]
		b.mu.Unlock()
		if n >= b.readyAfter {
			writeJSON(w, 200, map[string]any{"position": 0, "ready": true, "pass": "pass-" + ticket})
			return
		}
		writeJSON(w, 200, map[string]any{"position": b.readyAfter - n, "ready": false})
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/api/v1/bookings/") && strings.HasSuffix(r.URL.Path, "/pay"):
		writeJSON(w, 200, map[string]string{"status": "confirmed"})
	default:
		writeJSON(w, 404, map[string]string{"reason": "not_found"})
	}
}

func TestDoubleClick(t *testing.T) {
	bs := &bookingServer{}
	tg := newTarget(t, bs.handle)
	cfg := testConfig(TargetBooking, tg.URL, 40, 500*time.Millisecond)
	cfg.Booking.BookFraction = 1
	cfg.Booking.PayProbability = 0
	cfg.Clients.DoubleClickProbability = 1
	rep, _ := run(t, cfg)

	keys := map[string]int{}
	lists := 0
	for _, s := range tg.seen() {
		switch {
		case s.method == http.MethodPost && s.path == "/api/v1/bookings":
			keys[s.key]++
		case s.path == "/api/v1/slots":
			lists++
		default:
			t.Errorf("unexpected request %s %s", s.method, s.path)
		}
	}
	o := rep.Totals.Offered
	if o.Fresh < 5 || int64(lists) != o.Fresh || int64(len(keys)) != o.Fresh {
		t.Fatalf("%d arrivals, %d slot lists, %d distinct keys", o.Fresh, lists, len(keys))
	}
	for k, n := range keys {
		if n != 2 {
			t.Errorf("Idempotency-Key %s sent %d times, want 2", k, n)
		}
	}
	if o.DoubleClick != o.Fresh || o.FollowUp != o.Fresh {
		t.Errorf("offered %+v: want one booking and one double click per arrival", o)
	}
	if rep.Totals.ByOp[OpBook].Sent != 2*o.Fresh {
		t.Errorf("by op book: %+v", rep.Totals.ByOp[OpBook])
	}
}

func TestWaitingRoomPolling(t *testing.T) {
	bs := &bookingServer{queue: true, pollMS: 30, readyAfter: 3, polls: map[string]int{}, pollAt: map[string][]time.Time{}}
	tg := newTarget(t, bs.handle)
	cfg := testConfig(TargetBooking, tg.URL, 30, 500*time.Millisecond)
	cfg.Booking.BookFraction = 1
	cfg.Booking.PayProbability = 1
	rep, _ := run(t, cfg)

	bs.mu.Lock()
	defer bs.mu.Unlock()
	var withPass, pays int
	for _, s := range tg.seen() {
		switch {
		case s.method == http.MethodPost && s.path == "/api/v1/bookings" && s.pass != "":
			withPass++
			if bs.polls[strings.TrimPrefix(s.pass, "pass-")] != 3 {
				t.Errorf("booked with %s before the ticket was ready", s.pass)
			}
		case strings.HasSuffix(s.path, "/pay"):
			pays++
			if !strings.HasPrefix(s.path, "/api/v1/bookings/b-t") {
				t.Errorf("paid %s, not the booking the pass gave", s.path)
			}
		}
	}
	o := rep.Totals.Offered
	if o.Fresh < 5 || int64(bs.tickets) != o.Fresh {
		t.Fatalf("%d arrivals, %d tickets", o.Fresh, bs.tickets)
	}
	for ticket, n := range bs.polls {
		if n != 3 {
			t.Errorf("ticket %s polled %d times, want 3 (ready on the third)", ticket, n)
		}
		at := bs.pollAt[ticket]
		for i := 1; i < len(at); i++ {
			if gap := at[i].Sub(at[i-1]); gap < 25*time.Millisecond {
				t.Errorf("ticket %s polled again after %v, want poll_after_ms (30 ms)", ticket, gap)
			}
		}
	}
	if int64(withPass) != o.Fresh || int64(pays) != o.Fresh {
		t.Errorf("%d bookings with a pass, %d payments, for %d arrivals", withPass, pays, o.Fresh)
	}
	// Per arrival: list (fresh), book, book with pass, pay (follow-ups), 3 polls.
	if o.Poll != 3*o.Fresh || o.FollowUp != 3*o.Fresh || o.Total != 7*o.Fresh {
		t.Errorf("offered %+v, want 3 polls and 3 follow-ups per arrival", o)
	}
}

// TestBoundedOutstanding: against a server that never answers, at most
// MaxOutstanding sessions are in progress; the other arrivals are counted
// as dropped_by_generator, and the run stops on time whether the hanging
// requests time out within the drain or are abandoned at its end.
func TestBoundedOutstanding(t *testing.T) {
	tests := []struct {
		name          string
		timeout       time.Duration
		drain         time.Duration
		wantAbandoned bool
		maxElapsed    time.Duration
	}{
		{"requests time out within the drain", 300 * time.Millisecond, time.Second, false, 2500 * time.Millisecond},
		{"drain ends before the timeout", 10 * time.Second, 200 * time.Millisecond, true, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			tg := newTarget(t, func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-release:
				}
			})
			t.Cleanup(func() { close(release) }) // runs before tg.Close
			cfg := testConfig(TargetHealthcode, tg.URL, 100, time.Second)
			cfg.MaxOutstanding = 5
			cfg.Timeout = tt.timeout
			cfg.Drain = tt.drain
			reg := prometheus.NewRegistry()
			start := time.Now()
			rep, err := Run(context.Background(), cfg, nil, reg)
			elapsed := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			tot := rep.Totals
			dropped := tot.Failed[ReasonDropped]
			if arrivals := tot.Offered.Fresh + dropped; math.Abs(float64(arrivals)-100) > 40 {
				t.Errorf("%d arrivals, want about 100", arrivals)
			}
			if dropped < 50 {
				t.Errorf("%d dropped, want most of the ~100 arrivals", dropped)
			}
			if got := testutil.ToFloat64(mustCounter(t, reg, "loadgen_arrivals_dropped_total")); got != float64(dropped) {
				t.Errorf("metric says %v dropped, report %d", got, dropped)
			}
			tg.mu.Lock()
			maxIn := tg.maxInflight
			tg.mu.Unlock()
			// The server notices a timed-out request's cancellation a little
			// after the client has moved on, so its count can exceed the
			// bound momentarily; the generator's own peak cannot.
			if tot.PeakOutstanding != 5 {
				t.Errorf("peak outstanding sessions %d, want the bound 5", tot.PeakOutstanding)
			}
			if tt.wantAbandoned && maxIn != 5 {
				t.Errorf("%d requests in flight at the server, want the bound 5", maxIn)
			}
			if tt.wantAbandoned {
				if tot.Abandoned != 5 || tot.Offered.Fresh != 5 || tot.Completed != 0 {
					t.Errorf("abandoned %d, fresh %d, completed %d; want 5, 5, 0", tot.Abandoned, tot.Offered.Fresh, tot.Completed)
				}
			} else if tot.Failed[ReasonTimeout] != tot.Offered.Fresh || tot.Abandoned != 0 {
				t.Errorf("%d timeouts, %d abandoned, of %d sent", tot.Failed[ReasonTimeout], tot.Abandoned, tot.Offered.Fresh)
			}
			if elapsed > tt.maxElapsed {
				t.Errorf("run took %v, want at most %v", elapsed, tt.maxElapsed)
			}
		})
	}
}

func mustCounter(tb testing.TB, reg *prometheus.Registry, name string) prometheus.Collector {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: name},
				func() float64 { return mf.GetMetric()[0].GetCounter().GetValue() })
		}
	}
	tb.Fatalf("no metric %s", name)
	return nil
}

// TestVisaReleaseEndToEnd runs simulated 07:59-08:01 at 120x (one wall
// second): clients refresh the slot list throughout, bookings start only
// at the 08:00 release.
func TestVisaReleaseEndToEnd(t *testing.T) {
	bs := &bookingServer{}
	tg := newTarget(t, bs.handle)
	cfg := Config{Scenario: ScenarioVisaRelease, Targets: Targets{Booking: tg.URL}, Rate: 100, Seed: 3,
		Window: Window{From: hm(7, 59), To: hm(8, 1)}}
	cfg.Clock.Speedup = 120
	cfg.SetDefaults()
	rep, _ := run(t, cfg)
	release := rep.Start.Add(500 * time.Millisecond) // 08:00 is half-way
	var slotsBefore, slotsAfter, books, booksEarly, pays int
	for _, s := range tg.seen() {
		switch {
		case s.path == "/api/v1/slots" && s.at.Before(release):
			slotsBefore++
		case s.path == "/api/v1/slots":
			slotsAfter++
		case s.path == "/api/v1/bookings":
			books++
			if s.at.Before(release.Add(-20 * time.Millisecond)) {
				booksEarly++
			}
		case strings.HasSuffix(s.path, "/pay"):
			pays++
		}
	}
	// Expected: ~0.5 s of ~40-80/s refreshes before, ~0.5 s of refreshes
	// plus ~50/s booking sessions (each listing slots first) after.
	if slotsBefore < 10 || slotsAfter <= slotsBefore || books < 10 || booksEarly != 0 {
		t.Errorf("slots before/after release %d/%d, bookings %d (%d before the release)", slotsBefore, slotsAfter, books, booksEarly)
	}
	if pays == 0 || pays >= books {
		t.Errorf("%d payments for %d bookings, want a fraction (0.7)", pays, books)
	}
	if rep.Totals.ByOp[OpBook].Sent != int64(books) || rep.Totals.ByOp[OpPay].Sent != int64(pays) {
		t.Errorf("by op %+v", rep.Totals.ByOp)
	}
}
