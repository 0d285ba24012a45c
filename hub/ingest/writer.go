package ingest

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
)

// BlockWriter is the store the writer inserts into. Implementations must be
// safe for concurrent use; an error means nothing of the call was stored,
// except series rows, which may be written again.
type BlockWriter interface {
	WriteBlock(ctx context.Context, b *clickhouse.Block) error
	WriteProgress(ctx context.Context, progress map[clickhouse.AgentKey]uint64) error
}

// queued is one batch in the queue: an agent's (p set, tracked for
// deduplication) or a local write from inside the hub (done set).
type queued struct {
	it   *item
	p    *pending
	done chan error // buffered (1): the flusher never waits for the caller
	at   time.Time  // when it was queued
}

// writer is the bounded queue between streams and ClickHouse. enqueue
// blocks while the queue holds QueueSamples (backpressure); flushers take up
// to FlushSamples at a time and retry a failed insert until it succeeds or
// the writer stops, so nothing accepted is dropped.
type writer struct {
	cfg     *Config
	store   BlockWriter
	tracker *tracker
	logger  *slog.Logger
	m       *metrics
	stored  func(*clickhouse.Block) // see Service.OnStored

	mu      sync.Mutex
	cond    *sync.Cond
	queue   []queued
	samples int // samples queued or being written: the backpressure bound
	queued  int // samples queued and not yet taken: the flush trigger
	waiting int // queued local writes, whose callers wait: flushed at once
	closed  bool
}

func newWriter(cfg *Config, store BlockWriter, tr *tracker, logger *slog.Logger, m *metrics) *writer {
	w := &writer{cfg: cfg, store: store, tracker: tr, logger: logger, m: m}
	w.cond = sync.NewCond(&w.mu)
	return w
}

var errStopping = errors.New("hub is stopping")

// enqueue adds it, blocking while the queue is full. A batch larger than the
// whole queue is let in when the queue is empty.
func (w *writer) enqueue(ctx context.Context, it *item, p *pending, done chan error) error {
	stop := context.AfterFunc(ctx, func() {
		w.mu.Lock()
		w.cond.Broadcast()
		w.mu.Unlock()
	})
	defer stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for !w.closed && ctx.Err() == nil && w.samples > 0 && w.samples+it.samples > w.cfg.QueueSamples {
		w.m.backpressureWaits.Inc()
		w.cond.Wait()
	}
	if w.closed {
		return errStopping
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	w.queue = append(w.queue, queued{it, p, done, time.Now()})
	w.samples += it.samples
	w.queued += it.samples
	if done != nil {
		w.waiting++
	}
	w.m.queueSamples.Set(float64(w.samples))
	w.cond.Broadcast()
	return nil
}

// take waits for a flush's worth of items: FlushSamples, or whatever is
// there once the oldest has waited FlushInterval, or everything on close.
func (w *writer) take() ([]queued, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		if len(w.queue) > 0 && (w.closed || w.waiting > 0 || w.queued >= w.cfg.FlushSamples || time.Since(w.queue[0].at) >= w.cfg.FlushInterval) {
			break
		}
		if w.closed {
			return nil, false
		}
		if len(w.queue) > 0 {
			// Wake up when the oldest item is due.
			t := time.AfterFunc(w.cfg.FlushInterval-time.Since(w.queue[0].at), func() {
				w.mu.Lock()
				w.cond.Broadcast()
				w.mu.Unlock()
			})
			w.cond.Wait()
			t.Stop()
			continue
		}
		w.cond.Wait()
	}
	n, i := 0, 0
	for ; i < len(w.queue) && (i == 0 || n+w.queue[i].it.samples <= w.cfg.FlushSamples); i++ {
		n += w.queue[i].it.samples
	}
	batch := make([]queued, i)
	copy(batch, w.queue[:i])
	for _, q := range batch {
		if q.done != nil {
			w.waiting--
		}
	}
	w.queue = append(w.queue[:0], w.queue[i:]...)
	w.queued -= n
	return batch, true
}

// done releases queue space once a batch is written (or abandoned).
func (w *writer) done(batch []queued) {
	n := 0
	for _, q := range batch {
		n += q.it.samples
	}
	w.mu.Lock()
	w.samples -= n
	w.m.queueSamples.Set(float64(w.samples))
	w.cond.Broadcast()
	w.mu.Unlock()
}

// close stops taking new items; flushers drain what is queued.
func (w *writer) close() {
	w.mu.Lock()
	w.closed = true
	w.cond.Broadcast()
	w.mu.Unlock()
}

// run is one flusher. It returns when the writer is closed and drained, or
// when ctx ends (abandoning, unacknowledged, what it could not write).
func (w *writer) run(ctx context.Context) {
	var block clickhouse.Block
	for {
		batch, ok := w.take()
		if !ok {
			return
		}
		block.Reset()
		ps := make([]*pending, 0, len(batch))
		for _, q := range batch {
			it := q.it
			block.Series = append(block.Series, it.series...)
			for range it.samples {
				block.Tenants = append(block.Tenants, it.tenant)
			}
			block.Fingerprints = append(block.Fingerprints, it.fps...)
			block.Timestamps = append(block.Timestamps, it.ts...)
			block.Values = append(block.Values, it.vals...)
			if q.p != nil {
				ps = append(ps, q.p)
			}
		}
		err := w.writeWithRetry(ctx, &block)
		if err == nil && w.stored != nil {
			// Before anyone is told: a recording rule's result must be
			// readable by the next rule of its group.
			w.stored(&block)
		}
		w.tracker.complete(ps, err)
		if err == nil {
			w.m.batchSamples.Observe(float64(block.Len()))
			for _, q := range batch {
				w.m.written.WithLabelValues(q.it.tenant).Add(float64(q.it.samples))
			}
			w.persistProgress(ctx)
		}
		release(ps)
		for _, q := range batch {
			if q.done != nil {
				q.done <- err
			}
		}
		w.done(batch)
	}
}

// writeWithRetry retries with capped, jittered backoff until the insert
// succeeds or ctx ends.
func (w *writer) writeWithRetry(ctx context.Context, b *clickhouse.Block) error {
	backoff := 100 * time.Millisecond
	for {
		err := w.store.WriteBlock(ctx, b)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return errStopping
		}
		w.m.writeRetries.Inc()
		w.logger.Warn("clickhouse insert failed; retrying", "samples", b.Len(), "backoff", backoff, "err", err)
		select {
		case <-ctx.Done():
			return errStopping
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// persistProgress writes committed seqs. A failure is logged and the values
// kept for the next flush: the samples are stored, so the only cost of a
// lost progress row is a possible duplicate if this hub dies before then.
func (w *writer) persistProgress(ctx context.Context) {
	d := w.tracker.takeDirty()
	if d == nil {
		return
	}
	if err := w.store.WriteProgress(ctx, d); err != nil {
		w.logger.Warn("persist agent progress failed; will retry with the next flush", "agents", len(d), "err", err)
		w.tracker.restoreDirty(d)
	}
}
