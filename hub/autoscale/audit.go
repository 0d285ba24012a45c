package autoscale

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
)

// Audit event kinds.
const (
	// EventDecision is recorded every sync of a target not in mode off.
	EventDecision = "decision"
	// EventAction is a scaling action taken (outcome ok or failed), or one
	// dry-run would have taken (outcome dry_run).
	EventAction = "action"
	// EventOutcome follows an action after warm-up + sync: the replicas
	// ready then and the SLO observed, linked by ActionID.
	EventOutcome = "outcome"
)

// Action outcomes.
const (
	OutcomeOK     = "ok"
	OutcomeFailed = "failed"
	OutcomeDryRun = "dry_run"
)

// Event is one row of the audit trail.
type Event struct {
	Time   time.Time `json:"time"`
	Tenant string    `json:"tenant"`
	Target string    `json:"target"`
	// Kind is decision, action or outcome.
	Kind string `json:"event"`
	// ActionID links an action to its outcome.
	ActionID    string `json:"action_id,omitempty"`
	Mode        Mode   `json:"mode"`
	Term        string `json:"term"`
	Current     int    `json:"current_replicas"`
	Ready       int    `json:"ready_replicas"`
	Recommended int    `json:"recommended_replicas"`
	Replicas    int    `json:"replicas"`
	// Outcome is ok, failed or dry_run for actions; for outcome events
	// "slo_met", "slo_missed" or "slo_unknown".
	Outcome      string   `json:"outcome,omitempty"`
	Error        string   `json:"error,omitempty"`
	FiringAlerts []string `json:"firing_alerts"`
	ObservedRate Number   `json:"observed_rate"`
	// ObservedLatency is the p99 latency in seconds (NaN: unknown).
	ObservedLatency Number `json:"observed_latency"`
	// SLOMet is 1, 0, or -1 when unknown.
	SLOMet int8 `json:"slo_met"`
	// Explanation is the decision's Explanation as JSON.
	Explanation string `json:"explanation,omitempty"`
}

// auditColumns is the INSERT's column list; 18.16's native protocol
// through clickhouse-go needs one.
const auditColumns = "date, ts, tenant, target, event, action_id, mode, term, current_replicas, ready_replicas, " +
	"recommended_replicas, replicas, outcome, error, firing_alerts, observed_rate, observed_latency, slo_met, explanation"

// AuditSchema is the audit table's CREATE statement for database.table,
// valid on ClickHouse 18.16 and current releases (no TTL, no codecs, no
// DateTime64: ts is Unix milliseconds). Retention is by dropping monthly
// partitions.
func AuditSchema(database, table string) string {
	return `CREATE TABLE IF NOT EXISTS ` + database + `.` + table + ` (
	date Date,
	ts Int64,
	tenant String,
	target String,
	event String,
	action_id String,
	mode String,
	term String,
	current_replicas Int32,
	ready_replicas Int32,
	recommended_replicas Int32,
	replicas Int32,
	outcome String,
	error String,
	firing_alerts Array(String),
	observed_rate Float64,
	observed_latency Float64,
	slo_met Int8,
	explanation String
) ENGINE = MergeTree() PARTITION BY toYYYYMM(date) ORDER BY (tenant, target, ts)`
}

// Audit writes events to ClickHouse through a bounded queue and reads
// them back. Record never blocks.
type Audit struct {
	conn     driver.Conn
	table    string // database.table
	queue    chan Event
	interval time.Duration
	logger   *slog.Logger

	dropped     prometheus.Counter
	written     prometheus.Counter
	writeErrors prometheus.Counter
}

// NewAudit writes to database.table on conn; nothing happens until
// Migrate and Run.
func NewAudit(conn driver.Conn, database, table string, queueSize int, flushInterval time.Duration, logger *slog.Logger, reg prometheus.Registerer) *Audit {
	a := &Audit{conn: conn, table: database + "." + table, queue: make(chan Event, queueSize), interval: flushInterval, logger: logger,
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "bureauhub_autoscale_audit_dropped_total",
			Help: "Audit events dropped because the queue to ClickHouse was full."}),
		written: prometheus.NewCounter(prometheus.CounterOpts{Name: "bureauhub_autoscale_audit_written_total",
			Help: "Audit events written to ClickHouse."}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "bureauhub_autoscale_audit_write_errors_total",
			Help: "Failed audit batch writes (their events are lost)."}),
	}
	if reg != nil {
		reg.MustRegister(a.dropped, a.written, a.writeErrors)
	}
	return a
}

// Migrate creates the table if missing.
func (a *Audit) Migrate(ctx context.Context) error {
	db, table, _ := strings.Cut(a.table, ".")
	if err := a.conn.Exec(ctx, AuditSchema(db, table)); err != nil {
		return fmt.Errorf("create table %s: %w", a.table, err)
	}
	return nil
}

// Record queues e, or drops and counts it when the queue is full.
func (a *Audit) Record(e Event) {
	select {
	case a.queue <- e:
	default:
		a.dropped.Inc()
	}
}

// Run writes queued events every flush interval until ctx ends, then
// writes what is left.
func (a *Audit) Run(ctx context.Context) error {
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			a.Flush(fctx)
			cancel()
			return nil
		case <-t.C:
			a.Flush(ctx)
		}
	}
}

// Flush writes the queued events now, in batches.
func (a *Audit) Flush(ctx context.Context) {
	for {
		var batch []Event
	fill:
		for len(batch) < 1000 {
			select {
			case e := <-a.queue:
				batch = append(batch, e)
			default:
				break fill
			}
		}
		if len(batch) == 0 {
			return
		}
		if err := a.write(ctx, batch); err != nil {
			a.writeErrors.Inc()
			a.logger.Warn("audit events lost", "events", len(batch), "err", err)
			return
		}
		a.written.Add(float64(len(batch)))
	}
}

func (a *Audit) write(ctx context.Context, events []Event) error {
	b, err := a.conn.PrepareBatch(ctx, "INSERT INTO "+a.table+" ("+auditColumns+")")
	if err != nil {
		return fmt.Errorf("insert into %s: %w", a.table, err)
	}
	defer func() { _ = b.Abort() }()
	for _, e := range events {
		alerts := e.FiringAlerts
		if alerts == nil {
			alerts = []string{}
		}
		day := time.Date(e.Time.UTC().Year(), e.Time.UTC().Month(), e.Time.UTC().Day(), 0, 0, 0, 0, time.UTC)
		if err := b.Append(day, e.Time.UnixMilli(), e.Tenant, e.Target, e.Kind, e.ActionID, string(e.Mode), e.Term,
			int32(e.Current), int32(e.Ready), int32(e.Recommended), int32(e.Replicas), e.Outcome, e.Error, alerts,
			float64(e.ObservedRate), float64(e.ObservedLatency), e.SLOMet, e.Explanation); err != nil {
			return fmt.Errorf("insert into %s: %w", a.table, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert into %s: %w", a.table, err)
	}
	return nil
}

// EventQuery selects audit events.
type EventQuery struct {
	// Tenants are the tenants to read (required, non-empty).
	Tenants []string
	// Target, if set, selects one target.
	Target string
	// Kinds, if set, selects event kinds.
	Kinds []string
	// Start and End bound the time, [Start, End).
	Start, End time.Time
	// Limit bounds the rows (default 1000).
	Limit int
}

// Events reads events, oldest first.
func (a *Audit) Events(ctx context.Context, q EventQuery) ([]Event, error) {
	if len(q.Tenants) == 0 {
		return []Event{}, nil
	}
	if q.Limit <= 0 {
		q.Limit = 1000
	}
	sql := "SELECT ts, tenant, target, event, action_id, mode, term, current_replicas, ready_replicas, recommended_replicas, " +
		"replicas, outcome, error, firing_alerts, observed_rate, observed_latency, slo_met, explanation FROM " + a.table +
		" WHERE has(?, tenant) AND ts >= ? AND ts < ?"
	args := []any{q.Tenants, q.Start.UnixMilli(), q.End.UnixMilli()}
	if q.Target != "" {
		sql += " AND target = ?"
		args = append(args, q.Target)
	}
	if len(q.Kinds) > 0 {
		sql += " AND has(?, event)"
		args = append(args, q.Kinds)
	}
	sql += fmt.Sprintf(" ORDER BY ts, tenant, target LIMIT %d", q.Limit)
	rows, err := a.conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("select from %s: %w", a.table, err)
	}
	defer rows.Close()
	out := []Event{}
	for rows.Next() {
		var (
			e                         Event
			ts                        int64
			mode                      string
			cur, ready, rec, replicas int32
			rate, latency             float64
		)
		if err := rows.Scan(&ts, &e.Tenant, &e.Target, &e.Kind, &e.ActionID, &mode, &e.Term, &cur, &ready, &rec,
			&replicas, &e.Outcome, &e.Error, &e.FiringAlerts, &rate, &latency, &e.SLOMet, &e.Explanation); err != nil {
			return nil, fmt.Errorf("select from %s: %w", a.table, err)
		}
		e.Time = time.UnixMilli(ts).UTC()
		e.Mode = Mode(mode)
		e.Current, e.Ready, e.Recommended, e.Replicas = int(cur), int(ready), int(rec), int(replicas)
		e.ObservedRate, e.ObservedLatency = Number(rate), Number(latency)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select from %s: %w", a.table, err)
	}
	return out, nil
}

// sloMet encodes a latency against its objective: 1 met, 0 missed, -1
// unknown.
func sloMet(latency float64, slo time.Duration) int8 {
	switch {
	case math.IsNaN(latency) || slo <= 0:
		return -1
	case latency <= slo.Seconds():
		return 1
	}
	return 0
}
