// Package history keeps the alert history in ClickHouse: every state change
// of an alert (pending, firing, resolved, silenced, inhibited,
// unsuppressed) and every notification attempt, one row per alert.
//
// Records are queued in memory and inserted in batches; the queue is
// bounded, and records that do not fit are dropped and counted, so a slow
// or unreachable ClickHouse never blocks alerting.
package history

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
)

// Config configures the history writer.
type Config struct {
	// Table is created in the store's database if missing.
	Table string `yaml:"table"`
	// QueueSize bounds the records waiting to be written; more are dropped.
	QueueSize int `yaml:"queue_size"`
	// BatchSize is the most records one INSERT carries.
	BatchSize int `yaml:"batch_size"`
	// FlushInterval is the longest a record waits for its batch to fill.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// MaxQueryRows caps the rows one history query returns.
	MaxQueryRows int `yaml:"max_query_rows"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Table == "" {
		c.Table = "alert_history"
	}
	if c.QueueSize == 0 {
		c.QueueSize = 10000
	}
	if c.BatchSize == 0 {
		c.BatchSize = 1000
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = time.Second
	}
	if c.MaxQueryRows == 0 {
		c.MaxQueryRows = 10000
	}
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate checks the fields; errors name them relative to the parent
// ("history.table").
func (c *Config) Validate() error {
	switch {
	case !identRE.MatchString(c.Table):
		return fmt.Errorf("history.table: %q is not a plain identifier", c.Table)
	case c.QueueSize <= 0:
		return errors.New("history.queue_size: must be positive")
	case c.BatchSize <= 0:
		return errors.New("history.batch_size: must be positive")
	case c.FlushInterval <= 0:
		return errors.New("history.flush_interval: must be positive")
	case c.MaxQueryRows <= 0:
		return errors.New("history.max_query_rows: must be positive")
	}
	return nil
}

// Event is what a record reports.
type Event string

// Events recorded.
const (
	EventPending      Event = "pending"
	EventFiring       Event = "firing"
	EventResolved     Event = "resolved"
	EventSilenced     Event = "silenced"
	EventInhibited    Event = "inhibited"
	EventUnsuppressed Event = "unsuppressed" // no longer silenced nor inhibited
	EventNotification Event = "notification" // one attempt to notify one integration
)

// Record is one row of the history.
type Record struct {
	Time         time.Time      `json:"time"`
	Tenant       string         `json:"tenant"`
	Event        Event          `json:"event"`
	Fingerprint  string         `json:"fingerprint"`
	Labels       model.LabelSet `json:"labels"`
	Annotations  model.LabelSet `json:"annotations"`
	StartsAt     time.Time      `json:"startsAt"`
	EndsAt       time.Time      `json:"endsAt"`
	GeneratorURL string         `json:"generatorURL,omitempty"`
	// Status is the alert's state when the record was made: firing or
	// resolved.
	Status string `json:"status"`
	// Receiver and Integration ("webhook[0]") are set on notification
	// records, with Success and Error.
	Receiver    string `json:"receiver,omitempty"`
	Integration string `json:"integration,omitempty"`
	Success     bool   `json:"success"`
	Error       string `json:"error,omitempty"`
	// SuppressedBy lists the silence IDs (silenced) or the inhibiting
	// alerts' fingerprints (inhibited).
	SuppressedBy []string `json:"suppressedBy,omitempty"`
}

// Store writes and reads the history table. Record is safe for concurrent
// use and never blocks; Run does the writing.
type Store struct {
	cfg    Config
	conn   driver.Conn
	table  string // database-qualified
	logger *slog.Logger
	queue  chan Record

	written prometheus.Counter
	dropped *prometheus.CounterVec
}

// New returns a store for database's cfg.Table over conn. It does not
// contact ClickHouse: Run creates the table and writes.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer, conn driver.Conn, database string) *Store {
	s := &Store{
		cfg:    cfg,
		conn:   conn,
		table:  database + "." + cfg.Table,
		logger: logger,
		queue:  make(chan Record, cfg.QueueSize),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bureauhub_alerting_history_records_written_total",
			Help: "Alert history records inserted into ClickHouse.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_alerting_history_records_dropped_total",
			Help: "Alert history records lost, by reason (queue_full, write_error).",
		}, []string{"reason"}),
	}
	s.dropped.WithLabelValues("queue_full")
	s.dropped.WithLabelValues("write_error")
	if reg != nil {
		reg.MustRegister(s.written, s.dropped, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bureauhub_alerting_history_queue_length",
			Help: "Alert history records waiting to be written.",
		}, func() float64 { return float64(len(s.queue)) }))
	}
	return s
}

// Record queues r for writing, or drops it (counted) if the queue is full.
func (s *Store) Record(r Record) {
	select {
	case s.queue <- r:
	default:
		s.dropped.WithLabelValues("queue_full").Inc()
	}
}

// The schema runs on ClickHouse 18.16 and current releases: no TTL, codecs
// or DateTime64; times are Int64 milliseconds, and a Date column
// partitions by month. Retention is by dropping old partitions.
const createTable = `CREATE TABLE IF NOT EXISTS %s (
	day Date,
	ts_ms Int64,
	tenant String,
	event String,
	fingerprint String,
	alertname String,
	status String,
	labels_keys Array(String),
	labels_values Array(String),
	annotations_keys Array(String),
	annotations_values Array(String),
	starts_at_ms Int64,
	ends_at_ms Int64,
	generator_url String,
	receiver String,
	integration String,
	success UInt8,
	error String,
	suppressed_by Array(String)
) ENGINE = MergeTree() PARTITION BY toYYYYMM(day) ORDER BY (tenant, ts_ms, fingerprint)`

const columns = `day, ts_ms, tenant, event, fingerprint, alertname, status, labels_keys, labels_values,
	annotations_keys, annotations_values, starts_at_ms, ends_at_ms, generator_url, receiver, integration,
	success, error, suppressed_by`

// Migrate creates the table if it does not exist.
func (s *Store) Migrate(ctx context.Context) error {
	if err := s.conn.Exec(ctx, fmt.Sprintf(createTable, s.table)); err != nil {
		return fmt.Errorf("create %s: %w", s.table, err)
	}
	return nil
}

// Run creates the table (retrying until it succeeds) and writes queued
// records in batches until ctx ends, then writes what is queued.
func (s *Store) Run(ctx context.Context) error {
	for {
		err := s.Migrate(ctx)
		if err == nil {
			break
		}
		s.logger.Error("alert history table not ready; records queue (and drop when full) until it is", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
	t := time.NewTicker(s.cfg.FlushInterval)
	defer t.Stop()
	batch := make([]Record, 0, s.cfg.BatchSize)
	flush := func(ctx context.Context) {
		if len(batch) == 0 {
			return
		}
		if err := s.write(ctx, batch); err != nil {
			s.logger.Error("write alert history", "err", err, "records", len(batch))
			s.dropped.WithLabelValues("write_error").Add(float64(len(batch)))
		} else {
			s.written.Add(float64(len(batch)))
		}
		batch = batch[:0]
	}
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			for {
				select {
				case r := <-s.queue:
					batch = append(batch, r)
					if len(batch) >= s.cfg.BatchSize {
						flush(fctx)
					}
				default:
					flush(fctx)
					return nil
				}
			}
		case r := <-s.queue:
			batch = append(batch, r)
			if len(batch) >= s.cfg.BatchSize {
				flush(ctx)
			}
		case <-t.C:
			flush(ctx)
		}
	}
}

func (s *Store) write(ctx context.Context, rs []Record) error {
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table+" ("+columns+")")
	if err != nil {
		return fmt.Errorf("insert into %s: %w", s.table, err)
	}
	defer func() { _ = b.Abort() }()
	for _, r := range rs {
		lk, lv := split(r.Labels)
		ak, av := split(r.Annotations)
		success := uint8(0)
		if r.Success {
			success = 1
		}
		sup := r.SuppressedBy
		if sup == nil {
			sup = []string{}
		}
		ts := r.Time.UTC()
		if err := b.Append(ts, ts.UnixMilli(), r.Tenant, string(r.Event), r.Fingerprint,
			string(r.Labels[model.AlertNameLabel]), r.Status, lk, lv, ak, av,
			millis(r.StartsAt), millis(r.EndsAt), r.GeneratorURL, r.Receiver, r.Integration,
			success, r.Error, sup); err != nil {
			return fmt.Errorf("insert into %s: %w", s.table, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert into %s: %w", s.table, err)
	}
	return nil
}

// Query selects history rows.
type Query struct {
	// Tenant restricts rows to one tenant; empty means every tenant.
	Tenant string
	// Matchers: a row matches if it matches every matcher of any one set
	// (as Prometheus's match[] selectors); no sets match every row.
	Matchers [][]*labels.Matcher
	// Start and End bound the record time (inclusive).
	Start, End time.Time
	// Limit caps the rows; 0 or more than MaxQueryRows means MaxQueryRows.
	Limit int
}

// Query returns the matching rows, oldest first.
func (s *Store) Query(ctx context.Context, q Query) ([]Record, error) {
	var (
		where = []string{"day >= toDate(?)", "day <= toDate(?)", "ts_ms >= ?", "ts_ms <= ?"}
		args  = []any{q.Start.UTC().Format(time.DateOnly), q.End.UTC().Format(time.DateOnly), q.Start.UnixMilli(), q.End.UnixMilli()}
	)
	if q.Tenant != "" {
		where = append(where, "tenant = ?")
		args = append(args, q.Tenant)
	}
	var ors []string
	for _, set := range q.Matchers {
		var ands []string
		for _, m := range set {
			cond, a := matcherSQL(m)
			ands = append(ands, cond)
			args = append(args, a...)
		}
		if len(ands) > 0 {
			ors = append(ors, "("+strings.Join(ands, " AND ")+")")
		}
	}
	if len(ors) > 0 {
		where = append(where, "("+strings.Join(ors, " OR ")+")")
	}
	limit := q.Limit
	if limit <= 0 || limit > s.cfg.MaxQueryRows {
		limit = s.cfg.MaxQueryRows
	}
	query := fmt.Sprintf("SELECT ts_ms, tenant, event, fingerprint, status, labels_keys, labels_values, "+
		"annotations_keys, annotations_values, starts_at_ms, ends_at_ms, generator_url, receiver, integration, "+
		"success, error, suppressed_by FROM %s WHERE %s ORDER BY ts_ms, fingerprint LIMIT %d",
		s.table, strings.Join(where, " AND "), limit)
	rows, err := s.conn.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", s.table, err)
	}
	defer rows.Close()
	out := []Record{}
	for rows.Next() {
		var (
			r                    Record
			ts, startsAt, endsAt int64
			event                string
			lk, lv, ak, av, sup  []string
			success              uint8
		)
		if err := rows.Scan(&ts, &r.Tenant, &event, &r.Fingerprint, &r.Status, &lk, &lv, &ak, &av,
			&startsAt, &endsAt, &r.GeneratorURL, &r.Receiver, &r.Integration, &success, &r.Error, &sup); err != nil {
			return nil, fmt.Errorf("scan %s: %w", s.table, err)
		}
		r.Time = time.UnixMilli(ts).UTC()
		r.Event = Event(event)
		r.Labels, r.Annotations = join(lk, lv), join(ak, av)
		r.StartsAt, r.EndsAt = fromMillis(startsAt), fromMillis(endsAt)
		r.Success = success == 1
		if len(sup) > 0 {
			r.SuppressedBy = sup
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// matcherSQL renders one label matcher; a missing label reads as "" (an
// out-of-range array index gives the type's default), as in Prometheus.
func matcherSQL(m *labels.Matcher) (string, []any) {
	const v = "labels_values[indexOf(labels_keys, ?)]"
	switch m.Type {
	case labels.MatchEqual:
		return v + " = ?", []any{m.Name, m.Value}
	case labels.MatchNotEqual:
		return v + " != ?", []any{m.Name, m.Value}
	case labels.MatchRegexp:
		return "match(" + v + ", ?)", []any{m.Name, "^(?:" + m.Value + ")$"}
	default: // labels.MatchNotRegexp
		return "NOT match(" + v + ", ?)", []any{m.Name, "^(?:" + m.Value + ")$"}
	}
}

func split(ls model.LabelSet) (keys, values []string) {
	keys = make([]string, 0, len(ls))
	for k := range ls {
		keys = append(keys, string(k))
	}
	slices.Sort(keys)
	values = make([]string, len(keys))
	for i, k := range keys {
		values[i] = string(ls[model.LabelName(k)])
	}
	return keys, values
}

func join(keys, values []string) model.LabelSet {
	ls := make(model.LabelSet, len(keys))
	for i, k := range keys {
		if i < len(values) {
			ls[model.LabelName(k)] = model.LabelValue(values[i])
		}
	}
	return ls
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
