// Package refsvc holds what the hub's hosted reference services (visa
// booking, health-code scan) have in common: the Service contract the
// hosting layer (hub/refsvc/host) runs replicas of. The services themselves
// live in hub/refsvc/booking and hub/refsvc/healthcode; the emulated pod
// capacity in hub/refsvc/capacity; the surge load generator in
// hub/refsvc/loadgen. The HTTP APIs are documented in docs/refsvc.md.
package refsvc

import (
	"context"
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// Replica describes one replica the host is about to start.
type Replica struct {
	// ID is unique among the live replicas of a service, e.g. "booking-3".
	ID string
	// Registerer is the replica's own registry: what the replica registers
	// there is served on that replica's /metrics, so an agent scraping the
	// replica sees that replica's business metrics only.
	Registerer prometheus.Registerer
}

// Service is a hosted reference service. Replicas of one Service share its
// state (the durable store), so a booking made through one replica is seen
// by all; each replica has its own capacity, caches and metrics.
//
// Implementations must be safe for concurrent use: the host calls
// NewReplica while other replicas are serving.
type Service interface {
	// NewReplica builds one replica's handler. The host serves it on its own
	// loopback port together with /metrics and /-/ready; it never calls the
	// handler before the replica's warm-up is over. If the handler
	// implements io.Closer, the host closes it after the replica has been
	// drained.
	NewReplica(r Replica) (http.Handler, error)
	// Run does the work shared by all replicas (scheduled slot releases,
	// expiring unpaid holds, ...) until ctx ends. It returns nil on a clean
	// stop.
	Run(ctx context.Context) error
	// Close releases the shared state (closes the store). Called once,
	// after Run has returned and every replica has been closed.
	Close() error
}

// Change is one key of a service's store as a committed transaction left
// it: its new value, or its deletion. A service whose state must survive
// the loss of the hub running it (see Durable) hands every transaction's
// changes to a Journal, and is restored from the journal's latest change
// of each key.
type Change struct {
	Bucket  string
	Key     []byte
	Value   []byte
	Deleted bool
}

// Ticket identifies changes queued in a Journal, to wait for.
type Ticket uint64

// Journal makes a service's committed changes durable in a store every
// hub can reach (hub/refsvc/journal keeps them in ClickHouse).
type Journal interface {
	// Enqueue queues one transaction's changes, ordered after every
	// earlier Enqueue: call it in commit order (with the store's write
	// lock held). It fails at once when the queue is full.
	Enqueue(changes []Change) (Ticket, error)
	// Wait returns when everything up to t is durable, or with an error
	// when that is not so within ctx.
	Wait(ctx context.Context, t Ticket) error
}

// ErrNotDurable wraps a Journal's failure: the change is committed on
// this hub but not yet confirmed durable, so the request's outcome is
// unknown to the client (answer 503; a retry with the same idempotency
// key finds it).
var ErrNotDurable = errors.New("change not confirmed durable")

// Durable is a Service whose state survives the loss of the hub running
// it: in a hub cluster only the service's owner runs it, and a new owner
// restores the journal's state before it starts replicas.
type Durable interface {
	// SetJournal makes every later committed change wait for j before the
	// request that made it is answered. Call it before Run.
	SetJournal(j Journal)
	// Restore replaces the service's state with the journal's latest
	// change of each key, which load passes to its argument in any order.
	// It is called while the service is not running (before Run).
	Restore(ctx context.Context, load func(apply func(Change) error) error) error
}
