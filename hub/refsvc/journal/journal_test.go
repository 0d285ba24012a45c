package journal

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bureauhub/bureauhub/hub/refsvc"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chtest"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func load(t *testing.T, j *Journal) map[string]refsvc.Change {
	t.Helper()
	out := map[string]refsvc.Change{}
	if _, err := j.Load(context.Background(), func(c refsvc.Change) error {
		out[c.Bucket+"/"+string(c.Key)] = c
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func run(t *testing.T, j *Journal) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = j.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func put(b, k, v string) refsvc.Change {
	return refsvc.Change{Bucket: b, Key: []byte(k), Value: []byte(v)}
}

// TestJournalRoundTrip: what one hub stores, another hub loads, latest
// change per key, deletions included; the loader's later changes win over
// the first hub's even when its clock is behind.
func TestJournalRoundTrip(t *testing.T) {
	db := chtest.NewDatabase(t)
	conn := chtest.Open(t, db)
	ctx := context.Background()
	for range 2 {
		if err := Migrate(ctx, conn, db); err != nil {
			t.Fatal(err)
		}
	}
	m := NewMetrics(prometheus.NewRegistry())
	a := New(conn, db, "booking", "hub-1", Config{}, slog.New(slog.DiscardHandler), m)
	run(t, a)
	// Concurrent transactions: each waits for its own changes.
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	var mu sync.Mutex
	for i := range 50 {
		wg.Go(func() {
			mu.Lock() // commit order = enqueue order, as durable.DB holds it
			tk, err := a.Enqueue([]refsvc.Change{put("bookings", fmt.Sprintf("b%02d", i), "held"), put("slots", fmt.Sprintf("s%02d", i), fmt.Sprintf("b%02d", i))})
			mu.Unlock()
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err = a.Wait(ctx, tk)
				cancel()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Later changes of the same keys: a payment and a cancellation.
	tk, err := a.Enqueue([]refsvc.Change{put("bookings", "b07", "confirmed"), {Bucket: "slots", Key: []byte("s08"), Deleted: true}, put("bookings", "b08", "cancelled")})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Wait(ctx, tk); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.written.WithLabelValues("booking")); got != 103 {
		t.Errorf("changes written = %v, want 103", got)
	}

	// Another hub, whose clock is an hour behind, takes over.
	b := New(conn, db, "booking", "hub-2", Config{}, slog.New(slog.DiscardHandler), m)
	b.now = func() time.Time { return time.Now().Add(-time.Hour) }
	got := load(t, b)
	if len(got) != 100 {
		t.Fatalf("loaded %d keys, want 100", len(got))
	}
	if c := got["bookings/b07"]; string(c.Value) != "confirmed" || c.Deleted {
		t.Errorf("b07 = %+v, want confirmed", c)
	}
	if c := got["slots/s08"]; !c.Deleted {
		t.Errorf("s08 = %+v, want deleted", c)
	}
	if c := got["bookings/b08"]; string(c.Value) != "cancelled" {
		t.Errorf("b08 = %+v, want cancelled", c)
	}
	run(t, b)
	tk, err = b.Enqueue([]refsvc.Change{put("bookings", "b07", "cancelled")})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Wait(ctx, tk); err != nil {
		t.Fatal(err)
	}
	// A third load sees hub-2's change although its clock was behind.
	c := New(conn, db, "booking", "hub-3", Config{}, slog.New(slog.DiscardHandler), m)
	if v := string(load(t, c)["bookings/b07"].Value); v != "cancelled" {
		t.Errorf("after hub-2's change b07 = %q, want cancelled (hub-2's version must exceed hub-1's)", v)
	}
	// Another service's state is not mixed in.
	other := New(conn, db, "healthcode", "hub-1", Config{}, slog.New(slog.DiscardHandler), m)
	if n := len(load(t, other)); n != 0 {
		t.Errorf("healthcode loaded %d of booking's keys", n)
	}
}

// TestJournalOutage: while ClickHouse refuses the INSERTs, Wait fails with
// the reason; the queue is bounded and a full queue refuses at once
// (counted); once ClickHouse accepts again, everything queued is stored
// and waiters return.
func TestJournalOutage(t *testing.T) {
	db := chtest.NewDatabase(t)
	conn := chtest.Open(t, db)
	ctx := context.Background()
	// No table yet: every INSERT fails.
	m := NewMetrics(prometheus.NewRegistry())
	j := New(conn, db, "booking", "hub-1", Config{MaxQueued: 3}, slog.New(slog.DiscardHandler), m)
	run(t, j)
	tk, err := j.Enqueue([]refsvc.Change{put("bookings", "b1", "held"), put("slots", "s1", "b1")})
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = j.Wait(short, tk)
	cancel()
	if err == nil || !strings.Contains(err.Error(), Table) {
		t.Fatalf("Wait during the outage = %v, want an error naming the table", err)
	}
	if _, err := j.Enqueue([]refsvc.Change{put("bookings", "b2", "held"), put("slots", "s2", "b2")}); err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("Enqueue past max_queued = %v, want a full-queue error", err)
	}
	if got := testutil.ToFloat64(m.refused.WithLabelValues("booking")); got != 1 {
		t.Errorf("refused = %v, want 1", got)
	}
	if err := Migrate(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	long, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := j.Wait(long, tk); err != nil {
		t.Fatalf("Wait after ClickHouse recovered: %v", err)
	}
	got := load(t, New(conn, db, "booking", "hub-2", Config{}, slog.New(slog.DiscardHandler), m))
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if strings.Join(keys, ",") != "bookings/b1,slots/s1" {
		t.Errorf("stored keys %v, want the queued transaction's only", keys)
	}
	if testutil.ToFloat64(m.failed.WithLabelValues("booking")) == 0 {
		t.Error("no failed INSERT counted during the outage")
	}
}
