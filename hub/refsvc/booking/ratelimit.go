package booking

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is one replica's token buckets: one per client and one overall.
// The client map is bounded by MaxClients. Safe for concurrent use.
type limiter struct {
	cfg    RateLimitConfig
	global *rate.Limiter // nil when disabled

	mu        sync.Mutex
	clients   map[string]*clientBucket
	lastSweep time.Time
	// onEvict is called (with mu held) for each evicted client.
	onEvict func()
}

type clientBucket struct {
	lim      *rate.Limiter
	lastSeen time.Time
}

func newLimiter(cfg RateLimitConfig, onEvict func()) *limiter {
	l := &limiter{cfg: cfg, clients: map[string]*clientBucket{}, onEvict: onEvict}
	if cfg.GlobalRate >= 0 {
		l.global = rate.NewLimiter(rate.Limit(cfg.GlobalRate), cfg.GlobalBurst)
	}
	return l
}

// allow takes a token from the client's bucket and then the overall one.
// When refused, retryAfter is when a token will be there (at least 1s,
// as Retry-After counts whole seconds).
func (l *limiter) allow(client string, now time.Time) (ok bool, retryAfter time.Duration) {
	if l.cfg.PerClientRate >= 0 {
		if ok, d := take(l.client(client, now), now); !ok {
			return false, d
		}
	}
	if l.global != nil {
		return take(l.global, now)
	}
	return true, 0
}

func take(lim *rate.Limiter, now time.Time) (bool, time.Duration) {
	if lim.AllowN(now, 1) {
		return true, 0
	}
	r := lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	if !r.OK() || d == rate.InfDuration {
		d = time.Hour
	}
	return false, time.Duration(math.Ceil(max(d, time.Second).Seconds())) * time.Second
}

// client returns the client's bucket, creating it; when the map is full
// it first evicts idle clients, then the least recently seen one.
func (l *limiter) client(id string, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= l.cfg.ClientIdleTimeout {
		l.evictIdle(now)
	}
	b := l.clients[id]
	if b == nil {
		if len(l.clients) >= l.cfg.MaxClients {
			l.evictIdle(now)
		}
		if len(l.clients) >= l.cfg.MaxClients {
			var oldest string
			var oldestSeen time.Time
			for cid, cb := range l.clients {
				if oldest == "" || cb.lastSeen.Before(oldestSeen) {
					oldest, oldestSeen = cid, cb.lastSeen
				}
			}
			delete(l.clients, oldest)
			l.onEvict()
		}
		b = &clientBucket{lim: rate.NewLimiter(rate.Limit(l.cfg.PerClientRate), l.cfg.PerClientBurst)}
		l.clients[id] = b
	}
	b.lastSeen = now
	return b.lim
}

func (l *limiter) evictIdle(now time.Time) {
	l.lastSweep = now
	for id, b := range l.clients {
		if now.Sub(b.lastSeen) > l.cfg.ClientIdleTimeout {
			delete(l.clients, id)
			l.onEvict()
		}
	}
}

func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}
