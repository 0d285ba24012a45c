package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/cespare/xxhash/v2"

	"github.com/bureauhub/bureauhub/hub/store/chunk"
)

// Compaction rewrites the raw samples of a finished UTC day into chunks
// (package chunk: decimal mantissas and grid offsets, bit-packed, or
// Prometheus XOR for values with no short decimal form) in the chunks
// table, and drops the day's partition of samples. Raw rows cost 4 to 8
// bytes per sample, because ClickHouse 18.16 has no delta or Gorilla
// column codecs; chunks cost about 1.4. Reads take chunks and raw samples
// together, so a day reads the same before, during and after its
// compaction.
//
// A day is compacted once its end is older than a delay (2 h by default):
// by then nearly every sample of the day has arrived. The partition is
// dropped only after its row count is read again and found unchanged.
// Samples that arrive later (an agent's backlog after an outage, up to
// ingest.max_age old) are stored raw in the day's partition again, read
// together with the day's chunks, and compacted by a later run into
// chunks of their own; identical chunks fold (ReplacingMergeTree on a key
// that ends with the chunk's hash) and overlapping ones are merged sample
// by sample when read.
//
// ClickHouse 18.16 deletes a dropped partition's files only
// old_parts_lifetime (8 minutes) after the drop; a server restarted before
// then loads them as live parts again. Reads stay correct (they merge the
// revived raw rows with the day's chunks), and the next run compacts the
// day again: the same chunks, which fold, and the partition dropped again.

// chunkSamples is the most samples one chunk holds: an hour at 15 s.
// Prometheus cuts at 120 for the sake of its in-memory head; a compacted
// day has no head, and longer chunks spread the per-chunk header and key
// over more samples.
const chunkSamples = 240

// compactReadSamples is about how many raw samples one read statement of a
// compaction takes: a tenant's day is read in fingerprint ranges of this
// size, so ClickHouse's GROUP BY and the hub hold one range at a time.
const compactReadSamples = 4_000_000

// compactInsertChunks is how many chunk rows one INSERT carries.
const compactInsertChunks = 50_000

const dayMillis = 86_400_000

// CompactionConfig configures the background compaction of raw days.
type CompactionConfig struct {
	// Disabled keeps every sample raw.
	Disabled bool `yaml:"disabled"`
	// Interval is how often the hub looks for days to compact.
	Interval time.Duration `yaml:"interval"`
	// Delay is how long after a UTC day ends it is compacted. Samples of
	// the day that arrive later are still accepted (up to ingest.max_age)
	// and compacted by a later run; until then they are read merged with
	// the day's chunks, which costs the reads of those series some time.
	Delay time.Duration `yaml:"delay"`
}

func (c *CompactionConfig) setDefaults() {
	if c.Interval == 0 {
		c.Interval = 10 * time.Minute
	}
	if c.Delay == 0 {
		c.Delay = 2 * time.Hour
	}
}

func (c *CompactionConfig) validate() error {
	if c.Interval <= 0 {
		return errors.New("clickhouse.compaction.interval: must be positive")
	}
	if c.Delay < 0 {
		return errors.New("clickhouse.compaction.delay: must not be negative")
	}
	return nil
}

// CompactStats describes one compacted day.
type CompactStats struct {
	Day     time.Time
	RawRows uint64 // rows read from samples
	Samples int    // samples written into chunks (a timestamp stored twice counts once)
	Series  int
	Chunks  int
	Bytes   int // chunk data bytes, before ClickHouse's compression
}

// RawDays returns the UTC days that have raw samples, oldest first. A
// partition whose name is not a day inside ClickHouse's DateTime range
// (samples stamped before 1970 land in one, which only tests write) is
// left out: it is never compacted.
func (s *Store) RawDays(ctx context.Context) ([]time.Time, error) {
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT partition FROM system.parts WHERE database = ? AND table = 'samples' AND active ORDER BY partition", s.db)
	if err != nil {
		return nil, fmt.Errorf("list partitions of samples: %w", err)
	}
	defer rows.Close()
	var out []time.Time
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, fmt.Errorf("scan partition: %w", err)
		}
		d, err := time.Parse("20060102", p)
		if err != nil || d.UnixMilli()+dayMillis > maxDateMillis {
			continue
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// CompactBefore compacts every raw day that ended at or before horizon,
// oldest first, and returns what it compacted. It stops at the first
// failure.
func (s *Store) CompactBefore(ctx context.Context, horizon time.Time) ([]CompactStats, error) {
	days, err := s.RawDays(ctx)
	if err != nil {
		return nil, err
	}
	var out []CompactStats
	for _, d := range days {
		if d.Add(24 * time.Hour).After(horizon) {
			break
		}
		st, err := s.CompactDay(ctx, d)
		if err != nil {
			return out, err
		}
		out = append(out, st)
	}
	return out, nil
}

// CompactDay rewrites the raw samples of one UTC day into chunks and then
// drops the day's partition of samples. It may be run again on the same
// day (after a crash, say): the chunks it writes again fold with the
// first ones.
func (s *Store) CompactDay(ctx context.Context, day time.Time) (CompactStats, error) {
	day = day.UTC().Truncate(24 * time.Hour)
	st := CompactStats{Day: day}
	start := day.UnixMilli()
	end := start + dayMillis
	if start < 0 || end > maxDateMillis {
		return st, fmt.Errorf("compact %s: outside the days ClickHouse's DateTime holds", day.Format(time.DateOnly))
	}
	began := time.Now()
	fail := func(err error) (CompactStats, error) {
		s.compactFailures.Inc()
		return st, fmt.Errorf("compact %s: %w", day.Format(time.DateOnly), err)
	}
	counts, total, err := s.rawCounts(ctx, start, end)
	if err != nil {
		return fail(err)
	}
	st.RawRows = total
	var w chunkWriter
	w.s = s
	for tenant, n := range counts {
		buckets := max(1, (n+compactReadSamples-1)/compactReadSamples)
		step := math.MaxUint64 / buckets
		for b := range buckets {
			lo := b * step
			hi := lo + step - 1
			if b == buckets-1 {
				hi = math.MaxUint64
			}
			if err := s.compactRange(ctx, &w, &st, tenant, lo, hi, start, end); err != nil {
				return fail(err)
			}
		}
	}
	if err := w.flush(ctx); err != nil {
		return fail(err)
	}
	// Drop the raw rows only if none arrived while they were read.
	_, again, err := s.rawCounts(ctx, start, end)
	if err != nil {
		return fail(err)
	}
	if again != total {
		return fail(fmt.Errorf("%d raw samples arrived while the day was compacted (%d before, %d after); the day stays raw until the next run", int64(again)-int64(total), total, again))
	}
	if err := s.conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.samples DROP PARTITION %s", s.db, day.Format("20060102"))); err != nil {
		return fail(fmt.Errorf("drop the raw partition: %w", err))
	}
	s.compactDays.Inc()
	s.compactSamples.Add(float64(st.Samples))
	s.compactChunks.Add(float64(st.Chunks))
	s.compactSeconds.Observe(time.Since(began).Seconds())
	s.compactLastSuccess.SetToCurrentTime()
	return st, nil
}

// rawCounts returns the raw samples of [start, end) per tenant, and their sum.
func (s *Store) rawCounts(ctx context.Context, start, end int64) (map[string]uint64, uint64, error) {
	rows, err := s.conn.Query(ctx, "SELECT tenant, count() FROM "+s.db+".samples WHERE ts >= ? AND ts < ? GROUP BY tenant", start, end)
	if err != nil {
		return nil, 0, fmt.Errorf("count raw samples: %w", err)
	}
	defer rows.Close()
	out := map[string]uint64{}
	var total uint64
	for rows.Next() {
		var t string
		var n uint64
		if err := rows.Scan(&t, &n); err != nil {
			return nil, 0, fmt.Errorf("scan raw counts: %w", err)
		}
		out[t] = n
		total += n
	}
	return out, total, rows.Err()
}

// compactRange reads the raw samples of one tenant's fingerprints lo..hi
// in [start, end), one row per series, and hands them to w as chunks.
func (s *Store) compactRange(ctx context.Context, w *chunkWriter, st *CompactStats, tenant string, lo, hi uint64, start, end int64) error {
	names, err := s.metricNames(ctx, tenant, lo, hi, start)
	if err != nil {
		return err
	}
	rows, err := s.conn.Query(ctx, "SELECT fingerprint, "+packedSamples+" FROM "+s.db+".samples WHERE tenant = ? AND fingerprint >= ? AND fingerprint <= ? AND ts >= ? AND ts < ? GROUP BY fingerprint",
		tenant, lo, hi, start, end)
	if err != nil {
		return fmt.Errorf("read raw samples: %w", err)
	}
	defer rows.Close()
	var (
		fp     uint64
		packed string
	)
	for rows.Next() {
		if err := rows.Scan(&fp, &packed); err != nil {
			return fmt.Errorf("scan raw samples: %w", err)
		}
		name, ok := names[fp]
		if !ok {
			// Ingestion writes a series row for the day before the
			// series' samples, and queries find series through those
			// rows: without one, the samples could never be read.
			return fmt.Errorf("read raw samples: series %016x of tenant %q has samples on %s but no series row for that day",
				fp, tenant, time.UnixMilli(start).UTC().Format(time.DateOnly))
		}
		samples, err := toSamples(packed)
		if err != nil {
			return fmt.Errorf("read raw samples: %w", err)
		}
		st.Series++
		st.Samples += len(samples)
		encodeChunks(samples, func(c chunkRow) {
			c.tenant, c.name, c.fp = tenant, name, fp
			st.Chunks++
			st.Bytes += len(c.data)
			w.add(c)
		})
		if w.full() {
			if err := w.flush(ctx); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read raw samples: %w", err)
	}
	return nil
}

// metricNames returns the metric name of each of a tenant's series with a
// fingerprint in lo..hi, from the series rows of the day that starts at
// dayStart (ms): ingestion writes one for every day a series has samples,
// and queries find the day's samples through it.
func (s *Store) metricNames(ctx context.Context, tenant string, lo, hi uint64, dayStart int64) (map[uint64]string, error) {
	rows, err := s.conn.Query(ctx, "SELECT fingerprint, any(metric_name) FROM "+s.db+".series WHERE tenant = ? AND date = toDate(?) AND fingerprint >= ? AND fingerprint <= ? GROUP BY fingerprint",
		tenant, time.UnixMilli(dayStart).UTC().Format(time.DateOnly), lo, hi)
	if err != nil {
		return nil, fmt.Errorf("read metric names: %w", err)
	}
	defer rows.Close()
	out := map[uint64]string{}
	var (
		fp   uint64
		name string
	)
	for rows.Next() {
		if err := rows.Scan(&fp, &name); err != nil {
			return nil, fmt.Errorf("scan metric names: %w", err)
		}
		out[fp] = name
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read metric names: %w", err)
	}
	return out, nil
}

// chunkRow is one row of the chunks table.
type chunkRow struct {
	tenant     string
	name       string // metric name
	fp         uint64
	mint, maxt int64
	samples    uint32
	data       string
}

// encodeChunks cuts samples (sorted, one per timestamp) into chunks of
// equal size, at most chunkSamples each, and hands each to emit.
func encodeChunks(samples fSamples, emit func(chunkRow)) {
	if len(samples) == 0 {
		return
	}
	n := (len(samples) + chunkSamples - 1) / chunkSamples
	size := (len(samples) + n - 1) / n
	ts := make([]int64, 0, size)
	vs := make([]float64, 0, size)
	var buf []byte
	for i := 0; i < len(samples); i += size {
		part := samples[i:min(i+size, len(samples))]
		ts, vs = ts[:0], vs[:0]
		for _, smp := range part {
			ts, vs = append(ts, smp.t), append(vs, smp.f)
		}
		buf = chunk.Append(buf[:0], ts, vs)
		emit(chunkRow{mint: part[0].t, maxt: part[len(part)-1].t, samples: uint32(len(part)), data: string(buf)})
	}
}

// chunkWriter collects chunk rows into column slices and inserts them.
type chunkWriter struct {
	s       *Store
	tenants []string
	names   []string
	fps     []uint64
	mints   []int64
	maxts   []int64
	hashes  []uint64
	counts  []uint32
	data    []string
}

func (w *chunkWriter) add(c chunkRow) {
	w.tenants = append(w.tenants, c.tenant)
	w.names = append(w.names, c.name)
	w.fps = append(w.fps, c.fp)
	w.mints = append(w.mints, c.mint)
	w.maxts = append(w.maxts, c.maxt)
	w.hashes = append(w.hashes, xxhash.Sum64String(c.data))
	w.counts = append(w.counts, c.samples)
	w.data = append(w.data, c.data)
}

func (w *chunkWriter) full() bool { return len(w.fps) >= compactInsertChunks }

func (w *chunkWriter) flush(ctx context.Context) error {
	if len(w.fps) == 0 {
		return nil
	}
	err := w.s.insert(ctx, "chunks", len(w.fps),
		"INSERT INTO "+w.s.db+".chunks (tenant, metric_name, fingerprint, min_ts, max_ts, hash, samples, data)",
		func(b driver.Batch) error {
			for i, col := range []any{w.tenants, w.names, w.fps, w.mints, w.maxts, w.hashes, w.counts, w.data} {
				if err := b.Column(i).Append(col); err != nil {
					return err
				}
			}
			return nil
		})
	if err != nil {
		return err
	}
	w.tenants, w.names, w.fps, w.mints, w.maxts = w.tenants[:0], w.names[:0], w.fps[:0], w.mints[:0], w.maxts[:0]
	w.hashes, w.counts, w.data = w.hashes[:0], w.counts[:0], w.data[:0]
	return nil
}

// RunCompaction compacts, every cfg.Interval until ctx ends, the raw days
// that ended more than cfg.Delay ago. owns,
// if not nil, says whether this hub is the one of its cluster that
// compacts now; two hubs compacting the same day write the same chunks,
// so ownership only saves work.
func (s *Store) RunCompaction(ctx context.Context, cfg CompactionConfig, owns func() bool) {
	if cfg.Disabled {
		return
	}
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		if owns == nil || owns() {
			horizon := time.Now().Add(-cfg.Delay)
			done, err := s.CompactBefore(ctx, horizon)
			for _, st := range done {
				s.logger.Info("compacted a day of raw samples into chunks", "day", st.Day.Format(time.DateOnly),
					"series", st.Series, "samples", st.Samples, "raw_rows", st.RawRows, "chunks", st.Chunks, "chunk_bytes", st.Bytes)
			}
			if err != nil && ctx.Err() == nil {
				s.logger.Error("compaction failed; will retry", "err", err, "retry_in", cfg.Interval)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
