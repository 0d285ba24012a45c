package ingest

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/bureauhub/bureauhub/internal/fpchain"
)

type seriesState struct {
	lastSeen   int64 // unix seconds
	writtenDay int32 // days since the epoch when this hub last wrote the series row; -1 for none
}

// tenantState is one tenant's limiter and active series. mu guards series.
type tenantState struct {
	limits  Limits
	limiter *rate.Limiter // nil: unlimited

	mu sync.Mutex
	// series by fingerprint, looked up in the order requests bring them.
	series fpchain.Map[seriesState]
}

func newTenantState(l Limits) *tenantState {
	ts := &tenantState{limits: l}
	if l.SamplesPerSecond > 0 {
		ts.limiter = rate.NewLimiter(rate.Limit(l.SamplesPerSecond), int(2*l.SamplesPerSecond)+1)
	}
	return ts
}

// allow takes n samples from the tenant's rate budget. A batch larger than
// the burst passes when the bucket is full, so that no batch is refused
// forever.
func (ts *tenantState) allow(now time.Time, n int) bool {
	if ts.limiter == nil {
		return true
	}
	if n > ts.limiter.Burst() {
		n = ts.limiter.Burst()
	}
	return ts.limiter.AllowN(now, n)
}

// sweep forgets series not seen since cutoff and returns how many remain.
func (ts *tenantState) sweep(cutoff int64) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.series.Sweep(func(n *fpchain.Node[seriesState]) bool { return n.V.lastSeen < cutoff })
}
