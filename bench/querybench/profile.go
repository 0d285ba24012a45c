package querybench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
)

// Profile is where the hub's query time goes, measured in process with
// the hub's own store and Prometheus' engine as hub/query builds it,
// against the same ClickHouse.
type Profile struct {
	Reps    int             `json:"reps"`
	Queries []*ProfileQuery `json:"queries"`
	// CPUProfile is the pprof file; Top the flat and cumulative top of it.
	CPUProfile string `json:"cpu_profile"`
	TopFlat    string `json:"top_flat"`
	TopCum     string `json:"top_cumulative"`
	Note       string `json:"note,omitempty"`
	// Probes time variants of the heaviest query's reads in ClickHouse
	// alone (over HTTP, FORMAT Null unless said otherwise).
	ProbeQuery string   `json:"probe_query,omitempty"`
	Probes     []*Probe `json:"clickhouse_probes,omitempty"`
}

// Probe is one ClickHouse statement timed on its own.
type Probe struct {
	Name   string  `json:"name"`
	SQL    string  `json:"sql"`
	Millis float64 `json:"median_ms"`
	Error  string  `json:"error,omitempty"`
}

// ProfileQuery splits one query's median run into storage (Select and
// iterating the series set: the ClickHouse statements, transfer and
// decoding) and the rest (PromQL evaluation), and reports the ClickHouse
// server's own time for the statements from system.query_log.
type ProfileQuery struct {
	Name          string  `json:"name"`
	TotalMillis   float64 `json:"total_ms"`
	StorageMillis float64 `json:"storage_ms"`
	EngineMillis  float64 `json:"engine_ms"`
	// ServerMillis sums query_duration_ms of the run's statements; the
	// remainder of StorageMillis is client-side: waiting for and decoding
	// blocks, building series.
	ServerMillis float64 `json:"clickhouse_server_ms"`
	// ServerSeriesMillis, ServerChunksMillis and ServerSamplesMillis split
	// ServerMillis into statements on the series, chunks and samples tables.
	ServerSeriesMillis  float64 `json:"clickhouse_series_statements_ms"`
	ServerSamplesMillis float64 `json:"clickhouse_samples_statements_ms"`
	ServerChunksMillis  float64 `json:"clickhouse_chunks_statements_ms"`
	PeakMemoryMB        float64 `json:"clickhouse_peak_memory_mb"`
	Statements          float64 `json:"clickhouse_statements"`
	ReadRows            float64 `json:"clickhouse_read_rows"`
	ResultRows          float64 `json:"clickhouse_result_rows"`
	ResultBytes         float64 `json:"clickhouse_result_bytes"`
	SamplesLoaded       int64   `json:"samples_in_result_series"`
	Error               string  `json:"error,omitempty"`
}

// profileHub runs each query ProfileReps times in this process
// under a CPU profile.
func (r *runner) profileHub(ctx context.Context, qs []Query) (*Profile, error) {
	store, err := r.openStore(8)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	engine := promql.NewEngine(promql.EngineOpts{
		Logger:               slog.New(slog.DiscardHandler),
		MaxSamples:           50_000_000,
		Timeout:              5 * time.Minute,
		LookbackDelta:        5 * time.Minute,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
	})
	p := &Profile{Reps: r.cfg.ProfileReps, CPUProfile: filepath.Join(r.cfg.OutDir, "query-hub.cpu.pprof")}
	f, err := os.Create(p.CPUProfile)
	if err != nil {
		return nil, err
	}
	// Statements are logged only for this context; the queries of one
	// PromQL query are told apart by their start second, so each query's
	// runs are a second apart from the next query's.
	logCtx := ch.Context(ctx, ch.WithSettings(ch.Settings{"log_queries": 1}))
	type window struct{ from, to int64 }
	windows := make([]window, 0, len(qs))
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	for _, q := range qs {
		pq := &ProfileQuery{Name: q.Name}
		p.Queries = append(p.Queries, pq)
		from := time.Now().Unix()
		var totals, stores []time.Duration
		for range r.cfg.ProfileReps {
			var storeNanos atomic.Int64
			tq := timedQueryable{q: store.Queryable(clickhouse.Scope{All: true}, clickhouse.Limits{}), nanos: &storeNanos}
			start := time.Now()
			qry, err := engine.NewRangeQuery(logCtx, tq, nil, q.Expr, q.Start, q.End, q.Step)
			if err != nil {
				pq.Error = err.Error()
				break
			}
			res := qry.Exec(logCtx)
			total := time.Since(start)
			if res.Err != nil {
				pq.Error = res.Err.Error()
				qry.Close()
				break
			}
			if m, err := res.Matrix(); err == nil {
				pq.SamplesLoaded = int64(m.TotalSamples())
			}
			qry.Close()
			totals = append(totals, total)
			stores = append(stores, time.Duration(storeNanos.Load()))
		}
		windows = append(windows, window{from, time.Now().Unix()})
		if len(totals) > 0 {
			i := medianIndex(totals)
			pq.TotalMillis = ms(totals[i])
			pq.StorageMillis = ms(stores[i])
			pq.EngineMillis = pq.TotalMillis - pq.StorageMillis
		}
		time.Sleep(1100 * time.Millisecond)
	}
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		return nil, err
	}

	// query_log is flushed every second (config.d/query_log.xml).
	time.Sleep(3 * time.Second)
	out, err := r.ch.Query(ctx, fmt.Sprintf(`SELECT toUnixTimestamp(query_start_time), query_duration_ms, read_rows, result_rows, result_bytes,
		memory_usage, multiIf(position(query, '.samples') > 0, 'samples', position(query, '.chunks') > 0, 'chunks', 'series')
		FROM system.query_log WHERE type = 2 AND event_date >= yesterday() AND query_start_time >= toDateTime(%d) AND query LIKE 'SELECT%%' FORMAT TSV`, windows[0].from))
	if err != nil {
		p.Note = "system.query_log unavailable: " + err.Error()
	} else {
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Split(line, "\t")
			if len(f) != 7 {
				continue
			}
			at, _ := strconv.ParseInt(f[0], 10, 64)
			for i, w := range windows {
				if at >= w.from && at <= w.to {
					pq := p.Queries[i]
					n := float64(p.Reps)
					v := func(s string) float64 { x, _ := strconv.ParseFloat(s, 64); return x / n }
					pq.ServerMillis += v(f[1])
					switch f[6] {
					case "samples":
						pq.ServerSamplesMillis += v(f[1])
					case "chunks":
						pq.ServerChunksMillis += v(f[1])
					default:
						pq.ServerSeriesMillis += v(f[1])
					}
					pq.PeakMemoryMB = max(pq.PeakMemoryMB, v(f[5])*n/1e6)
					pq.Statements += v("1")
					pq.ReadRows += v(f[2])
					pq.ResultRows += v(f[3])
					pq.ResultBytes += v(f[4])
				}
			}
		}
		p.Note = "ClickHouse columns are per run, averaged over the runs; total, storage and engine are the median run's."
	}
	// The probes take the full-span cpu-by-bureau: the longest window of
	// that query.
	var heaviest *Query
	for i, q := range qs {
		if strings.HasPrefix(q.Name, "cpu-by-bureau") && (heaviest == nil || q.Window > heaviest.Window) {
			heaviest = &qs[i]
		}
	}
	if heaviest != nil {
		p.ProbeQuery, p.Probes = r.probe(ctx, *heaviest)
	}
	exe, err := os.Executable()
	if err != nil {
		return p, nil
	}
	p.TopFlat = pprofTop(exe, p.CPUProfile, false)
	p.TopCum = pprofTop(exe, p.CPUProfile, true)
	_ = os.WriteFile(filepath.Join(r.cfg.OutDir, "query-hub.cpu.txt"), []byte(p.TopFlat+"\n\n"+p.TopCum), 0o644)
	return p, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func medianIndex(ds []time.Duration) int {
	idx := make([]int, len(ds))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return int(ds[a] - ds[b]) })
	return idx[len(idx)/2]
}

// pprofTop renders the profile's top functions with go tool pprof.
func pprofTop(exe, profile string, cum bool) string {
	args := []string{"tool", "pprof", "-top", "-nodecount=25"}
	if cum {
		args = append(args, "-cum")
	}
	out, err := exec.Command("go", append(args, exe, profile)...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("go tool pprof: %v: %s", err, abbreviate(string(out), 500))
	}
	return strings.TrimSpace(string(out))
}

// timedQueryable adds the time spent in Select and in the series set's
// Next to nanos, so that lazy and eager stores are measured alike.
type timedQueryable struct {
	q     storage.Queryable
	nanos *atomic.Int64
}

func (t timedQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	in, err := t.q.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return timedQuerier{Querier: in, nanos: t.nanos}, nil
}

type timedQuerier struct {
	storage.Querier
	nanos *atomic.Int64
}

func (t timedQuerier) Select(ctx context.Context, sort bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	start := time.Now()
	ss := t.Querier.Select(ctx, sort, hints, ms...)
	t.nanos.Add(int64(time.Since(start)))
	return timedSeriesSet{SeriesSet: ss, nanos: t.nanos}
}

type timedSeriesSet struct {
	storage.SeriesSet
	nanos *atomic.Int64
}

func (t timedSeriesSet) Next() bool {
	start := time.Now()
	ok := t.SeriesSet.Next()
	t.nanos.Add(int64(time.Since(start)))
	return ok
}

func (t timedSeriesSet) Warnings() annotations.Annotations { return t.SeriesSet.Warnings() }

// probe runs the heaviest full-span query's reads as variants straight in
// ClickHouse, to tell what reading, filtering, ordering, packing and
// sending the samples each cost on this server.
func (r *runner) probe(ctx context.Context, q Query) (string, []*Probe) {
	mint, maxt := q.Start.Add(-5*time.Minute).UnixMilli(), q.End.UnixMilli()
	seriesWhere := fmt.Sprintf("date >= toDate('%s') AND date <= toDate('%s') AND metric_name = 'node_cpu_seconds_total' AND label_values[indexOf(label_names, 'mode')] != 'idle'",
		q.Start.Add(-5*time.Minute).UTC().Format("2006-01-02"), q.End.UTC().Format("2006-01-02"))
	db := hubDB
	samplesWhere := fmt.Sprintf("ts >= %d AND ts <= %d AND (tenant, fingerprint) IN (SELECT tenant, fingerprint FROM %s.series WHERE %s)", mint, maxt, db, seriesWhere)
	packed := "arrayStringConcat(groupArray(concat(toFixedString(reinterpretAsString(ts), 8), toFixedString(reinterpretAsString(value), 8), '|')))"
	probes := []*Probe{
		{Name: "series rows of the selected series, one per series (GROUP BY)", SQL: fmt.Sprintf(
			"SELECT tenant, fingerprint, any(metric_name), any(label_names), any(label_values) FROM %s.series WHERE %s GROUP BY tenant, fingerprint FORMAT Null", db, seriesWhere)},
		{Name: "count the selected samples", SQL: fmt.Sprintf("SELECT count() FROM %s.samples WHERE %s", db, samplesWhere)},
		{Name: "all samples in the time range, counted (no series filter)", SQL: fmt.Sprintf("SELECT count() FROM %s.samples WHERE ts >= %d AND ts <= %d", db, mint, maxt)},
		{Name: "selected samples as rows (tenant, fingerprint, ts, value)", SQL: fmt.Sprintf(
			"SELECT tenant, fingerprint, ts, value FROM %s.samples WHERE %s FORMAT Null", db, samplesWhere)},
		{Name: "selected samples as rows, ORDER BY tenant, fingerprint, ts", SQL: fmt.Sprintf(
			"SELECT tenant, fingerprint, ts, value FROM %s.samples WHERE %s ORDER BY tenant, fingerprint, ts FORMAT Null", db, samplesWhere)},
		{Name: "selected samples as two arrays per series (groupArray(ts), groupArray(value))", SQL: fmt.Sprintf(
			"SELECT tenant, fingerprint, groupArray(ts), groupArray(value) FROM %s.samples WHERE %s GROUP BY tenant, fingerprint FORMAT Null", db, samplesWhere)},
		{Name: "selected samples packed into one String per series (17-byte records, as the hub's querier read them at the time of this run)", SQL: fmt.Sprintf(
			"SELECT tenant, fingerprint, %s FROM %s.samples WHERE %s GROUP BY tenant, fingerprint FORMAT Null", packed, db, samplesWhere)},
		{Name: "the same packed rows sent over HTTP as RowBinary and read by this process", SQL: fmt.Sprintf(
			"SELECT tenant, fingerprint, %s FROM %s.samples WHERE %s GROUP BY tenant, fingerprint FORMAT RowBinary", packed, db, samplesWhere)},
		{Name: "per series and 90 s step, the last sample (a pushed-down downsampling, for scale)", SQL: fmt.Sprintf(
			"SELECT tenant, fingerprint, intDiv(ts, 90000) AS step, argMax(value, ts) FROM %s.samples WHERE %s GROUP BY tenant, fingerprint, step FORMAT Null", db, samplesWhere)},
	}
	if r.cfg.Compact {
		// The hub lists the fingerprints per tenant; a subquery selects
		// the same rows here.
		chunksWhere := fmt.Sprintf("metric_name = 'node_cpu_seconds_total' AND min_ts > %d AND min_ts <= %d AND max_ts >= %d AND (tenant, fingerprint) IN (SELECT tenant, fingerprint FROM %s.series WHERE %s)",
			mint-86_400_000, maxt, mint, db, seriesWhere)
		probes = []*Probe{
			probes[0],
			{Name: "count the selected chunks and their samples", SQL: fmt.Sprintf("SELECT count(), sum(samples) FROM %s.chunks WHERE %s", db, chunksWhere)},
			{Name: "selected chunks, the columns the hub reads (tenant, fingerprint, min_ts, max_ts, samples, data)", SQL: fmt.Sprintf(
				"SELECT tenant, fingerprint, min_ts, max_ts, samples, data FROM %s.chunks PREWHERE %s FORMAT Null", db, chunksWhere)},
			{Name: "the same rows sent over HTTP as RowBinary and read by this process", SQL: fmt.Sprintf(
				"SELECT tenant, fingerprint, min_ts, max_ts, samples, data FROM %s.chunks PREWHERE %s FORMAT RowBinary", db, chunksWhere)},
			{Name: "raw samples left in the range (none once every day is compacted)", SQL: fmt.Sprintf("SELECT count() FROM %s.samples WHERE %s", db, samplesWhere)},
		}
	}
	for _, pr := range probes {
		var runs []float64
		for range 3 {
			start := time.Now()
			if _, err := r.ch.Query(ctx, pr.SQL); err != nil {
				pr.Error = abbreviate(err.Error(), 300)
				break
			}
			runs = append(runs, ms(time.Since(start)))
		}
		if len(runs) > 0 {
			slices.Sort(runs)
			pr.Millis = quantile(runs, 0.5)
		}
	}
	return q.Name, probes
}
