package clickhouse

import (
	"context"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/value"

	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chtest"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func openStore(t *testing.T) (*Store, *prometheus.Registry) {
	t.Helper()
	srv := chtest.Server(t)
	db := chtest.NewDatabase(t)
	cfg := Config{Addr: []string{srv.Addr()}, Database: db}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s, err := Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, reg
}

func TestMigrateIsIdempotent(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	for i := range 3 {
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("migrate #%d: %v", i+1, err)
		}
	}
	var versions, maxVersion uint64
	if err := s.Conn().QueryRow(ctx, "SELECT count(), toUInt64(max(version)) FROM "+s.Database()+".schema_migrations").Scan(&versions, &maxVersion); err != nil {
		t.Fatal(err)
	}
	if versions != uint64(SchemaVersion) || maxVersion != uint64(SchemaVersion) {
		t.Errorf("schema_migrations has %d rows up to %d, want %d", versions, maxVersion, SchemaVersion)
	}
}

func TestWriteBlockRoundTrip(t *testing.T) {
	s, reg := openStore(t)
	ctx := context.Background()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	stale := math.Float64frombits(value.StaleNaN)
	b := &Block{
		Series: []SeriesRow{{Tenant: "consular", Date: day, Fingerprint: 42, MetricName: "up",
			LabelNames: []string{"bureau", "job"}, LabelValues: []string{"consular", "booking"}}},
		Tenants:      []string{"consular", "consular", "consular"},
		Fingerprints: []uint64{42, 42, 42},
		// A sample on each side of midnight UTC lands in two partitions.
		Timestamps: []int64{day.UnixMilli() - 15000, day.UnixMilli(), day.UnixMilli() + 15000},
		Values:     []float64{1, stale, math.Inf(-1)},
	}
	if err := s.WriteBlock(ctx, b); err != nil {
		t.Fatal(err)
	}
	rows, err := s.Conn().Query(ctx, "SELECT ts, value FROM "+s.Database()+".samples WHERE tenant = 'consular' AND fingerprint = 42 ORDER BY ts")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []float64
	for rows.Next() {
		var ts int64
		var v float64
		if err := rows.Scan(&ts, &v); err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if len(got) != 3 || got[0] != 1 || !value.IsStaleNaN(got[1]) || !math.IsInf(got[2], -1) {
		t.Errorf("read back %v; want 1, the staleness marker (exact NaN bits) and -Inf", got)
	}
	var parts uint64
	if err := s.Conn().QueryRow(ctx, "SELECT uniqExact(partition) FROM system.parts WHERE database = ? AND table = 'samples' AND active", s.Database()).Scan(&parts); err != nil {
		t.Fatal(err)
	}
	if parts != 2 {
		t.Errorf("samples are in %d partitions, want 2 (one per UTC day)", parts)
	}
	var names, values []string
	var metric string
	if err := s.Conn().QueryRow(ctx, "SELECT metric_name, label_names, label_values FROM "+s.Database()+".series WHERE fingerprint = 42").Scan(&metric, &names, &values); err != nil {
		t.Fatal(err)
	}
	if metric != "up" || len(names) != 2 || values[1] != "booking" {
		t.Errorf("series row: %s %v %v", metric, names, values)
	}
	if n := testutil.ToFloat64(s.rowsWritten.WithLabelValues("samples")); n != 3 {
		t.Errorf("rows written metric %v, want 3", n)
	}
	_ = reg
}

func TestProgress(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	a := AgentKey{Tenant: "consular", AgentID: "a1"}
	b := AgentKey{Tenant: "health", AgentID: "a1"}
	for _, p := range []map[AgentKey]uint64{{a: 3}, {a: 7, b: 1}, {b: 5}} {
		if err := s.WriteProgress(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.LoadProgress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got[a] != 7 || got[b] != 5 || len(got) != 2 {
		t.Errorf("progress %v; want consular/a1=7, health/a1=5", got)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no addr", Config{Database: "x", MaxOpenConns: 1}, "clickhouse.addr"},
		{"addr without port", Config{Addr: []string{"localhost"}, Database: "x", MaxOpenConns: 1}, "clickhouse.addr[0]"},
		{"bad database", Config{Addr: []string{"a:1"}, Database: "x; DROP", MaxOpenConns: 1}, "clickhouse.database"},
		{"missing password file", Config{Addr: []string{"a:1"}, Database: "x", PasswordFile: "/nonexistent", MaxOpenConns: 1}, "clickhouse.password_file"},
		{"negative compaction interval", Config{Addr: []string{"a:1"}, Database: "x", MaxOpenConns: 1,
			Compaction: CompactionConfig{Interval: -time.Minute}}, "clickhouse.compaction.interval"},
		{"negative compaction margin", Config{Addr: []string{"a:1"}, Database: "x", MaxOpenConns: 1,
			Compaction: CompactionConfig{Interval: time.Minute, Delay: -time.Hour}}, "clickhouse.compaction.delay"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil || len(err.Error()) < len(tc.want) || err.Error()[:len(tc.want)] != tc.want {
				t.Errorf("Validate() = %v, want an error starting with %q", err, tc.want)
			}
		})
	}
}
