package ingest

import (
	"sync"
	"sync/atomic"
	"time"
)

// meter counts acknowledged samples, in total and within the measurement
// window, and per second of the run for a view of how steady the rate was.
type meter struct {
	t0, from, to time.Time

	total     atomic.Int64 // samples acknowledged as stored, whole run
	inWindow  atomic.Int64 // of those, acknowledged within [from, to)
	sent      atomic.Int64 // samples sent
	batches   atomic.Int64 // batches acknowledged as stored
	failed    atomic.Int64 // batches refused or failed
	rejected  atomic.Int64 // samples of stored batches that the target refused
	perSecond []atomic.Int64

	mu       sync.Mutex
	firstErr string
	errors   map[string]int
	latency  []time.Duration // per acknowledged batch, within the window
}

func newMeter(t0 time.Time, warmup, duration time.Duration) *meter {
	return &meter{
		t0: t0, from: t0.Add(warmup), to: t0.Add(warmup + duration),
		perSecond: make([]atomic.Int64, int((warmup+duration)/time.Second)+120),
		errors:    map[string]int{},
	}
}

// acked records a batch the target stored, of which rejected samples were
// refused, sent at sentAt.
func (m *meter) acked(samples, rejected int, sentAt time.Time) {
	now := time.Now()
	stored := int64(samples - rejected)
	m.total.Add(stored)
	m.batches.Add(1)
	m.rejected.Add(int64(rejected))
	if !now.Before(m.from) && now.Before(m.to) {
		m.inWindow.Add(stored)
		m.mu.Lock()
		m.latency = append(m.latency, now.Sub(sentAt))
		m.mu.Unlock()
	}
	if i := int(now.Sub(m.t0) / time.Second); i >= 0 && i < len(m.perSecond) {
		m.perSecond[i].Add(stored)
	}
}

// fail records a batch that was not stored, or a broken connection.
func (m *meter) fail(reason string) {
	m.failed.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.firstErr == "" {
		m.firstErr = reason
	}
	if len(reason) > 60 {
		reason = reason[:60]
	}
	m.errors[reason]++
}

// windowSeconds returns the per-second counts within the window.
func (m *meter) windowSeconds() []int64 {
	lo := int(m.from.Sub(m.t0) / time.Second)
	hi := int(m.to.Sub(m.t0) / time.Second)
	out := make([]int64, 0, hi-lo)
	for i := lo; i < hi && i < len(m.perSecond); i++ {
		out = append(out, m.perSecond[i].Load())
	}
	return out
}
