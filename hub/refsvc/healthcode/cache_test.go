package healthcode

import (
	"net/http"
	"sync"
	"testing"
	"time"
)

// fakeWall is a settable wall clock for cache TTLs.
type fakeWall struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeWall) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeWall) advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// TestCacheMetrics drives one replica's cache through hits, misses, LRU
// evictions and TTL expiry and checks what its metrics say after each step.
func TestCacheMetrics(t *testing.T) {
	cfg := testConfig(t)
	cfg.Cache.Size = 2 * cacheShards // two people per shard
	cfg.Cache.TTL = time.Minute
	svc, _ := newTestService(t, cfg)
	wall := &fakeWall{t: time.Unix(1_000_000, 0)}
	svc.wallNow = wall.now
	rp := startReplica(t, svc, "healthcode-0")

	type counts struct{ hit, miss, capacity, expired, entries float64 }
	steps := []struct {
		name    string
		scan    []int // people scanned, in order
		advance time.Duration
		want    counts // totals after the step
	}{
		{"first scans miss", []int{0, 1, 2, 3}, 0, counts{0, 4, 0, 0, 4}},
		{"rescans hit", []int{0, 1, 2, 3, 0}, 0, counts{5, 4, 0, 0, 4}},
		// 0, 16 and 32 share shard 0, which holds two: 16 and 32 push out
		// the least recently used, 0.
		{"third person of a shard evicts the oldest", []int{16, 32}, 0, counts{5, 6, 1, 0, 5}},
		{"evicted person misses", []int{0}, 0, counts{5, 7, 2, 0, 5}},
		{"just before the TTL still hits", []int{1}, time.Minute - time.Nanosecond, counts{6, 7, 2, 0, 5}},
		{"at the TTL misses", []int{1}, time.Nanosecond, counts{6, 8, 2, 1, 5}},
		{"unknown people do not count", []int{cfg.Population, cfg.Population + 5}, 0, counts{6, 8, 2, 1, 5}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			wall.advance(s.advance)
			for _, i := range s.scan {
				want := http.StatusOK
				if i >= cfg.Population {
					want = http.StatusNotFound
				}
				if got := rp.scan(t, PersonID(i)); got.status != want {
					t.Fatalf("scan %d: %d %s", i, got.status, got.raw)
				}
			}
			got := counts{
				hit:      metric(t, rp.reg, "healthcode_cache_requests_total", "result", "hit"),
				miss:     metric(t, rp.reg, "healthcode_cache_requests_total", "result", "miss"),
				capacity: metric(t, rp.reg, "healthcode_cache_evictions_total", "reason", "capacity"),
				expired:  metric(t, rp.reg, "healthcode_cache_evictions_total", "reason", "expired"),
				entries:  metric(t, rp.reg, "healthcode_cache_entries"),
			}
			if got != s.want {
				t.Fatalf("got %+v, want %+v", got, s.want)
			}
		})
	}
}

// TestCacheFillAfterInvalidation is the race the epochs exist for: a fill
// that read the store before an update must not cache what it read once
// the update has invalidated the cache.
func TestCacheFillAfterInvalidation(t *testing.T) {
	old := &record{testTime: testSeedTime}
	tests := []struct {
		name       string
		invalidate int // person invalidated between epoch and fill; -1 for none
		wantCached bool
	}{
		{"no update", -1, true},
		{"same person updated", 7, false},
		{"other person of the shard updated", 7 + cacheShards, false},
		{"person of another shard updated", 8, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCache(64, time.Hour, time.Now)
			epoch := c.epoch(7)
			if tt.invalidate >= 0 {
				c.invalidate(tt.invalidate)
			}
			c.fill(7, old, epoch)
			if _, ok := c.get(7); ok != tt.wantCached {
				t.Fatalf("cached = %v, want %v", ok, tt.wantCached)
			}
		})
	}
}
