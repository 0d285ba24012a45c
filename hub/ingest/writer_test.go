package ingest

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
)

// writerRig is a writer over a fakeStore and a fresh tracker.
type writerRig struct {
	w      *writer
	tr     *tracker
	st     *fakeStore
	m      *metrics
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newWriterRig(tb testing.TB, cfg Config, st *fakeStore) *writerRig {
	tb.Helper()
	m, err := newMetrics(prometheus.NewRegistry(), cfg.QueueSamples)
	if err != nil {
		tb.Fatalf("newMetrics: %v", err)
	}
	r := &writerRig{tr: newTracker(nil), st: st, m: m}
	r.w = newWriter(&cfg, st, r.tr, discardLogger(), m)
	r.ctx, r.cancel = context.WithCancel(context.Background())
	tb.Cleanup(func() {
		r.w.close()
		r.cancel()
		r.waitFlushers(tb)
	})
	return r
}

// enqueueTracked enqueues an agent's batch, tracked by p.
func enqueueTracked(ctx context.Context, w *writer, it *item, p *pending) error {
	return w.enqueue(ctx, it, p, nil)
}

// start runs n flushers.
func (r *writerRig) start(n int) {
	for range n {
		r.wg.Go(func() { r.w.run(r.ctx) })
	}
}

// waitFlushers waits for every flusher to return.
func (r *writerRig) waitFlushers(tb testing.TB) {
	tb.Helper()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	recv(tb, "flushers to return", done)
}

// enqueue registers (k, seq) with the tracker and enqueues an item of n
// samples for it.
func (r *writerRig) enqueue(tb testing.TB, k clickhouse.AgentKey, seq uint64, n int) (*item, *pending) {
	tb.Helper()
	it, p := r.prepare(tb, k, seq, n)
	if err := enqueueTracked(context.Background(), r.w, it, p); err != nil {
		tb.Fatalf("enqueue seq %d: %v", seq, err)
	}
	return it, p
}

func (r *writerRig) prepare(tb testing.TB, k clickhouse.AgentKey, seq uint64, n int) (*item, *pending) {
	tb.Helper()
	return testItem(k.Tenant, seq, n), beginMine(tb, r.tr, k, seq)
}

// testItem has n samples whose fingerprints and timestamps encode seq, and
// one series row.
func testItem(tenant string, seq uint64, n int) *item {
	it := &item{tenant: tenant, samples: n}
	for i := range n {
		it.fps = append(it.fps, seq<<16|uint64(i))
		it.ts = append(it.ts, int64(seq)*1000+int64(i))
		it.vals = append(it.vals, float64(i))
	}
	it.series = []clickhouse.SeriesRow{{Tenant: tenant, Fingerprint: seq << 16, MetricName: "m"}}
	return it
}

func blockSizes(bs []clickhouse.Block) []int {
	var n []int
	for _, b := range bs {
		n = append(n, b.Len())
	}
	return n
}

func totalSamples(bs []clickhouse.Block) int {
	n := 0
	for _, b := range bs {
		n += b.Len()
	}
	return n
}

// waitReleased waits for p's outcome.
func waitReleased(tb testing.TB, p *pending) error {
	tb.Helper()
	recv(tb, "pending batch to be released", p.done)
	return p.err
}

func TestWriterFlushBySize(t *testing.T) {
	tests := []struct {
		name  string
		items []int // samples per item, enqueued before flushers start
		flush int
		want  []int // samples per block, before close drains the rest
		rest  []int // blocks written on close
	}{
		{name: "exactly one flush", items: []int{5, 5}, flush: 10, want: []int{10}},
		{name: "whole items up to the flush size", items: []int{4, 4, 4}, flush: 10, want: []int{8}, rest: []int{4}},
		{name: "item larger than a flush goes alone", items: []int{15, 2}, flush: 10, want: []int{15}, rest: []int{2}},
		{name: "two flushes", items: []int{6, 6, 6, 6}, flush: 10, want: []int{6, 6, 6}, rest: []int{6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{QueueSamples: 1000, FlushSamples: tt.flush, FlushInterval: time.Hour}
			r := newWriterRig(t, cfg, newFakeStore())
			var its []*item
			for i, n := range tt.items {
				it, _ := r.enqueue(t, agentA, uint64(i+1), n)
				its = append(its, it)
			}
			r.start(1)
			r.st.waitUntil(t, "size-triggered flushes are written", func(bs []clickhouse.Block, _ []map[clickhouse.AgentKey]uint64) bool {
				return len(bs) >= len(tt.want)
			})
			r.w.close()
			r.waitFlushers(t)
			blocks, _ := r.st.snapshot()
			if got, want := blockSizes(blocks), append(slices.Clone(tt.want), tt.rest...); !slices.Equal(got, want) {
				t.Fatalf("block sizes = %v, want %v", got, want)
			}
			// Blocks hold the items' columns in order.
			var fps []uint64
			var tss []int64
			var rows []clickhouse.SeriesRow
			for _, it := range its {
				fps = append(fps, it.fps...)
				tss = append(tss, it.ts...)
				rows = append(rows, it.series...)
			}
			var gotFPs []uint64
			var gotTS []int64
			var gotRows []clickhouse.SeriesRow
			for _, b := range blocks {
				if len(b.Tenants) != b.Len() || len(b.Fingerprints) != b.Len() || len(b.Values) != b.Len() {
					t.Fatalf("block columns differ in length: %d tenants, %d fps, %d ts, %d values",
						len(b.Tenants), len(b.Fingerprints), b.Len(), len(b.Values))
				}
				for _, tn := range b.Tenants {
					if tn != agentA.Tenant {
						t.Fatalf("block tenant %q, want %q", tn, agentA.Tenant)
					}
				}
				gotFPs = append(gotFPs, b.Fingerprints...)
				gotTS = append(gotTS, b.Timestamps...)
				gotRows = append(gotRows, b.Series...)
			}
			if !slices.Equal(gotFPs, fps) || !slices.Equal(gotTS, tss) {
				t.Errorf("blocks' samples differ from the items'")
			}
			if len(gotRows) != len(rows) {
				t.Errorf("blocks hold %d series rows, want %d", len(gotRows), len(rows))
			}
		})
	}
}

func TestWriterFlushByInterval(t *testing.T) {
	const interval = 30 * time.Millisecond
	cfg := Config{QueueSamples: 1000, FlushSamples: 1000, FlushInterval: interval}
	r := newWriterRig(t, cfg, newFakeStore())
	r.start(2)
	for round := uint64(1); round <= 3; round++ {
		start := time.Now()
		_, p := r.enqueue(t, agentA, round, 3)
		if err := waitReleased(t, p); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if elapsed := time.Since(start); elapsed < interval {
			t.Errorf("round %d: a 3-sample item was flushed after %v, before the %v interval", round, elapsed, interval)
		}
	}
	blocks, _ := r.st.snapshot()
	if got := blockSizes(blocks); !slices.Equal(got, []int{3, 3, 3}) {
		t.Errorf("block sizes = %v, want [3 3 3]", got)
	}
}

// gate is a WriteBlock hook that blocks every call until opened, reporting
// each entry on entered.
type gate struct {
	entered chan int
	open    chan struct{}
}

func newGate() *gate { return &gate{entered: make(chan int, 100), open: make(chan struct{})} }

func (g *gate) writeBlock(_ int, b *clickhouse.Block) error {
	g.entered <- b.Len()
	<-g.open
	return nil
}

func TestWriterBackpressure(t *testing.T) {
	tests := []struct {
		name    string
		unblock func(r *writerRig, g *gate, cancelEnqueue context.CancelFunc)
		wantErr error
	}{
		{name: "a completed flush frees room", unblock: func(_ *writerRig, g *gate, _ context.CancelFunc) { close(g.open) }},
		{name: "the stream's context ends", unblock: func(_ *writerRig, _ *gate, c context.CancelFunc) { c() }, wantErr: context.Canceled},
		{name: "the writer closes", unblock: func(r *writerRig, _ *gate, _ context.CancelFunc) { r.w.close() }, wantErr: errStopping},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGate()
			st := newFakeStore()
			st.writeBlock = g.writeBlock
			cfg := Config{QueueSamples: 10, FlushSamples: 10, FlushInterval: time.Hour}
			r := newWriterRig(t, cfg, st)
			t.Cleanup(func() {
				select {
				case <-g.open:
				default:
					close(g.open)
				}
			})
			r.start(1)
			_, p1 := r.enqueue(t, agentA, 1, 10)
			if n := recv(t, "the first flush to reach the store", g.entered); n != 10 {
				t.Fatalf("first block has %d samples, want 10", n)
			}
			// The flush has taken the item but not written it: the queue
			// still counts its samples, so there is no room for more.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			it2, p2 := r.prepare(t, agentA, 2, 5)
			enqueued := make(chan error, 1)
			go func() { enqueued <- enqueueTracked(ctx, r.w, it2, p2) }()
			eventually(t, "enqueue waits for room", func() bool { return testutil.ToFloat64(r.m.backpressureWaits) >= 1 })
			select {
			case err := <-enqueued:
				t.Fatalf("enqueue into a full queue returned %v without waiting", err)
			default:
			}
			if isClosed(p1.done) {
				t.Fatal("batch 1 released while its write is blocked")
			}
			tt.unblock(r, g, cancel)
			if err := recv(t, "enqueue to return", enqueued); !errors.Is(err, tt.wantErr) {
				t.Fatalf("enqueue = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestWriterOversizedItemEntersEmptyQueue(t *testing.T) {
	cfg := Config{QueueSamples: 10, FlushSamples: 10, FlushInterval: time.Hour}
	r := newWriterRig(t, cfg, newFakeStore())
	// No flusher runs, so a wait here would never end.
	done := make(chan error, 1)
	it, p := r.prepare(t, agentA, 1, 25)
	go func() { done <- enqueueTracked(context.Background(), r.w, it, p) }()
	if err := recv(t, "enqueue of an oversized item into an empty queue", done); err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	if got := testutil.ToFloat64(r.m.queueSamples); got != 25 {
		t.Errorf("queue gauge = %v, want 25", got)
	}
}

func TestWriterRetriesUntilStored(t *testing.T) {
	const failures = 2
	st := newFakeStore()
	var p *pending
	ready := make(chan struct{})
	var violations atomic.Int32
	st.writeBlock = func(call int, _ *clickhouse.Block) error {
		<-ready
		if isClosed(p.done) {
			violations.Add(1)
		}
		if call < failures {
			return errIO
		}
		return nil
	}
	st.writeProgress = func(int, map[clickhouse.AgentKey]uint64) error {
		if st.blockCallsSoFar() <= failures {
			violations.Add(1)
		}
		return nil
	}
	cfg := Config{QueueSamples: 100, FlushSamples: 5, FlushInterval: time.Hour}
	r := newWriterRig(t, cfg, st)
	_, p = r.enqueue(t, agentA, 1, 5)
	close(ready)
	r.start(1)
	if err := waitReleased(t, p); err != nil {
		t.Fatalf("batch outcome: %v", err)
	}
	if n := violations.Load(); n != 0 {
		t.Errorf("%d times the batch was released or progress written before the block was stored", n)
	}
	if got := testutil.ToFloat64(r.m.writeRetries); got != failures {
		t.Errorf("write retries = %v, want %d", got, failures)
	}
	if got := committedOf(r.tr, agentA); got != 1 {
		t.Errorf("committed = %d, want 1", got)
	}
	blocks, progress := st.snapshot()
	if len(blocks) != 1 || blocks[0].Len() != 5 {
		t.Errorf("stored blocks = %v, want one of 5 samples", blockSizes(blocks))
	}
	if want := []map[clickhouse.AgentKey]uint64{{agentA: 1}}; !slices.EqualFunc(progress, want, maps.Equal) {
		t.Errorf("progress writes = %v, want %v", progress, want)
	}
	if got := testutil.ToFloat64(r.m.written.WithLabelValues(agentA.Tenant)); got != 5 {
		t.Errorf("written samples = %v, want 5", got)
	}
	eventually(t, "the queue gauge drops to 0", func() bool { return testutil.ToFloat64(r.m.queueSamples) == 0 })
}

func (f *fakeStore) blockCallsSoFar() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.blockCalls
}

func TestWriterAbandonsOnStop(t *testing.T) {
	st := newFakeStore()
	st.writeBlock = func(int, *clickhouse.Block) error { return errIO }
	cfg := Config{QueueSamples: 100, FlushSamples: 5, FlushInterval: time.Hour}
	r := newWriterRig(t, cfg, st)
	r.start(1)
	_, p := r.enqueue(t, agentA, 1, 5)
	eventually(t, "the write is tried", func() bool { return st.blockCallsSoFar() >= 1 })
	r.cancel()
	if err := waitReleased(t, p); !errors.Is(err, errStopping) {
		t.Fatalf("abandoned batch outcome = %v, want %v", err, errStopping)
	}
	if got := committedOf(r.tr, agentA); got != 0 {
		t.Errorf("committed = %d after an abandoned write, want 0", got)
	}
	if _, progress := st.snapshot(); len(progress) != 0 {
		t.Errorf("progress written for an abandoned write: %v", progress)
	}
	// The agent's resend is registered afresh.
	beginMine(t, r.tr, agentA, 1)
}

func TestWriterCloseDrains(t *testing.T) {
	cfg := Config{QueueSamples: 1000, FlushSamples: 1000, FlushInterval: time.Hour}
	r := newWriterRig(t, cfg, newFakeStore())
	r.start(2)
	var ps []*pending
	for seq := uint64(1); seq <= 5; seq++ {
		_, p := r.enqueue(t, agentA, seq, int(seq))
		ps = append(ps, p)
	}
	r.w.close()
	r.waitFlushers(t)
	for _, p := range ps {
		if !isClosed(p.done) || p.err != nil {
			t.Errorf("seq %d after close: released %v, err %v", p.seq, isClosed(p.done), p.err)
		}
	}
	blocks, progress := r.st.snapshot()
	if got := totalSamples(blocks); got != 15 {
		t.Errorf("stored %d samples, want 15", got)
	}
	if got := committedOf(r.tr, agentA); got != 5 {
		t.Errorf("committed = %d, want 5", got)
	}
	if len(progress) == 0 || progress[len(progress)-1][agentA] != 5 {
		t.Errorf("progress writes = %v, want the last to commit 5", progress)
	}
	it, p := r.prepare(t, agentA, 6, 1)
	if err := enqueueTracked(context.Background(), r.w, it, p); !errors.Is(err, errStopping) {
		t.Errorf("enqueue after close = %v, want %v", err, errStopping)
	}
}

func TestWriterProgressRetriedWithNextFlush(t *testing.T) {
	st := newFakeStore()
	st.writeProgress = func(call int, _ map[clickhouse.AgentKey]uint64) error {
		if call == 0 {
			return errIO
		}
		return nil
	}
	cfg := Config{QueueSamples: 100, FlushSamples: 1, FlushInterval: time.Hour}
	r := newWriterRig(t, cfg, st)
	r.start(1)
	_, p := r.enqueue(t, agentA, 1, 1)
	if err := waitReleased(t, p); err != nil {
		t.Fatal(err)
	}
	_, p = r.enqueue(t, agentB, 1, 1)
	if err := waitReleased(t, p); err != nil {
		t.Fatal(err)
	}
	_, progress := st.snapshot()
	if want := []map[clickhouse.AgentKey]uint64{{agentA: 1, agentB: 1}}; !slices.EqualFunc(progress, want, maps.Equal) {
		t.Errorf("progress writes = %v, want %v", progress, want)
	}
}

func TestWriterConcurrent(t *testing.T) {
	const (
		agents  = 4
		batches = 50
	)
	cfg := Config{QueueSamples: 40, FlushSamples: 16, FlushInterval: 2 * time.Millisecond}
	r := newWriterRig(t, cfg, newFakeStore())
	r.start(3)
	var wg sync.WaitGroup
	want := 0
	for a := range agents {
		k := clickhouse.AgentKey{Tenant: "t", AgentID: string(rune('a' + a))}
		for seq := uint64(1); seq <= batches; seq++ {
			want += int(seq%7) + 1
		}
		wg.Go(func() {
			// Not t.Fatal: this runs outside the test's goroutine.
			var ps []*pending
			for seq := uint64(1); seq <= batches; seq++ {
				p, _, _ := r.tr.begin(k, seq)
				if p == nil {
					t.Errorf("%s seq %d: not new to the tracker", k.AgentID, seq)
					return
				}
				if err := enqueueTracked(context.Background(), r.w, testItem(k.Tenant, seq, int(seq%7)+1), p); err != nil {
					t.Errorf("%s seq %d: enqueue: %v", k.AgentID, seq, err)
					return
				}
				ps = append(ps, p)
			}
			for _, p := range ps {
				select {
				case <-p.done:
				case <-time.After(testTimeout):
					t.Errorf("%s seq %d: not released", k.AgentID, p.seq)
					return
				}
				if p.err != nil {
					t.Errorf("%s seq %d: %v", k.AgentID, p.seq, p.err)
				}
			}
			if got := committedOf(r.tr, k); got != batches {
				t.Errorf("%s: committed = %d, want %d", k.AgentID, got, batches)
			}
		})
	}
	wg.Wait()
	blocks, _ := r.st.snapshot()
	if got := totalSamples(blocks); got != want {
		t.Errorf("stored %d samples, want %d", got, want)
	}
	for _, b := range blocks {
		if b.Len() > cfg.FlushSamples {
			t.Errorf("block of %d samples exceeds flush_samples %d though no item does", b.Len(), cfg.FlushSamples)
		}
	}
}

// TestWriterInflightSamplesDoNotTriggerFlush checks that samples already
// taken by one flusher (being written) do not count toward the next flush's
// FlushSamples: otherwise, while one insert is slow, every other flusher
// writes each new item on its own as soon as it arrives.
func TestWriterInflightSamplesDoNotTriggerFlush(t *testing.T) {
	const interval = 100 * time.Millisecond
	st := newFakeStore()
	g := newGate()
	st.writeBlock = func(call int, b *clickhouse.Block) error {
		if call == 0 {
			return g.writeBlock(call, b)
		}
		g.entered <- b.Len()
		return nil
	}
	cfg := Config{QueueSamples: 100, FlushSamples: 10, FlushInterval: interval}
	r := newWriterRig(t, cfg, st)
	t.Cleanup(func() { close(g.open) })
	r.start(2)
	r.enqueue(t, agentA, 1, 10)
	if n := recv(t, "the first flush", g.entered); n != 10 {
		t.Fatalf("first block has %d samples, want 10", n)
	}
	// While those 10 are being written, 3 samples arrive: far from a
	// flush's worth, so they must wait for the interval.
	start := time.Now()
	r.enqueue(t, agentA, 2, 3)
	n := recv(t, "the 3 samples to be flushed", g.entered)
	if elapsed := time.Since(start); elapsed < interval {
		t.Errorf("a %d-sample block was flushed %v after enqueue, before the %v interval, while 10 samples were in flight: "+
			"in-flight samples counted toward flush_samples", n, elapsed, interval)
	}
}

// TestWriterLocalWrites checks items enqueued without a pending batch (the
// hub's own writes): their outcome goes to their done channel, and they
// share blocks with agents' batches without touching the tracker.
func TestWriterLocalWrites(t *testing.T) {
	tests := []struct {
		name    string
		fail    bool // WriteBlock always fails and the writer is stopped
		wantErr error
	}{
		{name: "stored", wantErr: nil},
		{name: "abandoned", fail: true, wantErr: errStopping},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newFakeStore()
			if tt.fail {
				st.writeBlock = func(int, *clickhouse.Block) error { return errIO }
			}
			cfg := Config{QueueSamples: 100, FlushSamples: 5, FlushInterval: time.Hour}
			r := newWriterRig(t, cfg, st)
			_, p := r.enqueue(t, agentA, 1, 2)
			done := make(chan error, 1)
			if err := r.w.enqueue(context.Background(), testItem("local", 0, 3), nil, done); err != nil {
				t.Fatalf("enqueue local: %v", err)
			}
			r.start(1)
			if tt.fail {
				eventually(t, "the write is tried", func() bool { return st.blockCallsSoFar() >= 1 })
				r.cancel()
			}
			if err := recv(t, "the local write's outcome", done); !errors.Is(err, tt.wantErr) {
				t.Fatalf("local write outcome = %v, want %v", err, tt.wantErr)
			}
			if err := waitReleased(t, p); !errors.Is(err, tt.wantErr) {
				t.Fatalf("agent batch outcome = %v, want %v", err, tt.wantErr)
			}
			if tt.fail {
				return
			}
			blocks, progress := st.snapshot()
			if got := blockSizes(blocks); !slices.Equal(got, []int{5}) {
				t.Errorf("block sizes = %v, want [5]", got)
			}
			if want := []string{"t1", "t1", "local", "local", "local"}; !slices.Equal(blocks[0].Tenants, want) {
				t.Errorf("block tenants = %v, want %v", blocks[0].Tenants, want)
			}
			if want := []map[clickhouse.AgentKey]uint64{{agentA: 1}}; !slices.EqualFunc(progress, want, maps.Equal) {
				t.Errorf("progress writes = %v, want %v", progress, want)
			}
		})
	}
}

// TestWriterFlushesLocalWritesAtOnce: a local write's caller (a rule
// evaluation) waits for it, so it is flushed at once instead of after
// FlushInterval or once FlushSamples have gathered.
func TestWriterFlushesLocalWritesAtOnce(t *testing.T) {
	st := newFakeStore()
	r := newWriterRig(t, Config{QueueSamples: 1000, FlushSamples: 1000, FlushInterval: time.Hour}, st)
	r.start(1)
	done := make(chan error, 1)
	if err := r.w.enqueue(context.Background(), testItem("local", 0, 1), nil, done); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, "the local write's outcome", done); err != nil {
		t.Fatalf("local write: %v", err)
	}
	if n := st.blockCallsSoFar(); n != 1 {
		t.Errorf("%d inserts, want 1", n)
	}
}
