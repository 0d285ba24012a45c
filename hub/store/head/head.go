// Package head keeps the hub's recent samples in memory, in Prometheus's
// own TSDB (one per tenant, no WAL), so that queries over the last hours
// (dashboards' last hour, every rule evaluation) are answered without a
// ClickHouse round trip, as Prometheus answers them from its head block
// and VictoriaMetrics from its in-memory parts. ClickHouse stays the store
// of record: the head is filled with what ingestion has stored there, and
// refilled from it when the hub starts.
//
// A read is served from the head only when the head holds every sample of
// its range (Querier says so), so an answer never depends on where it was
// read. The head holds, for a tenant, every sample stored through this hub
// whose timestamp is at or after its start of coverage, except the ones
// it could not append (kept as a hole: reads that overlap it go to
// ClickHouse). That is why the head needs to be the only writer: with
// several hubs in a cluster each would hold only what its own agents sent,
// and the hub does not build one there.
package head

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
	"github.com/bureauhub/bureauhub/internal/fpchain"
)

// Config configures the head.
type Config struct {
	// Disabled reads everything from ClickHouse.
	Disabled bool `yaml:"disabled"`
	// Window is how far back from now the head answers reads.
	Window time.Duration `yaml:"window"`
	// Dir holds the head's memory-mapped chunks and the blocks it cuts;
	// it is emptied at start (the head is refilled from ClickHouse).
	// Default: a temporary directory, removed at exit.
	Dir string `yaml:"dir"`
	// MaxSeries bounds each tenant's series in the head; a tenant over it
	// is read from ClickHouse until the hub restarts.
	MaxSeries int `yaml:"max_series"`
	// MaxHeldSamples bounds the samples stored during the refill and held
	// back until it is done; beyond it, blocks are appended at once, out of
	// order (correct, but the TSDB then keeps them in out-of-order chunks
	// until it compacts them).
	MaxHeldSamples int `yaml:"max_held_samples"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Window == 0 {
		c.Window = 3 * time.Hour
	}
	if c.MaxSeries == 0 {
		c.MaxSeries = 2_000_000
	}
	if c.MaxHeldSamples == 0 {
		c.MaxHeldSamples = 4_000_000
	}
}

// Validate reports the first invalid field under prefix.
func (c *Config) Validate(prefix string) error {
	if c.Disabled {
		return nil
	}
	if c.Window < 10*time.Minute {
		return fmt.Errorf("%s.window: must be at least 10m, got %s", prefix, c.Window)
	}
	if c.MaxSeries < 0 {
		return fmt.Errorf("%s.max_series: must not be negative", prefix)
	}
	if c.MaxHeldSamples < 0 {
		return fmt.Errorf("%s.max_held_samples: must not be negative", prefix)
	}
	return nil
}

// idleSeries is how long a series' labels are kept after its last
// sample. Ingestion sends a series' labels with its first samples of each
// UTC day, so the head must remember them for longer than a day.
const idleSeries = 48 * time.Hour

var _ clickhouse.Recent = (*Head)(nil)

// Head is the in-memory head. Append and Querier are safe for concurrent
// use.
type Head struct {
	cfg    Config
	logger *slog.Logger
	m      *metrics
	now    func() time.Time
	names  []string // the tenants
	dir    string
	tmpDir bool

	mu      sync.RWMutex
	tenants map[string]*tenant

	// While the head is refilled, stored blocks are held back (up to
	// query.head.max_held_samples) and appended after, so that the refill appends in
	// time order and the TSDB keeps everything in in-order chunks.
	holdMu     sync.Mutex
	holding    bool
	heldBlocks []*clickhouse.Block
	held       int
}

// tenant is one tenant's TSDB and what it covers.
type tenant struct {
	name string
	db   *tsdb.DB

	mu sync.Mutex
	// from is the start of coverage: the head holds every sample at or
	// after it, outside the hole. MaxInt64 until the refill is done.
	from int64
	// holeMin..holeMax spans the samples that could not be appended;
	// empty when holeMin > holeMax.
	holeMin, holeMax int64
	// full is set once the tenant has more than MaxSeries series.
	full bool
	// series by fingerprint, looked up in the order blocks bring them.
	series fpchain.Map[series]
}

type series struct {
	lset labels.Labels
	ref  storage.SeriesRef
	last int64 // wall time (ms) of the last append
}

// New builds the head for the given tenants; Open makes it usable.
func New(cfg Config, tenants []string, logger *slog.Logger, reg prometheus.Registerer) (*Head, error) {
	h := &Head{cfg: cfg, logger: logger, now: time.Now, tenants: map[string]*tenant{}, names: tenants}
	m, err := newMetrics(reg, h)
	if err != nil {
		return nil, fmt.Errorf("register head metrics: %w", err)
	}
	h.m = m
	return h, nil
}

// Open empties the head's directory and opens each tenant's TSDB. Until
// then the head appends and serves nothing.
func (h *Head) Open() error {
	dir := h.cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "bureauhub-head-")
		if err != nil {
			return fmt.Errorf("query.head.dir: create a temporary directory: %w", err)
		}
		dir, h.tmpDir = d, true
	} else if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("query.head.dir: empty %s: %w", dir, err)
	}
	h.dir = dir
	h.holding = true
	for _, name := range h.names {
		if err := h.open(name); err != nil {
			return errors.Join(err, h.Close())
		}
	}
	return nil
}

func (h *Head) open(name string) error {
	opts := tsdb.DefaultOptions()
	opts.WALSegmentSize = -1 // ClickHouse is the log: the head is refilled from it
	// Appends arrive out of order when an agent sends what it buffered
	// during an outage, and when more was stored during the refill than
	// the head holds back.
	opts.OutOfOrderTimeWindow = (h.cfg.Window + time.Hour).Milliseconds()
	opts.RetentionDuration = (h.cfg.Window + 2*time.Hour).Milliseconds()
	opts.NoLockfile = true
	db, err := tsdb.Open(filepath.Join(h.dir, url.PathEscape(name)), h.logger.With("tenant", name), nil, opts, nil)
	if err != nil {
		return fmt.Errorf("open the head of tenant %s: %w", name, err)
	}
	h.mu.Lock()
	h.tenants[name] = &tenant{name: name, db: db, from: math.MaxInt64, holeMin: math.MaxInt64, holeMax: math.MinInt64}
	h.mu.Unlock()
	return nil
}

// Close closes every tenant's TSDB and removes a temporary directory.
func (h *Head) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for _, t := range h.tenants {
		errs = append(errs, t.db.Close())
	}
	h.tenants = map[string]*tenant{}
	if h.tmpDir {
		errs = append(errs, os.RemoveAll(h.dir))
		h.tmpDir = false
	}
	return errors.Join(errs...)
}

func (h *Head) tenant(name string) *tenant {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.tenants[name]
}

// Append adds a block that ingestion has stored in ClickHouse. Samples it
// cannot append (out of the TSDB's bounds, a second value for a
// timestamp, a series whose labels it never saw) widen the tenant's hole.
func (h *Head) Append(b *clickhouse.Block) {
	h.holdMu.Lock()
	if h.holding {
		if h.held+b.Len() <= h.cfg.MaxHeldSamples {
			h.heldBlocks = append(h.heldBlocks, copyBlock(b))
			h.held += b.Len()
			h.holdMu.Unlock()
			return
		}
		h.m.unheld.Add(float64(b.Len()))
	}
	h.holdMu.Unlock()
	h.append(b)
}

func copyBlock(b *clickhouse.Block) *clickhouse.Block {
	return &clickhouse.Block{
		Series:       slices.Clone(b.Series),
		Tenants:      slices.Clone(b.Tenants),
		Fingerprints: slices.Clone(b.Fingerprints),
		Timestamps:   slices.Clone(b.Timestamps),
		Values:       slices.Clone(b.Values),
	}
}

// release appends the blocks held during the refill and stops holding.
func (h *Head) release() {
	for {
		h.holdMu.Lock()
		bs := h.heldBlocks
		h.heldBlocks, h.held = nil, 0
		if len(bs) == 0 {
			h.holding = false
			h.holdMu.Unlock()
			return
		}
		h.holdMu.Unlock()
		for _, b := range bs {
			h.append(b)
		}
	}
}

func (h *Head) append(b *clickhouse.Block) {
	now := h.now().UnixMilli()
	for i := range b.Series {
		r := &b.Series[i]
		tt := h.tenant(r.Tenant)
		if tt == nil {
			continue
		}
		tt.mu.Lock()
		tt.learn(r, now, h.cfg.MaxSeries, h.m)
		tt.mu.Unlock()
	}
	// The block's samples come in runs of one tenant (an agent's batches,
	// in the order the writer took them); each tenant's runs are appended
	// together, committed every commitSamples.
	var order []string
	runs := map[string][]sampleRun{}
	for i := 0; i < len(b.Tenants); {
		j := i + 1
		for j < len(b.Tenants) && b.Tenants[j] == b.Tenants[i] {
			j++
		}
		name := b.Tenants[i]
		if _, ok := runs[name]; !ok {
			order = append(order, name)
		}
		runs[name] = append(runs[name], sampleRun{i, j})
		i = j
	}
	appended, old := 0, 0
	for _, name := range order {
		if t := h.tenant(name); t != nil {
			a, o := h.appendRuns(t, b, runs[name], now)
			appended, old = appended+a, old+o
		}
	}
	h.m.appended.Add(float64(appended))
	if old > 0 {
		h.m.failures.WithLabelValues("before_window").Add(float64(old))
	}
}

// sampleRun is a block's samples [from, to), all of one tenant.
type sampleRun struct{ from, to int }

// commitSamples bounds the samples handled under a tenant's lock (which
// its reads wait for) before what was appended is committed.
const commitSamples = 50_000

// appendRuns appends t's runs of b. A sample older than the window is in
// no range the head answers (holds declines those), now or later: it is
// not appended, and leaves no hole (an agent's backlog after an outage
// would otherwise stretch the hole over the whole window at the next
// duplicate).
func (h *Head) appendRuns(t *tenant, b *clickhouse.Block, runs []sampleRun, now int64) (appended, old int) {
	oldest := now - h.cfg.Window.Milliseconds()
	var (
		app            storage.Appender
		pending        int // appended, to commit
		handled        int // under the lock, failures too
		appMin, appMax int64
		prev           *fpchain.Node[series]
	)
	commit := func() {
		if err := app.Commit(); err != nil {
			h.m.failures.WithLabelValues("commit").Add(float64(pending))
			t.widenHole(appMin, appMax)
		} else {
			appended += pending
		}
		t.mu.Unlock()
		app, pending, handled = nil, 0, 0
	}
	for _, r := range runs {
		for i := r.from; i < r.to; i++ {
			ts := b.Timestamps[i]
			if ts < oldest {
				old++
				continue
			}
			if app != nil && handled >= commitSamples {
				commit()
			}
			if app == nil {
				t.mu.Lock()
				app = t.db.Appender(context.Background())
				appMin, appMax = ts, ts
			}
			handled++
			appMin, appMax = min(appMin, ts), max(appMax, ts)
			s := t.series.Next(prev, b.Fingerprints[i])
			if s == nil {
				h.m.failures.WithLabelValues("unknown_series").Inc()
				t.widenHole(ts, ts)
				continue
			}
			ref, err := app.Append(s.V.ref, s.V.lset, ts, b.Values[i])
			if err != nil {
				h.m.failures.WithLabelValues(reason(err)).Inc()
				t.widenHole(ts, ts)
				continue
			}
			s.V.ref, s.V.last, prev = ref, now, s
			pending++
		}
	}
	if app != nil {
		commit()
	}
	return appended, old
}

func reason(err error) string {
	switch {
	case errors.Is(err, storage.ErrOutOfOrderSample), errors.Is(err, storage.ErrTooOldSample):
		return "out_of_order"
	case errors.Is(err, storage.ErrOutOfBounds):
		return "out_of_bounds"
	case errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
		return "duplicate"
	default:
		return "other"
	}
}

// learn records the labels of a series row. Callers hold t.mu.
func (t *tenant) learn(r *clickhouse.SeriesRow, now int64, maxSeries int, m *metrics) {
	t.seriesOf(r.Fingerprint, func() labels.Labels {
		b := labels.NewScratchBuilder(len(r.LabelNames) + 1)
		b.Add(labels.MetricName, r.MetricName)
		for i, n := range r.LabelNames {
			b.Add(n, r.LabelValues[i])
		}
		b.Sort()
		return b.Labels()
	}, now, maxSeries, m)
}

// seriesOf returns the series of fingerprint fp, adding it with the
// labels lset returns unless the tenant is at maxSeries (nil then).
// Callers hold t.mu.
func (t *tenant) seriesOf(fp uint64, lset func() labels.Labels, now int64, maxSeries int, m *metrics) *series {
	if s := t.series.Get(fp); s != nil {
		return &s.V
	}
	if maxSeries > 0 && t.series.Len() >= maxSeries {
		if !t.full {
			t.full = true
			m.full.Inc()
		}
		return nil
	}
	return &t.series.Add(nil, fp, series{lset: lset(), last: now}).V
}

// widenHole adds [lo, hi] to the hole. Callers hold t.mu.
func (t *tenant) widenHole(lo, hi int64) {
	t.holeMin, t.holeMax = min(t.holeMin, lo), max(t.holeMax, hi)
}

// covers reports whether the head holds every sample of [mint, maxt],
// and why not.
func (t *tenant) covers(mint, maxt int64) (bool, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.from == math.MaxInt64:
		return false, "not_ready"
	case t.full:
		return false, "over_max_series"
	case mint < t.from:
		return false, "before_coverage"
	case t.holeMin <= t.holeMax && mint <= t.holeMax && maxt >= t.holeMin:
		return false, "hole"
	}
	return true, ""
}

// holds returns scope's tenants when the head holds every sample of
// [mint, maxt] there, and otherwise why not.
func (h *Head) holds(scope clickhouse.Scope, mint, maxt int64) ([]*tenant, string) {
	if mint < h.now().Add(-h.cfg.Window).UnixMilli() {
		return nil, "before_window"
	}
	h.mu.RLock()
	var ts []*tenant
	if scope.All {
		for _, t := range h.tenants {
			ts = append(ts, t)
		}
	} else {
		for _, name := range scope.Tenants {
			t := h.tenants[name]
			if t == nil {
				h.mu.RUnlock()
				return nil, "unknown_tenant"
			}
			ts = append(ts, t)
		}
	}
	h.mu.RUnlock()
	if len(ts) == 0 {
		return nil, "no_tenant" // a closed head, or a scope of none
	}
	for _, t := range ts {
		if ok, why := t.covers(mint, maxt); !ok {
			return nil, why
		}
	}
	return ts, ""
}

// Holds implements clickhouse.Recent.
func (h *Head) Holds(scope clickhouse.Scope, mint, maxt int64) bool {
	ts, _ := h.holds(scope, mint, maxt)
	return ts != nil
}

// Querier implements clickhouse.Recent: a querier over [mint, maxt] of
// scope's tenants when the head holds every sample of that range there,
// and false otherwise. The caller closes it once done with the series it
// returned.
func (h *Head) Querier(scope clickhouse.Scope, mint, maxt int64) (storage.Querier, bool) {
	ts, why := h.holds(scope, mint, maxt)
	if ts == nil {
		h.m.reads.WithLabelValues("clickhouse", why).Inc()
		return nil, false
	}
	qs := make([]storage.Querier, 0, len(ts))
	for _, t := range ts {
		q, err := t.db.Querier(mint, maxt)
		if err != nil {
			for _, q := range qs {
				q.Close()
			}
			h.logger.Warn("open a head querier; reading ClickHouse", "tenant", t.name, "err", err)
			h.m.reads.WithLabelValues("clickhouse", "error").Inc()
			return nil, false
		}
		qs = append(qs, q)
	}
	h.m.reads.WithLabelValues("head", "").Inc()
	q := qs[0]
	if len(qs) > 1 {
		// Tenants' series never share labels: ingestion sets each one's
		// bureau label.
		q = storage.NewMergeQuerier(qs, nil, storage.ChainedSeriesMerge)
	}
	h.m.openReads.Inc()
	return &openRead{Querier: q, m: h.m}, true
}

// openRead counts a querier until it is closed: an open one keeps the
// TSDB from truncating what it reads, and a leaked one would keep it
// forever.
type openRead struct {
	storage.Querier
	m    *metrics
	once sync.Once
}

func (r *openRead) Close() error {
	r.once.Do(r.m.openReads.Dec)
	return r.Querier.Close()
}

// Refill loads each tenant's samples of the window from ClickHouse, then
// starts the tenant's coverage at the window's start, and appends the
// blocks stored meanwhile (held back by Append). It reads the window in
// slices of an hour, oldest first, every metric of a slice before the next,
// so that the TSDB takes every sample in order; a block appended twice (stored
// before the read, held and appended after) is kept once.
func (h *Head) Refill(ctx context.Context, read func(tenant string) storage.Queryable) error {
	h.mu.RLock()
	ts := make([]*tenant, 0, len(h.tenants))
	for _, t := range h.tenants {
		ts = append(ts, t)
	}
	h.mu.RUnlock()
	start := h.now()
	from := start.Add(-h.cfg.Window).UnixMilli()
	var total int
	for _, t := range ts {
		n, err := h.refill(ctx, t, read(t.name), from)
		if err != nil {
			return fmt.Errorf("refill the head of tenant %s: %w", t.name, err)
		}
		total += n
	}
	h.release()
	took := time.Since(start)
	// Recorded before coverage starts, so that whoever waits for the
	// coverage (the query benchmark) finds them.
	h.m.refillSeconds.Set(took.Seconds())
	h.m.refilled.Add(float64(total))
	for _, t := range ts {
		t.mu.Lock()
		t.from = from
		t.mu.Unlock()
	}
	h.logger.Info("head refilled from ClickHouse", "samples", total, "window", h.cfg.Window.String(), "took", took.Round(time.Millisecond).String())
	return nil
}

// refillSlice is the span of one read of the refill: half the TSDB's
// block range (2h), the span behind its newest sample within which it
// takes samples in order.
const refillSlice = time.Hour

// refill reads one tenant's window slice by slice and metric by metric,
// so that no read holds more than one metric's samples of a slice.
func (h *Head) refill(ctx context.Context, t *tenant, read storage.Queryable, from int64) (int, error) {
	ctx = clickhouse.ClickHouseOnly(ctx)
	q, err := read.Querier(from, math.MaxInt64)
	if err != nil {
		return 0, err
	}
	defer q.Close()
	names, _, err := q.LabelValues(ctx, labels.MetricName, nil)
	if err != nil {
		return 0, fmt.Errorf("list metric names: %w", err)
	}
	now := h.now().UnixMilli()
	n := 0
	for lo := from; ; lo += refillSlice.Milliseconds() {
		hi := lo + refillSlice.Milliseconds() - 1
		last := lo > now
		if last {
			hi = math.MaxInt64 // what lies ahead of the clock
		}
		for _, name := range names {
			m, err := h.refillRead(ctx, t, q, name, lo, hi, now)
			n += m
			if err != nil {
				return n, fmt.Errorf("read %s: %w", name, err)
			}
		}
		if last {
			return n, nil
		}
	}
}

// refillRead appends one metric's samples of [lo, hi].
func (h *Head) refillRead(ctx context.Context, t *tenant, q storage.Querier, name string, lo, hi, now int64) (int, error) {
	set := q.Select(ctx, false, &storage.SelectHints{Start: lo, End: hi}, labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, name))
	t.mu.Lock()
	defer t.mu.Unlock()
	app := t.db.Appender(ctx)
	var it chunkenc.Iterator
	n := 0
	for set.Next() {
		s := set.At()
		hs := t.seriesOf(clickhouse.Fingerprint(s.Labels()), s.Labels, now, h.cfg.MaxSeries, h.m)
		if hs == nil {
			continue
		}
		it = s.Iterator(it)
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			if vt != chunkenc.ValFloat {
				continue // the store holds floats only
			}
			ts, v := it.At()
			if ts < lo || ts > hi {
				continue
			}
			ref, err := app.Append(hs.ref, hs.lset, ts, v)
			if err != nil {
				h.m.failures.WithLabelValues(reason(err)).Inc()
				t.widenHole(ts, ts)
				continue
			}
			hs.ref = ref
			n++
		}
		if err := it.Err(); err != nil {
			_ = app.Rollback()
			return 0, err
		}
	}
	if err := set.Err(); err != nil {
		_ = app.Rollback()
		return 0, err
	}
	return n, app.Commit()
}

// Run refills the head, retrying until it succeeds, then forgets the
// labels of series idle for longer than ingestion could send samples
// without them, until ctx ends. The TSDBs cut and drop their own blocks.
func (h *Head) Run(ctx context.Context, read func(tenant string) storage.Queryable) {
	backoff := time.Second
	for {
		err := h.Refill(ctx, read)
		if err == nil {
			break
		}
		h.logger.Warn("could not refill the head; reads go to ClickHouse meanwhile", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Minute)
	}
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		h.forgetIdle()
	}
}

func (h *Head) forgetIdle() {
	cut := h.now().Add(-idleSeries).UnixMilli()
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, t := range h.tenants {
		t.mu.Lock()
		t.series.Sweep(func(s *fpchain.Node[series]) bool { return s.V.last < cut })
		t.mu.Unlock()
	}
}
