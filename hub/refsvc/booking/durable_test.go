package booking

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/bureauhub/bureauhub/hub/refsvc"
)

// memJournal is a refsvc.Journal in memory: the latest change per key,
// durable at once unless failing is set.
type memJournal struct {
	mu      sync.Mutex
	state   map[string]refsvc.Change
	ticket  refsvc.Ticket
	failing bool
}

func newMemJournal() *memJournal { return &memJournal{state: map[string]refsvc.Change{}} }

func (j *memJournal) Enqueue(cs []refsvc.Change) (refsvc.Ticket, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failing {
		return 0, errors.New("journal unreachable")
	}
	for _, c := range cs {
		j.state[c.Bucket+"\x00"+string(c.Key)] = c
	}
	j.ticket++
	return j.ticket, nil
}

func (j *memJournal) Wait(context.Context, refsvc.Ticket) error { return nil }

func (j *memJournal) load(apply func(refsvc.Change) error) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, c := range j.state {
		if err := apply(c); err != nil {
			return err
		}
	}
	return nil
}

// TestRestoreFromJournal: bookings made on one hub's store, journaled,
// are all there, with their slots taken and their idempotency keys
// remembered, on another hub's fresh store restored from the journal; a
// change the journal refused is answered 503, never 201.
func TestRestoreFromJournal(t *testing.T) {
	clock := testClock(1)
	j := newMemJournal()
	cfg := testConfig(t)
	a := newService(t, cfg, clock)
	a.SetJournal(j)
	stopA := runService(t, a)
	ra := newReplica(t, a, "a-1")
	_, ids := slotIDs(t, ra.url, 6)
	if len(ids) < 6 {
		t.Fatalf("only %d slots released", len(ids))
	}
	var booked []string
	for i, slot := range ids[:4] {
		r := book(t, ra.url, "key-"+itoa(i), slot, "applicant-"+itoa(i))
		if r.code != 201 {
			t.Fatalf("book: %d %v", r.code, r.body)
		}
		booked = append(booked, r.str("booking_id"))
	}
	if r := do(t, "POST", ra.url+"/api/v1/bookings/"+booked[0]+"/pay", nil, nil); r.code != 200 {
		t.Fatalf("pay: %d %v", r.code, r.body)
	}
	if r := do(t, "POST", ra.url+"/api/v1/bookings/"+booked[1]+"/cancel", nil, nil); r.code != 200 {
		t.Fatalf("cancel: %d %v", r.code, r.body)
	}
	j.mu.Lock()
	j.failing = true
	j.mu.Unlock()
	if r := book(t, ra.url, "key-lost", ids[5], "applicant-lost"); r.code != 503 || r.str("reason") != "not_durable" {
		t.Fatalf("book with the journal refusing: %d %v, want 503 not_durable", r.code, r.body)
	}
	stopA()

	// Another hub: its own (fresh) store file, restored from the journal.
	cfgB := cfg
	cfgB.Store.Path = filepath.Join(t.TempDir(), "b.db")
	b := newService(t, cfgB, clock)
	if err := b.Restore(context.Background(), j.load); err != nil {
		t.Fatal(err)
	}
	runService(t, b)
	rb := newReplica(t, b, "b-1")
	want := map[string]string{booked[0]: StatusConfirmed, booked[1]: StatusCancelled, booked[2]: StatusHeld, booked[3]: StatusHeld}
	for id, status := range want {
		r := do(t, "GET", rb.url+"/api/v1/bookings/"+id, nil, nil)
		if r.code != 200 || r.str("status") != status {
			t.Errorf("booking %s on the new hub: %d %v, want %s", id, r.code, r.body, status)
		}
	}
	// The confirmed slot stays taken; the cancelled one is free again.
	if r := book(t, rb.url, "key-x", ids[0], "someone-else"); r.code != 409 {
		t.Errorf("booking the confirmed slot again: %d %v, want 409", r.code, r.body)
	}
	if r := book(t, rb.url, "key-y", ids[1], "someone-else"); r.code != 201 {
		t.Errorf("booking the cancelled slot: %d %v, want 201", r.code, r.body)
	}
	// A replayed key answers the original booking.
	if r := book(t, rb.url, "key-2", ids[2], "applicant-2"); r.code != 200 || r.str("booking_id") != booked[2] {
		t.Errorf("replayed key on the new hub: %d %v, want 200 %s", r.code, r.body, booked[2])
	}
	// The refused booking was never confirmed: its slot is free here.
	if r := book(t, rb.url, "key-z", ids[5], "someone-else"); r.code != 201 {
		t.Errorf("slot of the unconfirmed booking: %d %v, want 201", r.code, r.body)
	}
}
