// Package capacity emulates the fixed capacity of one replica (a pod of a
// given size) without burning the machine's CPU: a replica serves at most
// Concurrency requests at once, each holding its slot for ServiceTime
// (a timer, not a busy loop). Requests beyond that wait in a bounded FIFO
// queue for at most QueueTimeout; beyond QueueLength they are refused at
// once. So one replica sustains about Concurrency/ServiceTime requests per
// second, n replicas n times that, and too few replicas produce the
// queueing, timeouts and errors the incidents showed.
package capacity

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config is one replica's emulated size.
type Config struct {
	// Concurrency is how many requests the replica serves at once.
	Concurrency int `yaml:"concurrency"`
	// ServiceTime is how long each request holds its slot.
	ServiceTime time.Duration `yaml:"service_time"`
	// ServiceJitter adds a uniformly random 0..ServiceJitter to each
	// request's service time, so latencies are not all equal.
	ServiceJitter time.Duration `yaml:"service_jitter"`
	// QueueLength bounds the requests waiting for a slot; a request that
	// finds the queue full is refused at once with 503.
	QueueLength int `yaml:"queue_length"`
	// QueueTimeout bounds how long a request waits for a slot before it is
	// refused with 503.
	QueueTimeout time.Duration `yaml:"queue_timeout"`
}

// SetDefaults fills unset fields: 4 concurrent requests of 20 ms (200
// requests/s per replica), a queue of 64 waiting at most 1 s.
func (c *Config) SetDefaults() {
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.ServiceTime == 0 {
		c.ServiceTime = 20 * time.Millisecond
	}
	if c.QueueLength == 0 {
		c.QueueLength = 64
	}
	if c.QueueTimeout == 0 {
		c.QueueTimeout = time.Second
	}
}

// Validate names the first invalid field under prefix (e.g.
// "services.booking.capacity").
func (c *Config) Validate(prefix string) error {
	switch {
	case c.Concurrency <= 0:
		return fmt.Errorf("%s.concurrency: must be positive, got %d", prefix, c.Concurrency)
	case c.ServiceTime < 0:
		return fmt.Errorf("%s.service_time: must not be negative", prefix)
	case c.ServiceJitter < 0:
		return fmt.Errorf("%s.service_jitter: must not be negative", prefix)
	case c.QueueLength < 0:
		return fmt.Errorf("%s.queue_length: must not be negative", prefix)
	case c.QueueTimeout <= 0:
		return fmt.Errorf("%s.queue_timeout: must be positive", prefix)
	}
	return nil
}

// PerSecond is the throughput one replica sustains: Concurrency divided by
// the mean service time.
func (c Config) PerSecond() float64 {
	mean := c.ServiceTime + c.ServiceJitter/2
	if mean <= 0 {
		return 0
	}
	return float64(c.Concurrency) / mean.Seconds()
}

// Refusal reasons, as the capacity_refused_total reason label spells them.
var (
	ErrQueueFull    = errors.New("queue_full")
	ErrQueueTimeout = errors.New("queue_timeout")
)

// Limiter is one replica's capacity. It is safe for concurrent use.
type Limiter struct {
	cfg   Config
	slots chan struct{}

	mu      sync.Mutex
	waiting int

	inflight prometheus.Gauge
	queued   prometheus.Gauge
	refused  *prometheus.CounterVec
	wait     prometheus.Histogram
}

// New builds a limiter for a validated config and registers its metrics
// (refsvc_capacity_*) with reg.
func New(cfg Config, reg prometheus.Registerer) *Limiter {
	l := &Limiter{
		cfg:   cfg,
		slots: make(chan struct{}, cfg.Concurrency),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "refsvc_capacity_inflight_requests", Help: "Requests holding one of the replica's concurrency slots."}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "refsvc_capacity_queued_requests", Help: "Requests waiting for a concurrency slot."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refsvc_capacity_refused_total", Help: "Requests refused for lack of capacity, by reason (queue_full, queue_timeout)."}, []string{"reason"}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "refsvc_capacity_queue_wait_seconds", Help: "Time requests waited for a concurrency slot.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}),
	}
	l.refused.WithLabelValues(ErrQueueFull.Error())
	l.refused.WithLabelValues(ErrQueueTimeout.Error())
	if reg != nil {
		reg.MustRegister(l.inflight, l.queued, l.refused, l.wait)
	}
	return l
}

// Config returns the limiter's configuration.
func (l *Limiter) Config() Config { return l.cfg }

// Acquire waits for a slot. It returns ErrQueueFull or ErrQueueTimeout when
// the replica is overloaded, or ctx's error if the caller gave up. On
// success the caller must call release exactly once.
func (l *Limiter) Acquire(ctx context.Context) (release func(), err error) {
	select {
	case l.slots <- struct{}{}:
		l.inflight.Inc()
		l.wait.Observe(0)
		return l.release, nil
	default:
	}
	l.mu.Lock()
	if l.waiting >= l.cfg.QueueLength {
		l.mu.Unlock()
		l.refused.WithLabelValues(ErrQueueFull.Error()).Inc()
		return nil, ErrQueueFull
	}
	l.waiting++
	l.mu.Unlock()
	l.queued.Inc()
	defer func() {
		l.mu.Lock()
		l.waiting--
		l.mu.Unlock()
		l.queued.Dec()
	}()
	start := time.Now()
	t := time.NewTimer(l.cfg.QueueTimeout)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		l.inflight.Inc()
		l.wait.Observe(time.Since(start).Seconds())
		return l.release, nil
	case <-t.C:
		l.refused.WithLabelValues(ErrQueueTimeout.Error()).Inc()
		return nil, ErrQueueTimeout
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *Limiter) release() {
	l.inflight.Dec()
	<-l.slots
}

// Work holds the caller for one request's service time. It does not return
// early when ctx ends: as in a real server, work already started is done
// even if the client has gone, which is what makes retry storms hurt.
func (l *Limiter) Work() {
	d := l.cfg.ServiceTime
	if l.cfg.ServiceJitter > 0 {
		d += rand.N(l.cfg.ServiceJitter)
	}
	if d > 0 {
		time.Sleep(d)
	}
}

// Middleware admits each request through the limiter, holds it for the
// service time, then calls next while still holding the slot. Refused
// requests get 503 with Retry-After: 1 and a JSON body whose reason is
// queue_full or queue_timeout.
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		release, err := l.Acquire(r.Context())
		if err != nil {
			if r.Context().Err() != nil {
				return // the client has gone; nobody reads the answer
			}
			w.Header().Set("Retry-After", strconv.Itoa(1))
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, `{"error":"replica overloaded: %s","reason":%q}`+"\n", err, err.Error())
			return
		}
		defer release()
		l.Work()
		next.ServeHTTP(w, r)
	})
}
