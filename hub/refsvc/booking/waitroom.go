package booking

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// waitingRoom is the service-wide FIFO queue for booking attempts. At most
// maxInProgress attempts run at once; beyond that newcomers get a ticket.
// Tickets are served first in, first out: when capacity frees, the head
// ticket becomes ready, gets a pass, and the capacity is reserved for that
// pass, so newcomers cannot take it. A newcomer is queued whenever anyone
// is waiting, even if capacity is free, which keeps the order fair.
//
// Times are wall time (they pace real clients). Safe for concurrent use;
// all methods are short and never block on I/O.
type waitingRoom struct {
	cfg WaitingRoomConfig

	mu         sync.Mutex
	inProgress int
	reserved   int       // ready passes not yet redeemed
	queue      []*ticket // waiting tickets, in seq order
	tickets    map[string]*ticket
	passes     map[string]*ticket
	nextSeq    uint64
	lastSweep  time.Time

	expiredTickets atomic.Uint64
}

type ticket struct {
	id, pass string
	seq      uint64
	enqueued time.Time
	lastPoll time.Time
	readyAt  time.Time // zero while waiting
}

func newWaitingRoom(cfg WaitingRoomConfig) *waitingRoom {
	return &waitingRoom{cfg: cfg, tickets: map[string]*ticket{}, passes: map[string]*ticket{}}
}

// admission is the waiting room's answer to one booking attempt.
type admission struct {
	// admitted: run the attempt now, and call done after.
	admitted bool
	// waited is how long a redeemed pass's ticket waited (admitted only).
	waited time.Duration
	// ticket and position are set when the attempt was queued.
	ticket   string
	position int
	// full is set when the attempt was refused: the room is full.
	full bool
}

// admit decides one attempt. pass is the X-Queue-Pass header: a valid one
// is admitted on its reserved capacity; an unknown or expired one is
// treated as a newcomer.
func (w *waitingRoom) admit(pass string, now time.Time) admission {
	if w.cfg.MaxInProgress < 0 {
		return admission{admitted: true}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.maybeSweep(now)
	if tk := w.passes[pass]; pass != "" && tk != nil {
		delete(w.passes, pass)
		delete(w.tickets, tk.id)
		w.reserved--
		w.inProgress++
		return admission{admitted: true, waited: now.Sub(tk.enqueued)}
	}
	if len(w.queue) == 0 && w.inProgress+w.reserved < w.cfg.MaxInProgress {
		w.inProgress++
		return admission{admitted: true}
	}
	if len(w.queue) >= w.cfg.MaxWaiting {
		return admission{full: true}
	}
	w.nextSeq++
	tk := &ticket{id: newID(8), seq: w.nextSeq, enqueued: now, lastPoll: now}
	w.queue = append(w.queue, tk)
	w.tickets[tk.id] = tk
	w.promote(now)
	if tk.readyAt.IsZero() {
		return admission{ticket: tk.id, position: len(w.queue)}
	}
	return admission{ticket: tk.id}
}

// done ends an admitted attempt and hands its capacity to the head ticket.
func (w *waitingRoom) done(now time.Time) {
	if w.cfg.MaxInProgress < 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inProgress--
	w.promote(now)
}

// poll reports a ticket's state and keeps it alive. ok is false for an
// unknown or expired ticket. A ready ticket has position 0 and a pass.
func (w *waitingRoom) poll(id string, now time.Time) (position int, pass string, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.maybeSweep(now)
	tk := w.tickets[id]
	if tk == nil {
		return 0, "", false
	}
	tk.lastPoll = now
	w.promote(now)
	if !tk.readyAt.IsZero() {
		return 0, tk.pass, true
	}
	i, _ := slices.BinarySearchFunc(w.queue, tk.seq, func(t *ticket, seq uint64) int {
		switch {
		case t.seq < seq:
			return -1
		case t.seq > seq:
			return 1
		}
		return 0
	})
	return i + 1, "", true
}

// promote makes head tickets ready while capacity is free. Called with mu.
func (w *waitingRoom) promote(now time.Time) {
	for len(w.queue) > 0 && w.inProgress+w.reserved < w.cfg.MaxInProgress {
		tk := w.queue[0]
		w.queue[0] = nil
		w.queue = w.queue[1:]
		tk.readyAt = now
		tk.pass = newID(16)
		w.passes[tk.pass] = tk
		w.reserved++
	}
}

// maybeSweep sweeps at most every eighth of the shorter TTL, so expiry is
// timely without scanning the queue on every request. Called with mu.
func (w *waitingRoom) maybeSweep(now time.Time) {
	if now.Sub(w.lastSweep) >= min(w.cfg.TicketTTL, w.cfg.PassTTL)/8 {
		w.sweepLocked(now)
	}
}

// sweep drops waiting tickets not polled within TicketTTL and passes not
// redeemed within PassTTL (freeing their reserved capacity).
func (w *waitingRoom) sweep(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sweepLocked(now)
}

func (w *waitingRoom) sweepLocked(now time.Time) {
	w.lastSweep = now
	var n uint64
	for pass, tk := range w.passes {
		if now.Sub(tk.readyAt) > w.cfg.PassTTL {
			delete(w.passes, pass)
			delete(w.tickets, tk.id)
			w.reserved--
			n++
		}
	}
	kept := w.queue[:0]
	for _, tk := range w.queue {
		if now.Sub(tk.lastPoll) > w.cfg.TicketTTL {
			delete(w.tickets, tk.id)
			n++
			continue
		}
		kept = append(kept, tk)
	}
	clear(w.queue[len(kept):])
	w.queue = kept
	w.expiredTickets.Add(n)
	w.promote(now)
}

// stats are the shared gauges: queued tickets and attempts in progress.
func (w *waitingRoom) stats() (waiting, inProgress int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue), w.inProgress
}
