package ingest

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"

	"github.com/bureauhub/bureauhub/hub/auth"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
)

// fakeStore records blocks and progress. Hooks, when set, decide each
// call's error; they run without the lock held and may block.
type fakeStore struct {
	writeBlock    func(call int, b *clickhouse.Block) error
	writeProgress func(call int, p map[clickhouse.AgentKey]uint64) error

	mu            sync.Mutex
	blockCalls    int
	blocks        []clickhouse.Block // successful writes, deep copies
	progressCalls int
	progress      []map[clickhouse.AgentKey]uint64 // successful writes
	changed       chan struct{}                    // closed and replaced on every call
}

var _ Store = (*fakeStore)(nil)

func newFakeStore() *fakeStore { return &fakeStore{changed: make(chan struct{})} }

func (f *fakeStore) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeStore) WriteBlock(_ context.Context, b *clickhouse.Block) error {
	f.mu.Lock()
	call := f.blockCalls
	f.blockCalls++
	f.mu.Unlock()
	var err error
	if f.writeBlock != nil {
		err = f.writeBlock(call, b)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		f.blocks = append(f.blocks, copyBlock(b))
	}
	f.notifyLocked()
	return err
}

func (f *fakeStore) WriteProgress(_ context.Context, p map[clickhouse.AgentKey]uint64) error {
	f.mu.Lock()
	call := f.progressCalls
	f.progressCalls++
	f.mu.Unlock()
	var err error
	if f.writeProgress != nil {
		err = f.writeProgress(call, p)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		f.progress = append(f.progress, maps.Clone(p))
	}
	f.notifyLocked()
	return err
}

func (f *fakeStore) LoadProgress(context.Context) (map[clickhouse.AgentKey]uint64, error) {
	return map[clickhouse.AgentKey]uint64{}, nil
}

// HasSample looks the sample up in the successful writes.
func (f *fakeStore) HasSample(_ context.Context, tenant string, fp uint64, ts int64) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.blocks {
		for i := range b.Fingerprints {
			if b.Fingerprints[i] == fp && b.Timestamps[i] == ts && b.Tenants[i] == tenant {
				return true, nil
			}
		}
	}
	return false, nil
}

// snapshot returns the successful writes so far.
func (f *fakeStore) snapshot() ([]clickhouse.Block, []map[clickhouse.AgentKey]uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]clickhouse.Block(nil), f.blocks...), append([]map[clickhouse.AgentKey]uint64(nil), f.progress...)
}

// waitUntil blocks until cond holds for the store's state, failing tb at
// the deadline.
func (f *fakeStore) waitUntil(tb testing.TB, what string, cond func(blocks []clickhouse.Block, progress []map[clickhouse.AgentKey]uint64) bool) {
	tb.Helper()
	deadline := newDeadline(tb)
	for {
		f.mu.Lock()
		ok := cond(f.blocks, f.progress)
		ch := f.changed
		f.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			tb.Fatalf("timed out waiting until %s", what)
		}
	}
}

func copyBlock(b *clickhouse.Block) clickhouse.Block {
	return clickhouse.Block{
		Series:       append([]clickhouse.SeriesRow(nil), b.Series...),
		Tenants:      append([]string(nil), b.Tenants...),
		Fingerprints: append([]uint64(nil), b.Fingerprints...),
		Timestamps:   append([]int64(nil), b.Timestamps...),
		Values:       append([]float64(nil), b.Values...),
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newTestService builds a Service the way the hub does, with cfg defaulted.
func newTestService(tb testing.TB, cfg Config) (*Service, *prometheus.Registry) {
	tb.Helper()
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		tb.Fatalf("config: %v", err)
	}
	authn, err := auth.New([]auth.TenantConfig{{Name: "t", Token: "0123456789abcdef0123"}})
	if err != nil {
		tb.Fatalf("auth.New: %v", err)
	}
	reg := prometheus.NewRegistry()
	s, err := New(cfg, newFakeStore(), authn, discardLogger(), reg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return s, reg
}

// encodeWriteRequest returns the snappy-compressed protobuf of wr.
func encodeWriteRequest(tb testing.TB, wr *prompb.WriteRequest) []byte {
	tb.Helper()
	raw, err := wr.Marshal()
	if err != nil {
		tb.Fatalf("marshal: %v", err)
	}
	return snappy.Encode(nil, raw)
}

// testTimeout bounds every wait in these tests; reaching it is a failure.
const testTimeout = 10 * time.Second

func newDeadline(testing.TB) <-chan time.Time { return time.After(testTimeout) }

// eventually polls cond until it holds, failing tb at the deadline. It is
// for state that has no channel to wait on (metrics, a goroutine parked on
// a sync.Cond).
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// recv waits for a value on ch, failing tb at the deadline.
func recv[T any](tb testing.TB, what string, ch <-chan T) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		tb.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

func snappyOf(raw []byte) []byte { return snappy.Encode(nil, raw) }
