package ingest

import (
	"errors"
	"maps"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
)

var (
	agentA = clickhouse.AgentKey{Tenant: "t1", AgentID: "a"}
	agentB = clickhouse.AgentKey{Tenant: "t1", AgentID: "b"}
	errIO  = errors.New("clickhouse down")
)

// committedOf returns k's committed seq.
func committedOf(tr *tracker, k clickhouse.AgentKey) uint64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if a := tr.agents[k]; a != nil {
		return a.committed
	}
	return 0
}

// beginMine registers seq and fails the test unless the caller owns it.
func beginMine(tb testing.TB, tr *tracker, k clickhouse.AgentKey, seq uint64) *pending {
	tb.Helper()
	mine, wait, dup := tr.begin(k, seq)
	if mine == nil || wait != nil || dup {
		tb.Fatalf("begin(%v, %d) = mine %v, wait %v, dup %v; want a new pending batch", k, seq, mine != nil, wait != nil, dup)
	}
	if mine.seq != seq || mine.key != k {
		tb.Fatalf("begin(%v, %d) returned pending for %v seq %d", k, seq, mine.key, mine.seq)
	}
	return mine
}

// store completes ps successfully and releases them.
func store(tr *tracker, ps ...*pending) {
	tr.complete(ps, nil)
	release(ps)
}

// fail completes ps with err and releases them.
func fail(tr *tracker, err error, ps ...*pending) {
	tr.complete(ps, err)
	release(ps)
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestTrackerBegin(t *testing.T) {
	type outcome int
	const (
		wantMine outcome = iota
		wantWait
		wantDup
	)
	tests := []struct {
		name   string
		loaded map[clickhouse.AgentKey]uint64
		setup  func(tb testing.TB, tr *tracker)
		seq    uint64
		want   outcome
	}{
		{name: "new agent new seq", seq: 1, want: wantMine},
		{name: "seq zero of a new agent is at committed", seq: 0, want: wantDup},
		{name: "seq below loaded progress", loaded: map[clickhouse.AgentKey]uint64{agentA: 10}, seq: 7, want: wantDup},
		{name: "seq at loaded progress", loaded: map[clickhouse.AgentKey]uint64{agentA: 10}, seq: 10, want: wantDup},
		{name: "seq above loaded progress", loaded: map[clickhouse.AgentKey]uint64{agentA: 10}, seq: 11, want: wantMine},
		{name: "other agent's progress does not apply", loaded: map[clickhouse.AgentKey]uint64{agentB: 10}, seq: 5, want: wantMine},
		{
			name: "same seq in flight waits",
			setup: func(tb testing.TB, tr *tracker) {
				beginMine(tb, tr, agentA, 3)
			},
			seq: 3, want: wantWait,
		},
		{
			name: "same seq stored but held back waits",
			setup: func(tb testing.TB, tr *tracker) {
				beginMine(tb, tr, agentA, 1) // in flight, holds back 2
				store(tr, beginMine(tb, tr, agentA, 2))
			},
			seq: 2, want: wantWait,
		},
		{
			name: "same seq stored and committed is a dup",
			setup: func(tb testing.TB, tr *tracker) {
				store(tr, beginMine(tb, tr, agentA, 1))
			},
			seq: 1, want: wantDup,
		},
		{
			name: "same seq failed is registered afresh",
			setup: func(tb testing.TB, tr *tracker) {
				fail(tr, errIO, beginMine(tb, tr, agentA, 1))
			},
			seq: 1, want: wantMine,
		},
		{
			name: "seq in a gap is new",
			setup: func(tb testing.TB, tr *tracker) {
				beginMine(tb, tr, agentA, 5)
				beginMine(tb, tr, agentA, 9)
			},
			seq: 7, want: wantMine,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker(tt.loaded)
			if tt.setup != nil {
				tt.setup(t, tr)
			}
			mine, wait, dup := tr.begin(agentA, tt.seq)
			switch tt.want {
			case wantMine:
				if mine == nil || wait != nil || dup {
					t.Fatalf("begin = mine %v, wait %v, dup %v; want mine", mine != nil, wait != nil, dup)
				}
				if isClosed(mine.done) {
					t.Error("a new pending batch is already released")
				}
			case wantWait:
				if mine != nil || wait == nil || dup {
					t.Fatalf("begin = mine %v, wait %v, dup %v; want wait", mine != nil, wait != nil, dup)
				}
				if wait.seq != tt.seq {
					t.Errorf("wait.seq = %d, want %d", wait.seq, tt.seq)
				}
			case wantDup:
				if mine != nil || wait != nil || !dup {
					t.Fatalf("begin = mine %v, wait %v, dup %v; want dup", mine != nil, wait != nil, dup)
				}
			}
		})
	}
}

func TestTrackerWaiterSeesOutcome(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{name: "stored", err: nil},
		{name: "failed", err: errIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker(nil)
			p := beginMine(t, tr, agentA, 1)
			_, wait, _ := tr.begin(agentA, 1)
			if wait != p {
				t.Fatal("second begin of an in-flight seq did not return the first pending batch")
			}
			tr.complete([]*pending{p}, tt.err)
			if isClosed(wait.done) {
				t.Fatal("complete woke waiters; only release should")
			}
			release([]*pending{p})
			if !isClosed(wait.done) {
				t.Fatal("release did not wake waiters")
			}
			if !errors.Is(wait.err, tt.err) {
				t.Errorf("wait.err = %v, want %v", wait.err, tt.err)
			}
		})
	}
}

func TestTrackerCommitAdvancesOverStoredPrefix(t *testing.T) {
	tr := newTracker(nil)
	p1 := beginMine(t, tr, agentA, 1)
	p2 := beginMine(t, tr, agentA, 2)
	p3 := beginMine(t, tr, agentA, 3)
	p4 := beginMine(t, tr, agentA, 4)

	steps := []struct {
		name      string
		store     *pending
		committed uint64
	}{
		{name: "3 stored while 1 and 2 in flight", store: p3, committed: 0},
		{name: "2 stored while 1 in flight", store: p2, committed: 0},
		{name: "1 stored releases the prefix up to 3", store: p1, committed: 3},
		{name: "4 stored", store: p4, committed: 4},
	}
	for _, st := range steps {
		store(tr, st.store)
		if got := committedOf(tr, agentA); got != st.committed {
			t.Fatalf("after %s: committed = %d, want %d", st.name, got, st.committed)
		}
	}
	for seq := uint64(1); seq <= 4; seq++ {
		if _, _, dup := tr.begin(agentA, seq); !dup {
			t.Errorf("seq %d after commit: not a dup", seq)
		}
	}
}

func TestTrackerFailedBatchHoldsBackCommit(t *testing.T) {
	tr := newTracker(nil)
	p1 := beginMine(t, tr, agentA, 1)
	p2 := beginMine(t, tr, agentA, 2)
	p3 := beginMine(t, tr, agentA, 3)
	store(tr, p1)
	fail(tr, errIO, p2)
	store(tr, p3)
	if got := committedOf(tr, agentA); got != 1 {
		t.Fatalf("committed = %d with 2 failed, want 1", got)
	}
	// 3 is stored but must not yet be taken for a duplicate: a resend of it
	// waits on the stored outcome instead.
	if mine, wait, dup := tr.begin(agentA, 3); mine != nil || dup || wait != p3 {
		t.Fatalf("resend of stored-but-held seq 3: mine %v, dup %v, wait is p3 %v", mine != nil, dup, wait == p3)
	}
	if wait := p3; !isClosed(wait.done) || wait.err != nil {
		t.Fatalf("stored p3: released %v err %v", isClosed(wait.done), wait.err)
	}

	resend := beginMine(t, tr, agentA, 2)
	if resend == p2 {
		t.Fatal("resend of a failed seq reused the failed pending batch")
	}
	if isClosed(resend.done) {
		t.Fatal("resend's pending batch is already released")
	}
	if _, wait, _ := tr.begin(agentA, 2); wait != resend {
		t.Fatal("a second copy of the resent seq does not wait on the resend")
	}
	store(tr, resend)
	if got := committedOf(tr, agentA); got != 3 {
		t.Fatalf("committed after the resend is stored = %d, want 3", got)
	}
}

func TestTrackerResume(t *testing.T) {
	tests := []struct {
		name      string
		first     uint64
		committed uint64
		dup2      bool // whether seq 2 (failed) is a dup afterwards
	}{
		{name: "first above the failed batch forgets it", first: 3, committed: 3, dup2: true},
		{name: "first far above forgets it", first: 100, committed: 3, dup2: true},
		{name: "first at the failed batch keeps it", first: 2, committed: 1, dup2: false},
		{name: "first below the failed batch keeps it", first: 1, committed: 1, dup2: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker(nil)
			p1 := beginMine(t, tr, agentA, 1)
			p2 := beginMine(t, tr, agentA, 2)
			p3 := beginMine(t, tr, agentA, 3)
			store(tr, p1)
			fail(tr, errIO, p2)
			store(tr, p3)
			tr.takeDirty()

			tr.resume(agentA, tt.first)
			if got := committedOf(tr, agentA); got != tt.committed {
				t.Fatalf("committed = %d, want %d", got, tt.committed)
			}
			d := tr.takeDirty()
			if tt.committed > 1 {
				if want := map[clickhouse.AgentKey]uint64{agentA: tt.committed}; !maps.Equal(d, want) {
					t.Errorf("takeDirty after resume = %v, want %v", d, want)
				}
			} else if d != nil {
				t.Errorf("takeDirty after a resume that advanced nothing = %v, want nil", d)
			}
			_, _, dup := tr.begin(agentA, 2)
			if dup != tt.dup2 {
				t.Errorf("begin(2) dup = %v, want %v", dup, tt.dup2)
			}
		})
	}
}

func TestTrackerResumeKeepsInflight(t *testing.T) {
	tr := newTracker(nil)
	p1 := beginMine(t, tr, agentA, 1) // in flight from an earlier stream
	p2 := beginMine(t, tr, agentA, 2)
	store(tr, p2)
	tr.resume(agentA, 5)
	if got := committedOf(tr, agentA); got != 0 {
		t.Fatalf("committed = %d with 1 still in flight, want 0", got)
	}
	store(tr, p1)
	if got := committedOf(tr, agentA); got != 2 {
		t.Fatalf("committed = %d, want 2", got)
	}
}

func TestTrackerResumeUnknownAgent(t *testing.T) {
	tr := newTracker(nil)
	tr.resume(agentA, 10)
	if got := committedOf(tr, agentA); got != 0 {
		t.Fatalf("committed = %d, want 0", got)
	}
	if d := tr.takeDirty(); d != nil {
		t.Fatalf("takeDirty = %v, want nil", d)
	}
	beginMine(t, tr, agentA, 10)
}

func TestTrackerGapsInSeq(t *testing.T) {
	tr := newTracker(nil)
	p9 := beginMine(t, tr, agentA, 9)
	p5 := beginMine(t, tr, agentA, 5)
	store(tr, p9)
	if got := committedOf(tr, agentA); got != 0 {
		t.Fatalf("committed = %d with 5 in flight, want 0", got)
	}
	store(tr, p5)
	if got := committedOf(tr, agentA); got != 9 {
		t.Fatalf("committed = %d, want 9", got)
	}
	for _, seq := range []uint64{5, 6, 8, 9} {
		if _, _, dup := tr.begin(agentA, seq); !dup {
			t.Errorf("seq %d at or below committed 9 is not a dup", seq)
		}
	}
	beginMine(t, tr, agentA, 12)
}

func TestTrackerLoadedProgress(t *testing.T) {
	tr := newTracker(map[clickhouse.AgentKey]uint64{agentA: 41, agentB: 7})
	if d := tr.takeDirty(); d != nil {
		t.Fatalf("loaded progress is dirty: %v", d)
	}
	store(tr, beginMine(t, tr, agentA, 42))
	if got := committedOf(tr, agentA); got != 42 {
		t.Fatalf("committed A = %d, want 42", got)
	}
	if got := committedOf(tr, agentB); got != 7 {
		t.Fatalf("committed B = %d, want 7", got)
	}
}

func TestTrackerDirty(t *testing.T) {
	tr := newTracker(nil)
	if d := tr.takeDirty(); d != nil {
		t.Fatalf("fresh tracker dirty = %v", d)
	}
	store(tr, beginMine(t, tr, agentA, 1))
	store(tr, beginMine(t, tr, agentB, 4))
	d := tr.takeDirty()
	if want := map[clickhouse.AgentKey]uint64{agentA: 1, agentB: 4}; !maps.Equal(d, want) {
		t.Fatalf("takeDirty = %v, want %v", d, want)
	}
	if d := tr.takeDirty(); d != nil {
		t.Fatalf("second takeDirty = %v, want nil", d)
	}

	// A failed batch and a held-back stored batch change nothing.
	p2 := beginMine(t, tr, agentA, 2)
	p3 := beginMine(t, tr, agentA, 3)
	fail(tr, errIO, p2)
	store(tr, p3)
	if d := tr.takeDirty(); d != nil {
		t.Fatalf("takeDirty after no advance = %v, want nil", d)
	}

	// Restoring an older value than one recorded since keeps the newer.
	store(tr, beginMine(t, tr, agentB, 5))
	newer := tr.takeDirty()
	store(tr, beginMine(t, tr, agentB, 6))
	tr.restoreDirty(newer) // {B:5}, older than the dirty 6
	tr.restoreDirty(map[clickhouse.AgentKey]uint64{agentA: 1})
	d = tr.takeDirty()
	if want := map[clickhouse.AgentKey]uint64{agentA: 1, agentB: 6}; !maps.Equal(d, want) {
		t.Fatalf("takeDirty after restore = %v, want %v", d, want)
	}
	tr.restoreDirty(d)
	if got := tr.takeDirty(); !maps.Equal(got, d) {
		t.Fatalf("takeDirty after restoring everything = %v, want %v", got, d)
	}
}

// TestTrackerConcurrent has many goroutines race to store every seq of
// several agents, failing some attempts; each agent must end committed at
// its last seq. Run it with -race.
func TestTrackerConcurrent(t *testing.T) {
	const (
		agents  = 4
		seqs    = 300
		workers = 16
	)
	keys := make([]clickhouse.AgentKey, agents)
	for i := range keys {
		keys[i] = clickhouse.AgentKey{Tenant: "t", AgentID: string(rune('a' + i))}
	}
	type job struct {
		k   clickhouse.AgentKey
		seq uint64
	}
	var jobs []job
	for _, k := range keys {
		for seq := uint64(1); seq <= seqs; seq++ {
			// Every seq is sent twice, as by an agent resending after a
			// lost ack, so that copies race.
			jobs = append(jobs, job{k, seq}, job{k, seq})
		}
	}
	rand.Shuffle(len(jobs), func(i, j int) { jobs[i], jobs[j] = jobs[j], jobs[i] })
	ch := make(chan job)
	tr := newTracker(nil)
	var wg sync.WaitGroup
	for w := range workers {
		rng := rand.New(rand.NewPCG(uint64(w), 1))
		wg.Go(func() {
			for j := range ch {
				for {
					mine, wait, dup := tr.begin(j.k, j.seq)
					if dup {
						break
					}
					if wait != nil {
						<-wait.done
						if wait.err == nil {
							break
						}
						continue // the other copy failed: resend
					}
					var err error
					if rng.IntN(5) == 0 {
						err = errIO
					}
					tr.complete([]*pending{mine}, err)
					tr.takeDirty()
					release([]*pending{mine})
					if err == nil {
						break
					}
				}
			}
		})
	}
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	wg.Wait()
	for _, k := range keys {
		if got := committedOf(tr, k); got != seqs {
			t.Errorf("agent %s: committed = %d, want %d", k.AgentID, got, seqs)
		}
		tr.mu.Lock()
		left := len(tr.agents[k].pending)
		tr.mu.Unlock()
		if left != 0 {
			t.Errorf("agent %s: %d batches still pending", k.AgentID, left)
		}
	}
}
