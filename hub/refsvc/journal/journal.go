// Package journal keeps the hosted reference services' state in ClickHouse,
// the store every hub of a cluster reaches: each committed transaction's
// changes (refsvc.Change) are written to the refsvc_state table before the
// request that made them is answered, and the hub that takes a service over
// restores its local store from the latest change of each key.
//
// Writes are group-committed: transactions queue their changes, one writer
// inserts everything queued in one INSERT while the next ones queue, and
// each transaction's waiters are released when its changes are stored. The
// queue is bounded; a full queue refuses at once, counted in
// bureauhub_refsvc_journal_refused_total.
//
// Every change carries a version that grows across hubs: a hub's versions
// start above the highest it loaded, and are at least its clock's Unix
// milliseconds shifted left by 20 bits. The latest change of a key is the
// one with the highest version; ReplacingMergeTree(version) folds older ones
// away in the background, and readers take argMax(…, version) so that
// unmerged parts never matter.
package journal

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bureauhub/bureauhub/hub/refsvc"
)

// Table is the journal's table name.
const Table = "refsvc_state"

// Schema is the CREATE statement for database.refsvc_state, valid on
// ClickHouse 18.16 and current releases (no TTL, codecs, DateTime64 or
// Map). One row per change; a key's rows fold into its latest version.
func Schema(database string) string {
	return `CREATE TABLE IF NOT EXISTS ` + database + `.` + Table + ` (
	service String,
	bucket String,
	item_key String,
	item_value String,
	deleted UInt8,
	version UInt64,
	hub String,
	updated DateTime
) ENGINE = ReplacingMergeTree(version)
PARTITION BY tuple()
ORDER BY (service, bucket, item_key)`
}

const columns = "service, bucket, item_key, item_value, deleted, version, hub, updated"

// Migrate creates the table if it does not exist.
func Migrate(ctx context.Context, conn driver.Conn, database string) error {
	if err := conn.Exec(ctx, Schema(database)); err != nil {
		return fmt.Errorf("create %s.%s: %w", database, Table, err)
	}
	return nil
}

// Config bounds a journal.
type Config struct {
	// MaxQueued is how many changes may wait for ClickHouse; beyond it
	// Enqueue refuses (default 100000).
	MaxQueued int
	// MaxBatch is the most changes one INSERT carries (default 10000).
	MaxBatch int
	// Timeout bounds one INSERT (default 10s).
	Timeout time.Duration
}

func (c *Config) setDefaults() {
	if c.MaxQueued <= 0 {
		c.MaxQueued = 100_000
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 10_000
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
}

// Metrics are the journals' metrics, shared by every service's journal of
// a hub (labelled by service).
type Metrics struct {
	written  *prometheus.CounterVec
	failed   *prometheus.CounterVec
	refused  *prometheus.CounterVec
	queued   *prometheus.GaugeVec
	latency  *prometheus.HistogramVec
	restored *prometheus.CounterVec
}

// NewMetrics registers the journal metrics on reg (if not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		written: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_refsvc_journal_changes_written_total", Help: "Service state changes stored in ClickHouse, by service.",
		}, []string{"service"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_refsvc_journal_insert_failures_total", Help: "Failed INSERTs of service state changes (retried), by service.",
		}, []string{"service"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_refsvc_journal_refused_total", Help: "Transactions whose changes were refused because the journal queue was full (answered 503), by service.",
		}, []string{"service"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bureauhub_refsvc_journal_queued_changes", Help: "Service state changes waiting for ClickHouse, by service.",
		}, []string{"service"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bureauhub_refsvc_journal_insert_seconds", Help: "Time of one INSERT of service state changes, by service.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"service"}),
		restored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_refsvc_journal_restored_keys_total", Help: "Keys loaded from ClickHouse when this hub took a service over, by service.",
		}, []string{"service"}),
	}
	if reg != nil {
		reg.MustRegister(m.written, m.failed, m.refused, m.queued, m.latency, m.restored)
	}
	return m
}

// Journal is one service's journal on this hub. Safe for concurrent use;
// Run must be running for Wait to return nil.
type Journal struct {
	conn    driver.Conn
	table   string
	service string
	hub     string
	cfg     Config
	logger  *slog.Logger
	m       *Metrics
	now     func() time.Time

	kick chan struct{}

	mu       sync.Mutex
	queue    []entry
	ticket   refsvc.Ticket // the last ticket given
	durable  refsvc.Ticket // every ticket up to this is stored
	version  uint64        // the last version given or loaded
	lastErr  error
	progress chan struct{} // closed and replaced when durable moves or an insert fails
}

type entry struct {
	ticket  refsvc.Ticket
	version uint64
	at      time.Time
	change  refsvc.Change
}

var _ refsvc.Journal = (*Journal)(nil)

// New builds service's journal in database on conn; hub names this hub in
// the rows it writes.
func New(conn driver.Conn, database, service, hub string, cfg Config, logger *slog.Logger, m *Metrics) *Journal {
	cfg.setDefaults()
	if m == nil {
		m = NewMetrics(nil)
	}
	m.queued.WithLabelValues(service)
	return &Journal{conn: conn, table: database + "." + Table, service: service, hub: hub, cfg: cfg, logger: logger, m: m,
		now: time.Now, kick: make(chan struct{}, 1), progress: make(chan struct{})}
}

// nextVersion is the version of the next change. Call with mu held.
func (j *Journal) nextVersion(at time.Time) uint64 {
	v := max(j.version+1, uint64(at.UnixMilli())<<20)
	j.version = v
	return v
}

// Enqueue queues one transaction's changes after every earlier one.
func (j *Journal) Enqueue(changes []refsvc.Change) (refsvc.Ticket, error) {
	j.mu.Lock()
	if len(j.queue)+len(changes) > j.cfg.MaxQueued {
		n := len(j.queue)
		j.mu.Unlock()
		j.m.refused.WithLabelValues(j.service).Inc()
		return 0, fmt.Errorf("journal of %s is full: %d changes are waiting for ClickHouse (max %d)", j.service, n, j.cfg.MaxQueued)
	}
	j.ticket++
	t := j.ticket
	at := j.now()
	for _, c := range changes {
		j.queue = append(j.queue, entry{ticket: t, version: j.nextVersion(at), at: at, change: c})
	}
	n := len(j.queue)
	j.mu.Unlock()
	j.m.queued.WithLabelValues(j.service).Set(float64(n))
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return t, nil
}

// Wait returns when every change up to t is stored.
func (j *Journal) Wait(ctx context.Context, t refsvc.Ticket) error {
	for {
		j.mu.Lock()
		done, ch, last := j.durable >= t, j.progress, j.lastErr
		j.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("ClickHouse has not stored it: %w", last)
			}
			return fmt.Errorf("ClickHouse has not stored it: %w", ctx.Err())
		case <-ch:
		}
	}
}

// Run writes queued changes until ctx ends, retrying failed INSERTs with
// backoff. Changes still queued at the end were never confirmed.
func (j *Journal) Run(ctx context.Context) error {
	backoff := 50 * time.Millisecond
	for {
		j.mu.Lock()
		batch := j.queue[:min(len(j.queue), j.cfg.MaxBatch)]
		j.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-j.kick:
				continue
			}
		}
		start := time.Now()
		err := j.insert(ctx, batch)
		j.m.latency.WithLabelValues(j.service).Observe(time.Since(start).Seconds())
		j.mu.Lock()
		if err == nil {
			j.queue = j.queue[len(batch):]
			if len(j.queue) > 0 {
				j.durable = j.queue[0].ticket - 1
			} else {
				j.durable = batch[len(batch)-1].ticket
				j.queue = nil // let the backing array go
			}
			j.lastErr = nil
		} else {
			j.lastErr = err
		}
		close(j.progress)
		j.progress = make(chan struct{})
		n := len(j.queue)
		j.mu.Unlock()
		j.m.queued.WithLabelValues(j.service).Set(float64(n))
		if err == nil {
			j.m.written.WithLabelValues(j.service).Add(float64(len(batch)))
			backoff = 50 * time.Millisecond
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		j.m.failed.WithLabelValues(j.service).Inc()
		j.logger.Warn("storing service state in ClickHouse failed; retrying", "service", j.service, "changes", len(batch), "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (j *Journal) insert(ctx context.Context, batch []entry) error {
	ctx, cancel := context.WithTimeout(ctx, j.cfg.Timeout)
	defer cancel()
	b, err := j.conn.PrepareBatch(ctx, "INSERT INTO "+j.table+" ("+columns+")")
	if err != nil {
		return fmt.Errorf("insert into %s: %w", j.table, err)
	}
	defer func() { _ = b.Abort() }()
	for _, e := range batch {
		var del uint8
		if e.change.Deleted {
			del = 1
		}
		if err := b.Append(j.service, e.change.Bucket, string(e.change.Key), string(e.change.Value), del, e.version, j.hub, e.at.UTC()); err != nil {
			return fmt.Errorf("insert into %s: %w", j.table, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert into %s: %w", j.table, err)
	}
	return nil
}

// Load passes the latest change of every key of the service to apply, in
// no particular order, and raises this journal's versions above every
// version stored. Call it before changes are enqueued (a hub taking the
// service over calls it before it starts replicas).
func (j *Journal) Load(ctx context.Context, apply func(refsvc.Change) error) (keys int, err error) {
	rows, err := j.conn.Query(ctx, "SELECT bucket, item_key, argMax(item_value, version), argMax(deleted, version), max(version) FROM "+
		j.table+" WHERE service = ? GROUP BY bucket, item_key", j.service)
	if err != nil {
		return 0, fmt.Errorf("load %s state from %s: %w", j.service, j.table, err)
	}
	defer rows.Close()
	var top uint64
	for rows.Next() {
		var bucket, key, value string
		var deleted uint8
		var version uint64
		if err := rows.Scan(&bucket, &key, &value, &deleted, &version); err != nil {
			return keys, fmt.Errorf("load %s state from %s: %w", j.service, j.table, err)
		}
		top = max(top, version)
		keys++
		if err := apply(refsvc.Change{Bucket: bucket, Key: []byte(key), Value: []byte(value), Deleted: deleted == 1}); err != nil {
			return keys, err
		}
	}
	if err := rows.Err(); err != nil {
		return keys, fmt.Errorf("load %s state from %s: %w", j.service, j.table, err)
	}
	j.mu.Lock()
	j.version = max(j.version, top)
	j.mu.Unlock()
	j.m.restored.WithLabelValues(j.service).Add(float64(keys))
	return keys, nil
}
