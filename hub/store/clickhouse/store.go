// Package clickhouse stores the hub's series and samples in ClickHouse over
// the native protocol, with columnar batch inserts. It owns the schema and
// migrates it at start.
package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
)

// Config says how to reach ClickHouse.
type Config struct {
	// Addr lists native-protocol addresses (host:9000).
	Addr []string `yaml:"addr"`
	// Database is created if missing. Default "bureauhub".
	Database string `yaml:"database"`
	Username string `yaml:"username"`
	// PasswordFile holds the password; it is never logged.
	PasswordFile string        `yaml:"password_file"`
	DialTimeout  time.Duration `yaml:"dial_timeout"`
	// ReadTimeout bounds one statement, inserts included.
	ReadTimeout  time.Duration `yaml:"read_timeout"`
	MaxOpenConns int           `yaml:"max_open_conns"`
	// Compaction rewrites finished days into chunks (package chunk).
	Compaction CompactionConfig `yaml:"compaction"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Database == "" {
		c.Database = "bureauhub"
	}
	if c.Username == "" {
		c.Username = "default"
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 60 * time.Second
	}
	if c.MaxOpenConns == 0 {
		c.MaxOpenConns = 8
	}
	c.Compaction.setDefaults()
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	if len(c.Addr) == 0 {
		return errors.New("clickhouse.addr: at least one address is required")
	}
	for i, a := range c.Addr {
		if !strings.Contains(a, ":") {
			return fmt.Errorf("clickhouse.addr[%d]: %q is not host:port", i, a)
		}
	}
	if !identRE.MatchString(c.Database) {
		return fmt.Errorf("clickhouse.database: %q is not a plain identifier", c.Database)
	}
	if c.PasswordFile != "" {
		if _, err := os.Stat(c.PasswordFile); err != nil {
			return fmt.Errorf("clickhouse.password_file: %w", err)
		}
	}
	if c.MaxOpenConns < 1 {
		return errors.New("clickhouse.max_open_conns: must be at least 1")
	}
	return c.Compaction.validate()
}

// SeriesRow is one row of the series table.
type SeriesRow struct {
	Tenant      string
	Date        time.Time // UTC midnight of the day the series was written
	Fingerprint uint64
	MetricName  string
	LabelNames  []string // sorted, without __name__
	LabelValues []string
}

// Block is a columnar batch of samples, plus the series rows that must be
// stored before them. The four sample slices have equal length.
type Block struct {
	Series       []SeriesRow
	Tenants      []string
	Fingerprints []uint64
	Timestamps   []int64
	Values       []float64
}

// Len is the number of samples in b.
func (b *Block) Len() int { return len(b.Timestamps) }

// Reset empties b, keeping its capacity.
func (b *Block) Reset() {
	b.Series = b.Series[:0]
	b.Tenants = b.Tenants[:0]
	b.Fingerprints = b.Fingerprints[:0]
	b.Timestamps = b.Timestamps[:0]
	b.Values = b.Values[:0]
}

// AgentKey identifies one agent buffer incarnation within a tenant.
type AgentKey struct {
	Tenant  string
	AgentID string
}

// Store is a ClickHouse-backed store. It is safe for concurrent use.
type Store struct {
	conn   driver.Conn
	db     string
	logger *slog.Logger
	recent Recent // nil without a head (SetRecent)

	writeSeconds *prometheus.HistogramVec
	rowsWritten  *prometheus.CounterVec
	writeErrors  *prometheus.CounterVec

	compactDays        prometheus.Counter
	compactSamples     prometheus.Counter
	compactChunks      prometheus.Counter
	compactFailures    prometheus.Counter
	compactSeconds     prometheus.Histogram
	compactLastSuccess prometheus.Gauge
}

// Open prepares a connection pool; it does not contact the server (Migrate
// does). reg may be nil.
func Open(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Store, error) {
	password := ""
	if cfg.PasswordFile != "" {
		b, err := os.ReadFile(cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("read clickhouse.password_file: %w", err)
		}
		password = strings.TrimSpace(string(b))
	}
	conn, err := ch.Open(&ch.Options{
		Addr:         cfg.Addr,
		Auth:         ch.Auth{Database: "default", Username: cfg.Username, Password: password},
		DialTimeout:  cfg.DialTimeout,
		ReadTimeout:  cfg.ReadTimeout,
		MaxOpenConns: cfg.MaxOpenConns,
		MaxIdleConns: cfg.MaxOpenConns,
		Compression:  &ch.Compression{Method: ch.CompressionLZ4},
	})
	if err != nil {
		return nil, fmt.Errorf("open clickhouse: %w", err)
	}
	s := &Store{
		conn:   conn,
		db:     cfg.Database,
		logger: logger,
		writeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bureauhub_clickhouse_write_duration_seconds",
			Help:    "Time to insert one batch into a ClickHouse table.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"table"}),
		rowsWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_clickhouse_rows_written_total",
			Help: "Rows inserted into ClickHouse, by table.",
		}, []string{"table"}),
		writeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_clickhouse_write_errors_total",
			Help: "Failed ClickHouse inserts, by table.",
		}, []string{"table"}),
		compactDays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bureauhub_compaction_days_total",
			Help: "Days of raw samples compacted into chunks.",
		}),
		compactSamples: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bureauhub_compaction_samples_total",
			Help: "Samples written into chunks by compaction.",
		}),
		compactChunks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bureauhub_compaction_chunks_total",
			Help: "Chunks written by compaction.",
		}),
		compactFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bureauhub_compaction_failures_total",
			Help: "Compactions of a day that failed (the day stays raw and is tried again).",
		}),
		compactSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bureauhub_compaction_duration_seconds",
			Help:    "Time to compact one day.",
			Buckets: prometheus.ExponentialBuckets(0.1, 2, 14),
		}),
		compactLastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bureauhub_compaction_last_success_timestamp_seconds",
			Help: "When a day was last compacted.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.writeSeconds, s.rowsWritten, s.writeErrors, s.compactDays, s.compactSamples,
			s.compactChunks, s.compactFailures, s.compactSeconds, s.compactLastSuccess} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register clickhouse metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Database is the database the store uses.
func (s *Store) Database() string { return s.db }

// Conn exposes the connection pool for read paths and tests.
func (s *Store) Conn() driver.Conn { return s.conn }

// Close closes the connection pool.
func (s *Store) Close() error { return s.conn.Close() }

// ddlContext carries the setting 18.16 needs to create LowCardinality
// columns; current ClickHouse accepts it as obsolete.
func ddlContext(ctx context.Context) context.Context {
	return ch.Context(ctx, ch.WithSettings(ch.Settings{"allow_experimental_low_cardinality_type": 1}))
}

// Migrate creates the database and brings the schema to SchemaVersion. It is
// safe to run from several hubs at once: every statement is idempotent.
func (s *Store) Migrate(ctx context.Context) error {
	if err := s.conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+s.db); err != nil {
		return fmt.Errorf("create database %s: %w", s.db, err)
	}
	if err := s.conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+s.db+
		".schema_migrations (version UInt32, applied DateTime) ENGINE = TinyLog"); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var current uint32
	if err := s.conn.QueryRow(ctx, "SELECT toUInt32(max(version)) FROM "+s.db+".schema_migrations").Scan(&current); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	for v := int(current) + 1; v <= len(migrations); v++ {
		for _, stmt := range migrations[v-1] {
			stmt = strings.ReplaceAll(stmt, "{db}", s.db)
			if err := s.conn.Exec(ddlContext(ctx), stmt); err != nil {
				return fmt.Errorf("migration %d: %w", v, err)
			}
		}
		err := s.insert(ctx, "schema_migrations", 1, "INSERT INTO "+s.db+".schema_migrations (version, applied)",
			func(b driver.Batch) error { return b.Append(uint32(v), time.Now()) })
		if err != nil {
			return fmt.Errorf("record migration %d: %w", v, err)
		}
		s.logger.Info("applied schema migration", "version", v, "database", s.db)
	}
	return nil
}

// WriteBlock inserts b's series rows, then its samples. Either insert may be
// retried: series rows fold in ReplacingMergeTree, and a failed samples
// insert stores nothing (one INSERT of one block per partition is atomic).
func (s *Store) WriteBlock(ctx context.Context, b *Block) error {
	if len(b.Series) > 0 {
		err := s.insert(ctx, "series", len(b.Series),
			"INSERT INTO "+s.db+".series (tenant, date, fingerprint, metric_name, label_names, label_values)",
			func(batch driver.Batch) error {
				for _, r := range b.Series {
					if err := batch.Append(r.Tenant, r.Date, r.Fingerprint, r.MetricName, r.LabelNames, r.LabelValues); err != nil {
						return err
					}
				}
				return nil
			})
		if err != nil {
			return err
		}
	}
	if b.Len() == 0 {
		return nil
	}
	return s.insert(ctx, "samples", b.Len(),
		"INSERT INTO "+s.db+".samples (tenant, fingerprint, ts, value)",
		func(batch driver.Batch) error {
			if err := batch.Column(0).Append(b.Tenants); err != nil {
				return err
			}
			if err := batch.Column(1).Append(b.Fingerprints); err != nil {
				return err
			}
			if err := batch.Column(2).Append(b.Timestamps); err != nil {
				return err
			}
			return batch.Column(3).Append(b.Values)
		})
}

// WriteProgress records the highest stored batch sequence per agent.
func (s *Store) WriteProgress(ctx context.Context, progress map[AgentKey]uint64) error {
	if len(progress) == 0 {
		return nil
	}
	now := time.Now()
	return s.insert(ctx, "agent_progress", len(progress),
		"INSERT INTO "+s.db+".agent_progress (tenant, agent_id, seq, updated)",
		func(batch driver.Batch) error {
			for k, seq := range progress {
				if err := batch.Append(k.Tenant, k.AgentID, seq, now); err != nil {
					return err
				}
			}
			return nil
		})
}

// LoadProgress returns the highest stored batch sequence of every agent.
func (s *Store) LoadProgress(ctx context.Context) (map[AgentKey]uint64, error) {
	rows, err := s.conn.Query(ctx, "SELECT tenant, agent_id, max(seq) FROM "+s.db+".agent_progress GROUP BY tenant, agent_id")
	if err != nil {
		return nil, fmt.Errorf("query agent_progress: %w", err)
	}
	defer rows.Close()
	out := make(map[AgentKey]uint64)
	for rows.Next() {
		var k AgentKey
		var seq uint64
		if err := rows.Scan(&k.Tenant, &k.AgentID, &seq); err != nil {
			return nil, fmt.Errorf("scan agent_progress: %w", err)
		}
		out[k] = seq
	}
	return out, rows.Err()
}

// HasSample reports whether the sample of series fp at ts (milliseconds)
// is stored for tenant: a primary-key point lookup.
func (s *Store) HasSample(ctx context.Context, tenant string, fp uint64, ts int64) (bool, error) {
	var n uint64
	err := s.conn.QueryRow(ctx, "SELECT count() FROM "+s.db+".samples WHERE tenant = ? AND fingerprint = ? AND ts = ?", tenant, fp, ts).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("query samples: %w", err)
	}
	return n > 0, nil
}

// LoadAgentProgress returns the highest stored batch sequence of one
// agent (0 if none), as any hub of a cluster wrote it.
func (s *Store) LoadAgentProgress(ctx context.Context, k AgentKey) (uint64, error) {
	var seq uint64
	err := s.conn.QueryRow(ctx, "SELECT max(seq) FROM "+s.db+".agent_progress WHERE tenant = ? AND agent_id = ?", k.Tenant, k.AgentID).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("query agent_progress: %w", err)
	}
	return seq, nil
}

// LoadAgentsLastProgress returns when each agent's progress was last
// written, i.e. roughly when it last delivered data to any hub.
func (s *Store) LoadAgentsLastProgress(ctx context.Context) (map[AgentKey]time.Time, error) {
	rows, err := s.conn.Query(ctx, "SELECT tenant, agent_id, max(updated) FROM "+s.db+".agent_progress GROUP BY tenant, agent_id")
	if err != nil {
		return nil, fmt.Errorf("query agent_progress: %w", err)
	}
	defer rows.Close()
	out := make(map[AgentKey]time.Time)
	for rows.Next() {
		var k AgentKey
		var at time.Time
		if err := rows.Scan(&k.Tenant, &k.AgentID, &at); err != nil {
			return nil, fmt.Errorf("scan agent_progress: %w", err)
		}
		out[k] = at
	}
	return out, rows.Err()
}

func (s *Store) insert(ctx context.Context, table string, rows int, query string, fill func(driver.Batch) error) error {
	start := time.Now()
	err := func() error {
		batch, err := s.conn.PrepareBatch(ctx, query)
		if err != nil {
			return err
		}
		defer func() { _ = batch.Abort() }()
		if err := fill(batch); err != nil {
			return err
		}
		return batch.Send()
	}()
	if err != nil {
		s.writeErrors.WithLabelValues(table).Inc()
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	s.writeSeconds.WithLabelValues(table).Observe(time.Since(start).Seconds())
	s.rowsWritten.WithLabelValues(table).Add(float64(rows))
	return nil
}
