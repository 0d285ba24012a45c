package ingest

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

type seriesState struct {
	fp         uint64
	lastSeen   int64 // unix seconds
	writtenDay int32 // days since the epoch when this hub last wrote the series row
	// after is the series that followed this one in the tenant's last
	// request. Agents send a target's series in the same order at every
	// scrape, so it is most often the next one's again: looking there first
	// spares most lookups in the map, whose random accesses miss the CPU's
	// caches.
	after *seriesState
	gone  bool // swept: no longer in the map
}

// tenantState is one tenant's limiter and active series. mu guards series.
type tenantState struct {
	limits  Limits
	limiter *rate.Limiter // nil: unlimited

	mu     sync.Mutex
	series map[uint64]*seriesState
}

// next returns the state of series fp (nil if unknown), trying the one
// that followed prev last time first. Callers hold mu.
func (ts *tenantState) next(prev *seriesState, fp uint64) *seriesState {
	if prev != nil {
		if st := prev.after; st != nil && st.fp == fp {
			return st
		}
	}
	st := ts.series[fp]
	if prev != nil && st != nil {
		prev.after = st
	}
	return st
}

func newTenantState(l Limits) *tenantState {
	ts := &tenantState{limits: l, series: make(map[uint64]*seriesState)}
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
	for fp, st := range ts.series {
		if st.lastSeen < cutoff {
			delete(ts.series, fp)
			st.gone, st.after = true, nil
		}
	}
	for _, st := range ts.series {
		if st.after != nil && st.after.gone {
			st.after = nil
		}
	}
	return len(ts.series)
}
