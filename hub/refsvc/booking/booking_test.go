package booking

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"
)

func TestReleaseOnFirstStart(t *testing.T) {
	svc := startService(t, testConfig(t), testClock(1))
	rp := newReplica(t, svc, "r1")
	n, ids := slotIDs(t, rp.url, 1000)
	// 08:00 released 30% of 40 (12) for each of the 2 days ahead.
	if n != 24 || len(ids) != 24 {
		t.Fatalf("available = %d (%d listed), want 24", n, len(ids))
	}
	if got := testutil.ToFloat64(svc.slotsReleased); got != 24 {
		t.Errorf("booking_slots_released_total = %v, want 24", got)
	}
	// The 12 of a day spread over all 4 times: 3 each.
	perTime := map[string]int{}
	for _, id := range ids {
		perTime[strings.Split(id, "/")[3][:4]]++
	}
	for _, hhmm := range []string{"0900", "0930", "1000", "1030"} {
		if perTime[hhmm] != 6 {
			t.Errorf("slots at %s = %d, want 6 (3 a day)", hhmm, perTime[hhmm])
		}
	}
}

// TestNoDoubleBooking books 24 slots with 200 concurrent clients through 4
// replicas: every slot must be booked exactly once.
func TestNoDoubleBooking(t *testing.T) {
	svc := startService(t, testConfig(t), testClock(1))
	var reps []testReplica
	for i := range 4 {
		reps = append(reps, newReplica(t, svc, fmt.Sprintf("r%d", i)))
	}
	_, ids := slotIDs(t, reps[0].url, 1000)
	if len(ids) != 24 {
		t.Fatalf("%d slots available, want 24", len(ids))
	}

	const clients = 200
	var (
		mu       sync.Mutex
		codes    = map[int]int{}
		bookedBy = map[string][]string{}
		wg       sync.WaitGroup
	)
	for i := range clients {
		wg.Go(func() {
			slot := ids[i%len(ids)]
			r := book(t, reps[i%len(reps)].url, fmt.Sprintf("key-%d", i), slot, fmt.Sprintf("applicant-%d", i))
			mu.Lock()
			defer mu.Unlock()
			codes[r.code]++
			switch r.code {
			case http.StatusCreated:
				bookedBy[slot] = append(bookedBy[slot], r.str("booking_id"))
			case http.StatusConflict:
				if r.str("reason") != "slot_taken" {
					t.Errorf("409 reason %q, want slot_taken", r.str("reason"))
				}
			default:
				t.Errorf("booking answered %d %v", r.code, r.body)
			}
		})
	}
	wg.Wait()
	if codes[http.StatusCreated] != len(ids) || codes[http.StatusConflict] != clients-len(ids) {
		t.Errorf("answers %v, want %d×201 and %d×409", codes, len(ids), clients-len(ids))
	}
	for _, id := range ids {
		if len(bookedBy[id]) != 1 {
			t.Errorf("slot %s booked %d times: %v", id, len(bookedBy[id]), bookedBy[id])
		}
	}
	// The store agrees: 24 bookings, each slot held by one of them.
	err := svc.store.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketBookings).Stats().KeyN; n != len(ids) {
			t.Errorf("store has %d bookings, want %d", n, len(ids))
		}
		if n := tx.Bucket(bucketSlots).Stats().KeyN; n != len(ids) {
			t.Errorf("store has %d held slots, want %d", n, len(ids))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, rp := range reps {
		if n, _ := slotIDs(t, rp.url, 10); n != 0 {
			t.Errorf("replica %s still lists %d available slots (stale cache)", rp.id, n)
		}
	}
	var successes, attempts float64
	for _, rp := range reps {
		successes += testutil.ToFloat64(rp.metrics.successes)
		attempts += testutil.ToFloat64(rp.metrics.attempts)
	}
	if successes != 24 || attempts != clients {
		t.Errorf("successes/attempts = %v/%v, want 24/%d", successes, attempts, clients)
	}
}

// TestIdempotency sends one key 50 times at once through 3 replicas.
func TestIdempotency(t *testing.T) {
	svc := startService(t, testConfig(t), testClock(1))
	var reps []testReplica
	for i := range 3 {
		reps = append(reps, newReplica(t, svc, fmt.Sprintf("r%d", i)))
	}
	_, ids := slotIDs(t, reps[0].url, 2)

	const n = 50
	var (
		mu    sync.Mutex
		codes = map[int]int{}
		seen  = map[string]bool{}
		wg    sync.WaitGroup
	)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			r := book(t, reps[i%len(reps)].url, "double-click", ids[0], "alice")
			mu.Lock()
			defer mu.Unlock()
			codes[r.code]++
			seen[r.str("booking_id")] = true
		})
	}
	close(start)
	wg.Wait()
	if codes[http.StatusCreated] != 1 || codes[http.StatusOK] != n-1 {
		t.Errorf("answers %v, want 1×201 and %d×200", codes, n-1)
	}
	if len(seen) != 1 {
		t.Errorf("%d different booking IDs answered, want 1: %v", len(seen), seen)
	}

	tests := []struct {
		name, slot, applicant string
		code                  int
		reason                string
	}{
		{"same body again", ids[0], "alice", http.StatusOK, ""},
		{"other slot", ids[1], "alice", http.StatusUnprocessableEntity, "idempotency_key_reused"},
		{"other applicant", ids[0], "bob", http.StatusUnprocessableEntity, "idempotency_key_reused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := book(t, reps[0].url, "double-click", tt.slot, tt.applicant)
			if r.code != tt.code || r.str("reason") != tt.reason {
				t.Errorf("got %d %v, want %d reason %q", r.code, r.body, tt.code, tt.reason)
			}
		})
	}
	// The store's transaction alone (no HTTP fast path) creates one booking.
	slot, err := svc.cat.parseSlotID(ids[1])
	if err != nil {
		t.Fatal(err)
	}
	var (
		created atomic.Int64
		bookIDs sync.Map
	)
	start = make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			rec, isNew, err := svc.store.book("store-key", slot, "bob", svc.clock.Now(), time.Minute)
			if err != nil {
				t.Errorf("store book: %v", err)
			}
			if isNew {
				created.Add(1)
			}
			bookIDs.Store(rec.ID, true)
		})
	}
	close(start)
	wg.Wait()
	nIDs := 0
	bookIDs.Range(func(any, any) bool { nIDs++; return true })
	if created.Load() != 1 || nIDs != 1 {
		t.Errorf("store.book with one key created %d bookings, answered %d IDs; want 1 and 1", created.Load(), nIDs)
	}
	err = svc.store.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketBookings).Stats().KeyN; n != 2 {
			t.Errorf("store has %d bookings, want 2", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestHoldExpirySweep: an unpaid hold is ended by Run's sweep and its slot
// offered again; paying it then answers 409 expired.
func TestHoldExpirySweep(t *testing.T) {
	cfg := testConfig(t)
	cfg.SweepInterval = 10 * time.Millisecond
	cfg.PaymentWindow = 15 * time.Minute
	// 6000x: the 15-minute window lasts 150ms; the test's seconds stay
	// well before the next day's appointments.
	svc := startService(t, cfg, testClock(6000))
	rp := newReplica(t, svc, "r1")
	before, ids := slotIDs(t, rp.url, 1)
	r := book(t, rp.url, "k1", ids[0], "alice")
	if r.code != http.StatusCreated || r.str("status") != StatusHeld || r.str("expires_at") == "" {
		t.Fatalf("book: %d %v", r.code, r.body)
	}
	id := r.str("booking_id")
	if n, _ := slotIDs(t, rp.url, 1); n != before-1 {
		t.Fatalf("available after booking = %d, want %d", n, before-1)
	}
	waitFor(t, 5*time.Second, "the sweep to end the hold", func() bool {
		return testutil.ToFloat64(svc.holdsExpired) == 1
	})
	// The sweep advanced the generation, so the cache shows the slot again.
	n, got := slotIDs(t, rp.url, 1)
	if n < before || got[0] != ids[0] {
		t.Errorf("after expiry: %d available, first %v; want >= %d, first %s", n, got, before, ids[0])
	}
	if r := do(t, "GET", rp.url+"/api/v1/bookings/"+id, nil, nil); r.str("status") != StatusExpired {
		t.Errorf("GET booking: %d %v, want status expired", r.code, r.body)
	}
	if r := do(t, "POST", rp.url+"/api/v1/bookings/"+id+"/pay", nil, nil); r.code != http.StatusConflict || r.str("reason") != "expired" {
		t.Errorf("pay: %d %v, want 409 expired", r.code, r.body)
	}
}

// TestExpiredHoldIsFree: without any sweep, booking a slot whose hold has
// expired succeeds and ends the old hold; paying in time confirms.
func TestExpiredHoldIsFree(t *testing.T) {
	cfg := testConfig(t)
	clock := testClock(6000)
	svc := newService(t, cfg, clock)
	t.Cleanup(func() { svc.Close() })
	if err := svc.release(); err != nil { // no Run, so no sweep
		t.Fatal(err)
	}
	rp := newReplica(t, svc, "r1")
	_, ids := slotIDs(t, rp.url, 2)

	first := book(t, rp.url, "k1", ids[0], "alice")
	if first.code != http.StatusCreated {
		t.Fatalf("book: %d %v", first.code, first.body)
	}
	if r := book(t, rp.url, "k2", ids[0], "bob"); r.code != http.StatusConflict || r.str("reason") != "slot_taken" {
		t.Fatalf("book a held slot: %d %v, want 409 slot_taken", r.code, r.body)
	}
	expires, err := time.Parse(time.RFC3339Nano, first.str("expires_at"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the hold to expire", func() bool { return clock.Now().After(expires) })
	second := book(t, rp.url, "k3", ids[0], "bob")
	if second.code != http.StatusCreated {
		t.Fatalf("book an expired hold's slot: %d %v, want 201", second.code, second.body)
	}
	if r := do(t, "POST", rp.url+"/api/v1/bookings/"+first.str("booking_id")+"/pay", nil, nil); r.code != http.StatusConflict || r.str("reason") != "expired" {
		t.Errorf("pay the expired hold: %d %v, want 409 expired", r.code, r.body)
	}
	if r := do(t, "POST", rp.url+"/api/v1/bookings/"+second.str("booking_id")+"/pay", nil, nil); r.code != http.StatusOK || r.str("status") != StatusConfirmed {
		t.Errorf("pay: %d %v, want 200 confirmed", r.code, r.body)
	}
}

// TestRestart closes the service and reopens the same file: confirmed
// bookings stay, nothing is released again.
func TestRestart(t *testing.T) {
	cfg := testConfig(t)
	clock := testClock(1)
	svc := newService(t, cfg, clock)
	stop := runService(t, svc)
	rp := newReplica(t, svc, "r1")
	_, ids := slotIDs(t, rp.url, 3)
	confirmed := book(t, rp.url, "k1", ids[0], "alice").str("booking_id")
	if r := do(t, "POST", rp.url+"/api/v1/bookings/"+confirmed+"/pay", nil, nil); r.code != http.StatusOK {
		t.Fatalf("pay: %d %v", r.code, r.body)
	}
	cancelled := book(t, rp.url, "k2", ids[1], "bob").str("booking_id")
	if r := do(t, "POST", rp.url+"/api/v1/bookings/"+cancelled+"/cancel", nil, nil); r.code != http.StatusOK || r.str("status") != StatusCancelled {
		t.Fatalf("cancel: %d %v", r.code, r.body)
	}
	held := book(t, rp.url, "k3", ids[2], "carol").str("booking_id")
	before, _ := slotIDs(t, rp.url, 1)
	stop()

	svc2 := startService(t, cfg, clock)
	rp2 := newReplica(t, svc2, "r1")
	if got := testutil.ToFloat64(svc2.slotsReleased); got != 0 {
		t.Errorf("restart released %v slots again, want 0", got)
	}
	after, _ := slotIDs(t, rp2.url, 1)
	if after != before || after != 22 {
		t.Errorf("available after restart = %d, before = %d, want 22", after, before)
	}
	for _, tt := range []struct{ id, status string }{
		{confirmed, StatusConfirmed}, {cancelled, StatusCancelled}, {held, StatusHeld},
	} {
		if r := do(t, "GET", rp2.url+"/api/v1/bookings/"+tt.id, nil, nil); r.code != http.StatusOK || r.str("status") != tt.status {
			t.Errorf("booking %s after restart: %d %v, want status %s", tt.id, r.code, r.body, tt.status)
		}
	}
	if r := book(t, rp2.url, "k4", ids[0], "dave"); r.code != http.StatusConflict {
		t.Errorf("booking the confirmed slot after restart: %d %v, want 409", r.code, r.body)
	}
	if r := book(t, rp2.url, "k1", ids[0], "alice"); r.code != http.StatusOK || r.str("booking_id") != confirmed {
		t.Errorf("idempotent replay after restart: %d %v, want 200 %s", r.code, r.body, confirmed)
	}
}

func TestRateLimit(t *testing.T) {
	tests := []struct {
		name    string
		rl      RateLimitConfig
		clients []string // one request each, in order
		want    []int
	}{
		{"per client", RateLimitConfig{PerClientRate: 0.001, PerClientBurst: 2, GlobalRate: -1},
			[]string{"a", "a", "a", "b"}, []int{200, 200, 429, 200}},
		{"overall", RateLimitConfig{PerClientRate: -1, GlobalRate: 0.001, GlobalBurst: 3},
			[]string{"a", "b", "c", "d"}, []int{200, 200, 200, 429}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.RateLimit = tt.rl
			cfg.RateLimit.setDefaults()
			svc := newService(t, cfg, testClock(1))
			t.Cleanup(func() { svc.Close() })
			rp := newReplica(t, svc, "r1")
			for i, c := range tt.clients {
				r := do(t, "GET", rp.url+"/api/v1/consulates", nil, map[string]string{"X-Client-ID": c})
				if r.code != tt.want[i] {
					t.Fatalf("request %d (client %s): %d, want %d", i, c, r.code, tt.want[i])
				}
				if r.code == 429 {
					ra, err := strconv.Atoi(r.header.Get("Retry-After"))
					if err != nil || ra < 1 {
						t.Errorf("Retry-After = %q, want whole seconds >= 1", r.header.Get("Retry-After"))
					}
					if r.str("reason") != "rate_limited" {
						t.Errorf("reason = %q, want rate_limited", r.str("reason"))
					}
				}
			}
		})
	}
}

func TestRateLimitEvictsClients(t *testing.T) {
	cfg := testConfig(t)
	cfg.RateLimit = RateLimitConfig{PerClientRate: 1, MaxClients: 2, GlobalRate: -1}
	cfg.RateLimit.setDefaults()
	svc := newService(t, cfg, testClock(1))
	t.Cleanup(func() { svc.Close() })
	rp := newReplica(t, svc, "r1")
	for _, c := range []string{"a", "b", "c", "d"} {
		do(t, "GET", rp.url+"/api/v1/consulates", nil, map[string]string{"X-Client-ID": c})
	}
	if got := testutil.ToFloat64(rp.metrics.evictions); got != 2 {
		t.Errorf("evictions = %v, want 2", got)
	}
	if got := rp.limiter.size(); got != 2 {
		t.Errorf("clients kept = %d, want 2", got)
	}
}

func TestWaitingRoomFIFO(t *testing.T) {
	w := newWaitingRoom(WaitingRoomConfig{MaxInProgress: 1, MaxWaiting: 3, PollAfter: time.Second, TicketTTL: time.Minute, PassTTL: time.Minute})
	now := time.Now()
	if a := w.admit("", now); !a.admitted {
		t.Fatalf("first attempt not admitted: %+v", a)
	}
	var tickets []string
	for i := range 3 {
		a := w.admit("", now)
		if a.admitted || a.position != i+1 {
			t.Fatalf("attempt %d: %+v, want queued at %d", i+2, a, i+1)
		}
		tickets = append(tickets, a.ticket)
	}
	if a := w.admit("", now); !a.full {
		t.Fatalf("attempt beyond the room: %+v, want full", a)
	}
	for i, tk := range tickets {
		if pos, pass, ok := w.poll(tk, now); !ok || pos != i+1 || pass != "" {
			t.Errorf("poll ticket %d: position %d pass %q ok %v, want %d", i, pos, pass, ok, i+1)
		}
	}
	// Tickets are admitted in order, each as the previous attempt ends; a
	// newcomer arriving meanwhile queues behind them.
	for i, tk := range tickets {
		w.done(now)
		for j, other := range tickets[i+1:] {
			if pos, pass, _ := w.poll(other, now); pass != "" || pos != j+1 {
				t.Errorf("after %d done: ticket %d position %d ready %v, want %d waiting", i+1, i+j+1, pos, pass != "", j+1)
			}
		}
		if a := w.admit("", now); a.admitted {
			t.Errorf("newcomer admitted ahead of waiting tickets")
		} else if !a.full {
			tickets = append(tickets, a.ticket)
		}
		pos, pass, ok := w.poll(tk, now)
		if !ok || pos != 0 || pass == "" {
			t.Fatalf("ticket %d after %d done: position %d pass %q ok %v, want ready", i, i+1, pos, pass, ok)
		}
		if a := w.admit(pass, now.Add(time.Second)); !a.admitted || a.waited != time.Second {
			t.Fatalf("redeeming ticket %d's pass: %+v", i, a)
		}
		if a := w.admit(pass, now); a.admitted {
			t.Fatalf("a pass was redeemed twice")
		}
		if i == 2 {
			break
		}
	}
}

func TestWaitingRoomExpiry(t *testing.T) {
	w := newWaitingRoom(WaitingRoomConfig{MaxInProgress: 1, MaxWaiting: 10, PollAfter: time.Second, TicketTTL: 10 * time.Second, PassTTL: 5 * time.Second})
	now := time.Now()
	w.admit("", now)
	t1 := w.admit("", now).ticket
	t2 := w.admit("", now).ticket
	w.poll(t2, now.Add(8*time.Second))
	w.sweep(now.Add(11 * time.Second)) // t1 unpolled for 11s, t2 for 3s
	if _, _, ok := w.poll(t1, now.Add(11*time.Second)); ok {
		t.Errorf("unpolled ticket still known")
	}
	if pos, _, ok := w.poll(t2, now.Add(11*time.Second)); !ok || pos != 1 {
		t.Errorf("polled ticket: position %d ok %v, want 1", pos, ok)
	}
	w.done(now.Add(12 * time.Second))
	if _, pass, _ := w.poll(t2, now.Add(12*time.Second)); pass == "" {
		t.Fatal("ticket not ready after the attempt ended")
	}
	w.sweep(now.Add(18 * time.Second)) // pass unused for 6s
	if _, _, ok := w.poll(t2, now.Add(18*time.Second)); ok {
		t.Errorf("unredeemed pass still known")
	}
	if a := w.admit("", now.Add(18*time.Second)); !a.admitted {
		t.Errorf("capacity of an expired pass not freed: %+v", a)
	}
	if got := w.expiredTickets.Load(); got != 2 {
		t.Errorf("expired = %d, want 2", got)
	}
}

// TestWaitingRoomHTTP walks the 202 → poll → X-Queue-Pass flow.
func TestWaitingRoomHTTP(t *testing.T) {
	cfg := testConfig(t)
	cfg.WaitingRoom = WaitingRoomConfig{MaxInProgress: 1}
	cfg.WaitingRoom.setDefaults()
	svc := startService(t, cfg, testClock(1))
	rp := newReplica(t, svc, "r1")
	_, ids := slotIDs(t, rp.url, 3)
	// An attempt in progress elsewhere takes the only place.
	if a := svc.room.admit("", time.Now()); !a.admitted {
		t.Fatal("could not take the place")
	}
	q1 := book(t, rp.url, "k1", ids[0], "alice")
	q2 := book(t, rp.url, "k2", ids[1], "bob")
	for i, q := range []response{q1, q2} {
		if q.code != http.StatusAccepted || q.num("position") != i+1 || q.str("queue_ticket") == "" || q.num("poll_after_ms") != 500 {
			t.Fatalf("queued booking %d: %d %v", i, q.code, q.body)
		}
	}
	poll := func(q response) response {
		return do(t, "GET", rp.url+"/api/v1/queue/"+q.str("queue_ticket"), nil, nil)
	}
	if p := poll(q2); p.code != 200 || p.num("position") != 2 || p.body["ready"] != false {
		t.Errorf("poll 2: %d %v", p.code, p.body)
	}
	svc.room.done(time.Now())
	p1 := poll(q1)
	if p1.body["ready"] != true || p1.str("pass") == "" {
		t.Fatalf("poll 1 after a place freed: %d %v, want ready", p1.code, p1.body)
	}
	r := do(t, "POST", rp.url+"/api/v1/bookings", map[string]string{"slot_id": ids[0], "applicant_id": "alice"},
		map[string]string{"Idempotency-Key": "k1", "X-Queue-Pass": p1.str("pass")})
	if r.code != http.StatusCreated {
		t.Fatalf("booking with the pass: %d %v", r.code, r.body)
	}
	if p := poll(q2); p.body["ready"] != true {
		t.Errorf("poll 2 after 1 finished: %v, want ready", p.body)
	}
	if got := testutil.CollectAndCount(rp.metrics.roomWait); got != 1 {
		t.Errorf("wait-time series = %d", got)
	}
	if r := do(t, "GET", rp.url+"/api/v1/queue/0123456789abcdef", nil, nil); r.code != http.StatusNotFound || r.str("reason") != "unknown_ticket" {
		t.Errorf("unknown ticket: %d %v", r.code, r.body)
	}
}

func TestBadRequests(t *testing.T) {
	svc := startService(t, testConfig(t), testClock(1))
	rp := newReplica(t, svc, "r1")
	_, ids := slotIDs(t, rp.url, 1)
	tomorrow := simStart.AddDate(0, 0, 1).Format(time.DateOnly)
	later := simStart.AddDate(0, 0, 5).Format(time.DateOnly)
	key := map[string]string{"Idempotency-Key": "k"}
	tests := []struct {
		name, method, path string
		body               any
		header             map[string]string
		code               int
		reason, mentions   string
	}{
		{"missing key", "POST", "/api/v1/bookings", map[string]string{"slot_id": ids[0], "applicant_id": "a"}, nil, 400, "missing_idempotency_key", "Idempotency-Key"},
		{"bad JSON", "POST", "/api/v1/bookings", `{"slot_id": `, key, 400, "bad_body", "body"},
		{"empty body", "POST", "/api/v1/bookings", "", key, 400, "bad_body", "body"},
		{"unknown field", "POST", "/api/v1/bookings", `{"slot_id":"x","applicant_id":"a","seat":1}`, key, 400, "bad_body", `"seat"`},
		{"wrong type", "POST", "/api/v1/bookings", `{"slot_id":7,"applicant_id":"a"}`, key, 400, "bad_body", "slot_id"},
		{"missing slot", "POST", "/api/v1/bookings", `{"applicant_id":"a"}`, key, 400, "bad_body", "slot_id"},
		{"missing applicant", "POST", "/api/v1/bookings", `{"slot_id":"x"}`, key, 400, "bad_body", "applicant_id"},
		{"malformed slot", "POST", "/api/v1/bookings", map[string]string{"slot_id": "beijing/tourist/tomorrow", "applicant_id": "a"}, key, 400, "bad_slot_id", "slot_id"},
		{"malformed slot date", "POST", "/api/v1/bookings", map[string]string{"slot_id": "beijing/tourist/2026-13-01/0900-01", "applicant_id": "a"}, key, 400, "bad_slot_id", "2026-13-01"},
		{"unknown consulate", "POST", "/api/v1/bookings", map[string]string{"slot_id": "paris/tourist/" + tomorrow + "/0900-01", "applicant_id": "a"}, key, 404, "unknown_slot", "paris"},
		{"unknown visa type", "POST", "/api/v1/bookings", map[string]string{"slot_id": "beijing/work/" + tomorrow + "/0900-01", "applicant_id": "a"}, key, 404, "unknown_slot", "work"},
		{"unknown time", "POST", "/api/v1/bookings", map[string]string{"slot_id": "beijing/tourist/" + tomorrow + "/0915-01", "applicant_id": "a"}, key, 404, "unknown_slot", "0915"},
		{"sequence beyond day", "POST", "/api/v1/bookings", map[string]string{"slot_id": "beijing/tourist/" + tomorrow + "/0900-11", "applicant_id": "a"}, key, 404, "unknown_slot", "11"},
		{"not released", "POST", "/api/v1/bookings", map[string]string{"slot_id": "beijing/tourist/" + later + "/0900-01", "applicant_id": "a"}, key, 409, "not_released", "not released"},
		{"slots without consulate", "GET", "/api/v1/slots?visa_type=tourist", nil, nil, 400, "bad_request", "consulate"},
		{"slots unknown consulate", "GET", "/api/v1/slots?consulate=paris&visa_type=tourist", nil, nil, 400, "unknown_consulate", "paris"},
		{"slots unknown visa type", "GET", "/api/v1/slots?consulate=beijing&visa_type=work", nil, nil, 400, "unknown_visa_type", "work"},
		{"slots bad date", "GET", "/api/v1/slots?consulate=beijing&visa_type=tourist&date=soon", nil, nil, 400, "bad_request", "date"},
		{"slots bad limit", "GET", "/api/v1/slots?consulate=beijing&visa_type=tourist&limit=0", nil, nil, 400, "bad_request", "limit"},
		{"malformed booking ID", "GET", "/api/v1/bookings/xyz", nil, nil, 400, "bad_booking_id", "xyz"},
		{"malformed booking ID pay", "POST", "/api/v1/bookings/XYZ/pay", nil, nil, 400, "bad_booking_id", "XYZ"},
		{"unknown booking", "GET", "/api/v1/bookings/0123456789abcdef", nil, nil, 404, "unknown_booking", "0123456789abcdef"},
		{"unknown booking cancel", "POST", "/api/v1/bookings/0123456789abcdef/cancel", nil, nil, 404, "unknown_booking", "0123456789abcdef"},
		{"malformed ticket", "GET", "/api/v1/queue/nope", nil, nil, 400, "bad_ticket", "nope"},
		{"unknown path", "GET", "/api/v1/flights", nil, nil, 404, "not_found", "/api/v1/flights"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, tt.method, rp.url+tt.path, tt.body, tt.header)
			if r.code != tt.code || r.str("reason") != tt.reason || !strings.Contains(r.str("error"), tt.mentions) {
				t.Errorf("got %d %v, want %d reason %q, error mentioning %q", r.code, r.body, tt.code, tt.reason, tt.mentions)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	svc := startService(t, testConfig(t), testClock(1))
	r1, r2 := newReplica(t, svc, "r1"), newReplica(t, svc, "r2")
	_, ids := slotIDs(t, r1.url, 1)
	book(t, r1.url, "k1", ids[0], "alice")
	for _, rp := range []testReplica{r1, r2} {
		// Shared state: both replicas report the same availability.
		want := `
# HELP booking_slots_available Released, unbooked future slots (service-wide; every replica reports the same value, aggregate with max).
# TYPE booking_slots_available gauge
booking_slots_available{consulate="beijing",visa_type="tourist"} 23
`
		if err := testutil.GatherAndCompare(rp.reg, strings.NewReader(want), "booking_slots_available"); err != nil {
			t.Errorf("replica %s: %v", rp.id, err)
		}
	}
	if got := testutil.ToFloat64(r1.metrics.requests.WithLabelValues("book", "201")); got != 1 {
		t.Errorf(`booking_requests_total{endpoint="book",code="201"} on r1 = %v, want 1`, got)
	}
	if got := testutil.ToFloat64(r2.metrics.successes); got != 0 {
		t.Errorf("booking_successes_total on r2 = %v, want 0 (per replica)", got)
	}
	if got := testutil.ToFloat64(r1.metrics.bookings.WithLabelValues(outcomeSuccess)); got != 1 {
		t.Errorf(`booking_bookings_total{outcome="success"} = %v, want 1`, got)
	}
	n, err := testutil.GatherAndCount(r1.reg, "booking_request_duration_seconds", "refsvc_capacity_inflight_requests")
	if err != nil || n != len(endpoints)+1 {
		t.Errorf("gathered %d series (%v), want %d", n, err, len(endpoints)+1)
	}
}
