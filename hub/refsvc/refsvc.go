// Package refsvc holds what the hub's hosted reference services (visa
// booking, health-code scan) have in common: the Service contract the
// hosting layer (hub/refsvc/host) runs replicas of. The services themselves
// live in hub/refsvc/booking and hub/refsvc/healthcode; the emulated pod
// capacity in hub/refsvc/capacity; the surge load generator in
// hub/refsvc/loadgen. The HTTP APIs are documented in docs/refsvc.md.
package refsvc

import (
	"context"
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
