package healthcode

import (
	"sync"
	"time"
)

// cacheShards spreads one replica's cache over independent locks.
const cacheShards = 16

// cache is one replica's bounded LRU of people, with a TTL. It is safe for
// concurrent use.
//
// Fills race with invalidations: a scan may read the store just before an
// update commits and insert what it read just after the update has
// invalidated the cache. To rule that out, every shard counts its
// invalidations (epoch); a filler takes the epoch before reading the store
// and fill inserts only if no invalidation of that shard happened since.
type cache struct {
	ttl    time.Duration
	now    func() time.Time // wall clock; replaced in tests
	shards [cacheShards]cacheShard
	// onEvict is called, with no lock held, for each entry dropped for
	// space ("capacity") or age ("expired").
	onEvict func(reason string)
	// onInvalidate is called, with no lock held, for each invalidation.
	onInvalidate func()
}

type cacheShard struct {
	mu    sync.Mutex
	epoch uint64
	size  int // capacity
	items map[int]*cacheEntry
	lru   cacheEntry // sentinel: lru.next is the most recently used
}

type cacheEntry struct {
	key        int
	rec        *record
	expires    time.Time
	prev, next *cacheEntry
}

// newCache builds a cache of size people (at least one per shard) kept for
// ttl on the clock now. The hooks do nothing until set.
func newCache(size int, ttl time.Duration, now func() time.Time) *cache {
	c := &cache{ttl: ttl, now: now, onEvict: func(string) {}, onInvalidate: func() {}}
	per := (size + cacheShards - 1) / cacheShards
	for i := range c.shards {
		s := &c.shards[i]
		s.size = per
		s.items = make(map[int]*cacheEntry)
		s.lru.next, s.lru.prev = &s.lru, &s.lru
	}
	return c
}

func (c *cache) shard(k int) *cacheShard { return &c.shards[uint(k)%cacheShards] }

// get returns person k if cached and not expired.
func (c *cache) get(k int) (*record, bool) {
	s := c.shard(k)
	s.mu.Lock()
	e, ok := s.items[k]
	if !ok {
		s.mu.Unlock()
		return nil, false
	}
	if !c.now().Before(e.expires) {
		s.remove(e)
		s.mu.Unlock()
		c.onEvict("expired")
		return nil, false
	}
	s.unlink(e)
	s.pushFront(e)
	s.mu.Unlock()
	return e.rec, true
}

// epoch is the token a filler takes before reading person k from the store.
func (c *cache) epoch(k int) uint64 {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch
}

// fill caches person k as read from the store after epoch(k) returned
// epoch, unless the shard was invalidated meanwhile (what was read may
// predate the update).
func (c *cache) fill(k int, r *record, epoch uint64) {
	s := c.shard(k)
	s.mu.Lock()
	if s.epoch != epoch {
		s.mu.Unlock()
		return
	}
	if e, ok := s.items[k]; ok {
		s.remove(e)
	}
	e := &cacheEntry{key: k, rec: r, expires: c.now().Add(c.ttl)}
	s.items[k] = e
	s.pushFront(e)
	evicted := 0
	for len(s.items) > s.size {
		s.remove(s.lru.prev)
		evicted++
	}
	s.mu.Unlock()
	for range evicted {
		c.onEvict("capacity")
	}
}

// invalidate drops person k, and makes fills that started before it fail.
func (c *cache) invalidate(k int) {
	s := c.shard(k)
	s.mu.Lock()
	s.epoch++
	if e, ok := s.items[k]; ok {
		s.remove(e)
	}
	s.mu.Unlock()
	c.onInvalidate()
}

// len is how many people are cached.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.items)
		s.mu.Unlock()
	}
	return n
}

func (s *cacheShard) remove(e *cacheEntry) {
	s.unlink(e)
	delete(s.items, e.key)
}

func (s *cacheShard) unlink(e *cacheEntry) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}

func (s *cacheShard) pushFront(e *cacheEntry) {
	e.prev = &s.lru
	e.next = s.lru.next
	s.lru.next.prev = e
	s.lru.next = e
}

// clear drops every person, and makes fills that started before it fail.
func (c *cache) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.epoch++
		for _, e := range s.items {
			s.remove(e)
		}
		s.mu.Unlock()
	}
}
