package ingest

import (
	"sort"
	"sync"

	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
)

type batchState int

const (
	stateInflight batchState = iota
	stateStored
	stateFailed
)

// pending is a batch registered with the tracker and not yet committed.
type pending struct {
	key   clickhouse.AgentKey
	seq   uint64
	state batchState    // guarded by tracker.mu
	err   error         // outcome; written before done is closed
	done  chan struct{} // closed by release once the outcome is final
}

type agentProgress struct {
	committed uint64     // every batch up to here, of those this hub saw, is stored
	pending   []*pending // sorted by seq
}

// tracker deduplicates batches by (tenant, agent, seq). A batch is a
// duplicate when its seq is at or below the agent's committed seq. That seq
// only advances over a prefix of stored batches: a batch in flight, or one
// that failed and awaits its resend, holds back every later one, so no
// unstored batch is ever taken for a duplicate.
type tracker struct {
	mu     sync.Mutex
	agents map[clickhouse.AgentKey]*agentProgress
	dirty  map[clickhouse.AgentKey]uint64 // committed values not yet persisted
}

func newTracker(loaded map[clickhouse.AgentKey]uint64) *tracker {
	t := &tracker{agents: make(map[clickhouse.AgentKey]*agentProgress), dirty: make(map[clickhouse.AgentKey]uint64)}
	for k, seq := range loaded {
		t.agents[k] = &agentProgress{committed: seq}
	}
	return t
}

// begin registers seq. It returns dup for a batch already committed; a
// non-nil wait for one registered before and not failed (the caller waits on
// wait.done and answers with wait.err); otherwise a new pending batch that
// the caller must complete.
func (t *tracker) begin(k clickhouse.AgentKey, seq uint64) (mine, wait *pending, dup bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.agents[k]
	if a == nil {
		a = &agentProgress{}
		t.agents[k] = a
	}
	if seq <= a.committed {
		return nil, nil, true
	}
	p := &pending{key: k, seq: seq, done: make(chan struct{})}
	i := sort.Search(len(a.pending), func(i int) bool { return a.pending[i].seq >= seq })
	if i < len(a.pending) && a.pending[i].seq == seq {
		if a.pending[i].state != stateFailed {
			return nil, a.pending[i], false
		}
		a.pending[i] = p
		return p, nil, false
	}
	a.pending = append(a.pending, nil)
	copy(a.pending[i+1:], a.pending[i:])
	a.pending[i] = p
	return p, nil, false
}

// complete records outcomes and advances committed seqs; the changed ones
// become visible to takeDirty. It does not wake waiters: call release after
// persisting progress.
func (t *tracker) complete(ps []*pending, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range ps {
		p.err = err
		if err != nil {
			p.state = stateFailed
			continue
		}
		p.state = stateStored
		a := t.agents[p.key]
		advanced := false
		for len(a.pending) > 0 && a.pending[0].state == stateStored {
			a.committed = a.pending[0].seq
			a.pending = a.pending[1:]
			advanced = true
		}
		if advanced {
			t.dirty[p.key] = a.committed
		}
	}
}

// release wakes everyone waiting on ps.
func release(ps []*pending) {
	for _, p := range ps {
		close(p.done)
	}
}

// takeDirty returns and clears the committed seqs changed since last call.
func (t *tracker) takeDirty() map[clickhouse.AgentKey]uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.dirty) == 0 {
		return nil
	}
	d := t.dirty
	t.dirty = make(map[clickhouse.AgentKey]uint64)
	return d
}

// restoreDirty puts back progress that could not be persisted.
func (t *tracker) restoreDirty(d map[clickhouse.AgentKey]uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, v := range d {
		if v > t.dirty[k] {
			t.dirty[k] = v
		}
	}
}

// observeStored raises an agent's committed seq to what another hub of
// the cluster has stored for it (read from ClickHouse when the agent
// connects here), so batches that hub stored are duplicates here too. It
// only acts when this hub has none of the agent's batches in flight.
func (t *tracker) observeStored(k clickhouse.AgentKey, seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.agents[k]
	if a == nil {
		t.agents[k] = &agentProgress{committed: seq}
		return
	}
	if len(a.pending) == 0 && seq > a.committed {
		a.committed = seq
	}
}

// resume is called with the first seq of a new stream from an agent. The
// agent resends from its oldest unacknowledged batch, so a failed batch
// below that seq will never come again (the agent's buffer dropped it):
// forget it, so that it stops holding back the committed seq.
func (t *tracker) resume(k clickhouse.AgentKey, first uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.agents[k]
	if a == nil {
		return
	}
	kept := a.pending[:0]
	for _, p := range a.pending {
		if p.state == stateFailed && p.seq < first {
			continue
		}
		kept = append(kept, p)
	}
	a.pending = kept
	advanced := false
	for len(a.pending) > 0 && a.pending[0].state == stateStored {
		a.committed = a.pending[0].seq
		a.pending = a.pending[1:]
		advanced = true
	}
	if advanced {
		t.dirty[k] = a.committed
	}
}
