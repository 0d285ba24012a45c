package ingest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bureauhub/bureauhub/e2e"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chserver"
)

const hubDB = "bureauhub"

// hubRuns runs the sweep, then the main run with the sweep's fastest
// setting, which is also measured for storage.
func (r *runner) hubRuns(ctx context.Context) error {
	if r.cfg.HubBinary != "" {
		r.hubBin = r.cfg.HubBinary
	} else {
		root, err := moduleRoot()
		if err != nil {
			return err
		}
		dir := filepath.Join(r.work, "bin")
		r.logf("building cmd/hub into %s", dir)
		if err := e2e.Build(root, dir, "hub"); err != nil {
			return err
		}
		r.hubBin = filepath.Join(dir, "hub")
	}
	if v := binVersion(chBinary(r.cfg.ClickHouseBinary), "clickhouse-server"); v != "" {
		r.res.Machine.Versions["clickhouse"] = v
	}
	best := r.cfg.Hub
	if len(r.cfg.Sweep) > 0 {
		bestRate := -1.0
		for _, s := range r.cfg.Sweep {
			m, err := r.hubRun(ctx, s, "sweep", window{warmup: r.cfg.SweepWarmup, duration: r.cfg.SweepDuration}, false)
			if err != nil {
				return err
			}
			if m.SamplesPerSecond > bestRate {
				best, bestRate = s, m.SamplesPerSecond
			}
		}
	}
	r.res.BestHubSetting = best.String()
	w := window{warmup: r.cfg.Warmup, duration: r.cfg.Duration}
	_, err := r.hubRun(ctx, best, "main", w, true)
	return err
}

func chBinary(name string) string {
	if name != "" {
		return name
	}
	for _, c := range []string{"clickhouse-server", "/usr/sbin/clickhouse-server", "clickhouse"} {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	return "clickhouse-server"
}

// hubRun measures one hub setting on a fresh ClickHouse, so that no run
// pays for merging an earlier run's parts.
func (r *runner) hubRun(ctx context.Context, s HubSetting, role string, w window, analyze bool) (*Measurement, error) {
	r.runSeq++
	name := fmt.Sprintf("hub-%d", r.runSeq)
	dir := filepath.Join(r.work, name)
	r.logf("%s: starting clickhouse-server and hub with flush_samples=%d writers=%d", name, s.FlushSamples, s.Writers)
	chLog, err := os.Create(filepath.Join(r.logDir, name+"-clickhouse.out"))
	if err != nil {
		return nil, err
	}
	defer chLog.Close()
	srv, err := chserver.Start(ctx, chserver.Options{Dir: filepath.Join(dir, "clickhouse"), Binary: r.cfg.ClickHouseBinary, Log: chLog})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := srv.Stop(); err != nil {
			r.logf("%s: %v", name, err)
		}
		if !r.cfg.Keep {
			os.RemoveAll(dir)
		}
	}()
	chPID := srv.PID()
	grpcPort, err := e2e.FreePort()
	if err != nil {
		return nil, err
	}
	httpPort, err := e2e.FreePort()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "hub.yml")
	hubCfg := fmt.Sprintf(`grpc_listen_address: 127.0.0.1:%d
http_listen_address: 127.0.0.1:%d
tls: {cert_file: %s, key_file: %s}
shutdown_timeout: 60s
clickhouse: {addr: [%q], database: %s}
ingest:
  flush_samples: %d
  writers: %d
  queue_samples: %d
  flush_interval: %s
  max_future: %s
query: {head: {disabled: %t}}
tenants:
  - {name: bench, token_file: %s}
`, grpcPort, httpPort, r.certs.CertFile, r.certs.KeyFile, srv.Addr(), hubDB, s.FlushSamples, s.Writers,
		max(4_000_000, 4*s.FlushSamples), r.cfg.HubFlushInterval, r.maxFuture(), !r.cfg.HubHead, r.tokFile)
	if err := os.WriteFile(cfgPath, []byte(hubCfg), 0o644); err != nil {
		return nil, err
	}
	hub, err := e2e.Start(name, r.hubBin, []string{"-config.file", cfgPath, "-log.level", "info"}, r.logDir)
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			hub.Kill()
		}
	}()
	if err := waitLog(ctx, hub, `"msg":"ingest ready"`, 60*time.Second); err != nil {
		return nil, err
	}

	agentIDs := make([]string, r.cfg.Streams)
	for i := range agentIDs {
		agentIDs[i] = fmt.Sprintf("ingestbench-%d-%d", time.Now().UnixNano(), i)
	}
	fs := &federationSender{
		addr: fmt.Sprintf("127.0.0.1:%d", grpcPort), serverName: "localhost", caPEM: r.caPEM, token: r.token,
		agentIDs: agentIDs, inflight: r.cfg.Inflight, batchSize: r.cfg.BatchSize, drain: r.cfg.Drain,
	}
	if analyze && r.cfg.PerfHub {
		w.perfPID = hub.Pid()
		w.perfOut = filepath.Join(r.cfg.OutDir, "hub.perf.data")
	}
	setting := fmt.Sprintf("TLS, flush_samples=%d, writers=%d, flush_interval=%s, %d streams x %d in flight%s", s.FlushSamples, s.Writers, r.cfg.HubFlushInterval, r.cfg.Streams, r.cfg.Inflight, r.headSetting())
	m, err := r.measure(ctx, Measurement{Target: targetHub, Setting: setting, Role: role},
		[]namedPID{{"hub", hub.Pid()}, {"clickhouse", chPID}}, r.cfg.Streams, fs.run, w)
	if err != nil {
		return nil, err
	}
	m.Metrics = scrapeMetrics(fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort), nil,
		"bureauhub_ingest_backpressure_waits_total", "bureauhub_ingest_write_retries_total",
		"bureauhub_ingest_rejected_samples_total", "bureauhub_ingest_written_samples_total",
		"bureauhub_ingest_insert_samples_sum", "bureauhub_ingest_insert_samples_count",
		"bureauhub_clickhouse_write_errors_total",
		`bureauhub_clickhouse_write_duration_seconds_sum{table="samples"}`, `bureauhub_clickhouse_write_duration_seconds_count{table="samples"}`,
		`bureauhub_clickhouse_write_duration_seconds_sum{table="agent_progress"}`, `bureauhub_clickhouse_write_duration_seconds_count{table="agent_progress"}`,
		`bureauhub_clickhouse_write_duration_seconds_sum{table="series"}`, `bureauhub_clickhouse_write_duration_seconds_count{table="series"}`)
	avg := func(key, sum, count string, scale float64) {
		if c := m.Metrics[count]; c > 0 {
			m.Metrics[key] = m.Metrics[sum] / c * scale
		}
	}
	avg("avg_insert_samples", "bureauhub_ingest_insert_samples_sum", "bureauhub_ingest_insert_samples_count", 1)
	for _, t := range []string{"samples", "progress", "series"} {
		table := t
		if t == "progress" {
			table = "agent_progress"
		}
		avg("avg_"+t+"_insert_ms", `bureauhub_clickhouse_write_duration_seconds_sum{table="`+table+`"}`,
			`bureauhub_clickhouse_write_duration_seconds_count{table="`+table+`"}`, 1000)
	}
	stopped = true
	if err := hub.Stop(90 * time.Second); err != nil {
		m.Notes = append(m.Notes, "hub stop: "+err.Error())
	}
	if out, err := srv.Query(ctx, "SELECT count() FROM "+hubDB+".samples"); err == nil {
		m.StoredSamples, _ = strconv.ParseInt(strings.TrimSpace(out), 10, 64)
		if m.StoredSamples != m.AckedSamples {
			m.Notes = append(m.Notes, fmt.Sprintf("ClickHouse holds %d samples, %d were acknowledged", m.StoredSamples, m.AckedSamples))
		}
	}
	r.res.Runs = append(r.res.Runs, m)
	r.logf("%s: %.0f samples/s (%s); hub+clickhouse %.2f CPU s/s, peak RSS %s", name, m.SamplesPerSecond, role, m.TargetCPU, mib(m.PeakRSSBytes))
	if w.perfOut != "" {
		perfReport(w.perfOut, filepath.Join(r.cfg.OutDir, "hub.perf.txt"))
	}
	if !analyze {
		return m, nil
	}
	st, err := chStorage(ctx, srv, "samples", "series", "LZ4 (ClickHouse default)")
	if err != nil {
		return nil, err
	}
	r.res.Storage = append(r.res.Storage, st)
	r.logf("%s: ClickHouse LZ4: %.3f bytes/sample in samples, %.4f amortised series", name, st.BytesPerSample, st.SeriesBytesPerSample)
	// Compaction drops the raw rows: keep a copy for the ZSTD measurement.
	lc := map[string]string{"allow_experimental_low_cardinality_type": "1"}
	if _, err := srv.QueryWithSettings(ctx, "CREATE TABLE "+hubDB+".raw_copy AS "+hubDB+".samples", lc); err != nil {
		return nil, err
	}
	if _, err := srv.Query(ctx, "INSERT INTO "+hubDB+".raw_copy SELECT * FROM "+hubDB+".samples"); err != nil {
		return nil, err
	}
	cst, err := r.compact(ctx, srv, m)
	if err != nil {
		return nil, err
	}
	r.res.Storage = append(r.res.Storage, cst)
	r.logf("%s: ClickHouse LZ4, compacted: %.3f bytes/sample in chunks", name, cst.BytesPerSample)
	if r.cfg.ZSTD {
		for _, st := range r.zstdStorage(ctx, srv) {
			if st.err != nil {
				return nil, st.err
			}
			r.res.Storage = append(r.res.Storage, st.Storage)
			r.logf("%s: ClickHouse ZSTD: %.3f bytes/sample in %s", name, st.BytesPerSample, st.Table)
		}
	}
	return m, nil
}

// compact compacts every day the run wrote, as the hub's compaction does
// with days older than ingest.max_age, and measures the chunks.
func (r *runner) compact(ctx context.Context, srv *chserver.Server, m *Measurement) (Storage, error) {
	cfg := clickhouse.Config{Addr: []string{srv.Addr()}, Database: hubDB}
	cfg.SetDefaults()
	store, err := clickhouse.Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		return Storage{}, err
	}
	defer store.Close()
	began := time.Now()
	done, err := store.CompactBefore(ctx, time.Now().Add(100*24*time.Hour))
	if err != nil {
		return Storage{}, err
	}
	took := time.Since(began)
	compacted := 0
	for _, d := range done {
		compacted += d.Samples
	}
	if int64(compacted) != m.StoredSamples {
		m.Notes = append(m.Notes, fmt.Sprintf("compaction wrote %d samples into chunks, %d were stored raw", compacted, m.StoredSamples))
	}
	st, err := chStorage(ctx, srv, "chunks", "series", "LZ4 (ClickHouse default)")
	if err != nil {
		return st, err
	}
	st.Note = fmt.Sprintf("compaction: %d day(s), %s samples in %.1f s (%s samples/s); ", len(done),
		num(float64(compacted)), took.Seconds(), num(float64(compacted)/took.Seconds())) + st.Note
	return st, nil
}

type storageResult struct {
	Storage
	err error
}

// zstdStorage restarts the server with ZSTD as its compression method
// (18.16 has no column codecs) and copies the tables (the raw rows from
// the copy kept before compaction), so that the same data is measured
// with both methods, raw and compacted.
func (r *runner) zstdStorage(ctx context.Context, srv *chserver.Server) []storageResult {
	fail := func(err error) []storageResult { return []storageResult{{err: err}} }
	confD := filepath.Join(srv.Dir(), "config.d")
	if err := os.MkdirAll(confD, 0o755); err != nil {
		return fail(err)
	}
	const zstdXML = `<?xml version="1.0"?>
<yandex>
    <compression>
        <case>
            <min_part_size>0</min_part_size>
            <min_part_size_ratio>0</min_part_size_ratio>
            <method>zstd</method>
        </case>
    </compression>
</yandex>
`
	if err := os.WriteFile(filepath.Join(confD, "zstd.xml"), []byte(zstdXML), 0o644); err != nil {
		return fail(err)
	}
	if err := srv.Restart(ctx); err != nil {
		return fail(err)
	}
	lc := map[string]string{"allow_experimental_low_cardinality_type": "1"}
	for _, t := range [][2]string{{"raw_copy", "samples_zstd"}, {"series", "series_zstd"}, {"chunks", "chunks_zstd"}} {
		if _, err := srv.QueryWithSettings(ctx, fmt.Sprintf("CREATE TABLE %s.%s AS %s.%s", hubDB, t[1], hubDB, t[0]), lc); err != nil {
			return fail(err)
		}
		if _, err := srv.Query(ctx, fmt.Sprintf("INSERT INTO %s.%s SELECT * FROM %s.%s", hubDB, t[1], hubDB, t[0])); err != nil {
			return fail(err)
		}
	}
	var out []storageResult
	for _, t := range []string{"samples_zstd", "chunks_zstd"} {
		st, err := chStorage(ctx, srv, t, "series_zstd", "ZSTD (server <compression> config, level 1)")
		out = append(out, storageResult{st, err})
	}
	return out
}

// chStorage merges each table into one part per partition and sums its
// active parts.
func chStorage(ctx context.Context, srv *chserver.Server, samples, series, method string) (Storage, error) {
	st := Storage{Target: targetHub, Table: strings.TrimSuffix(samples, "_zstd"), Method: method, Columns: map[string]float64{}}
	for _, t := range []string{samples, series} {
		if err := srv.OptimizeFinal(ctx, hubDB, t); err != nil {
			return st, err
		}
	}
	out, err := srv.Query(ctx, fmt.Sprintf(`SELECT table, sum(rows), sum(bytes_on_disk), count() FROM system.parts
		WHERE database = '%s' AND active AND table IN ('%s', '%s') GROUP BY table FORMAT TSV`, hubDB, samples, series))
	if err != nil {
		return st, err
	}
	parts := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			continue
		}
		rows, _ := strconv.ParseInt(f[1], 10, 64)
		bytes, _ := strconv.ParseInt(f[2], 10, 64)
		n, _ := strconv.ParseInt(f[3], 10, 64)
		if f[0] == samples {
			st.Samples, st.Bytes, parts[samples] = rows, bytes, n
		} else {
			st.SeriesRows, st.SeriesBytes, parts[series] = rows, bytes, n
		}
	}
	if st.Table == "chunks" {
		// A row is a chunk: count the samples it holds.
		out, err := srv.Query(ctx, fmt.Sprintf("SELECT sum(samples) FROM %s.%s", hubDB, samples))
		if err != nil {
			return st, err
		}
		st.Samples, _ = strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	}
	if st.Samples == 0 {
		return st, fmt.Errorf("no rows in %s.%s", hubDB, samples)
	}
	st.BytesPerSample = float64(st.Bytes) / float64(st.Samples)
	st.SeriesBytesPerSample = float64(st.SeriesBytes) / float64(st.Samples)
	out, err = srv.Query(ctx, fmt.Sprintf(`SELECT name, data_compressed_bytes FROM system.columns
		WHERE database = '%s' AND table = '%s' FORMAT TSV`, hubDB, samples))
	if err != nil {
		return st, err
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if name, v, ok := strings.Cut(line, "\t"); ok {
			b, _ := strconv.ParseFloat(v, 64)
			st.Columns[name] = b / float64(st.Samples)
		}
	}
	st.Note = fmt.Sprintf("after OPTIMIZE FINAL: %d part(s) of %s, %d of series (%d rows, %.0f bytes/series)",
		parts[samples], st.Table, parts[series], st.SeriesRows, float64(st.SeriesBytes)/float64(max(1, st.SeriesRows)))
	return st, nil
}

// waitLog waits for text to appear in p's log.
func waitLog(ctx context.Context, p *e2e.Process, text string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(p.Log(), text) {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited before %s; log:\n%s", p.Name, text, tail(p.Log(), 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %s within %v; log:\n%s", p.Name, text, timeout, tail(p.Log(), 20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// scrapeMetrics sums each named metric over its label sets; a name given
// with labels ({table="samples"}) matches that series only.
func scrapeMetrics(url string, hc *http.Client, names ...string) map[string]float64 {
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	out := map[string]float64{}
	resp, err := hc.Get(url)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return out
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		if want[name] {
			out[name] += v
		}
		if series := strings.Join(f[:len(f)-1], " "); series != name && want[series] {
			out[series] += v
		}
	}
	return out
}

// perfReport writes perf's flat and cumulative top symbols of data to txt.
func perfReport(data, txt string) {
	var b strings.Builder
	for _, args := range [][]string{
		{"report", "-i", data, "--stdio", "--no-children", "--sort", "symbol", "--percent-limit", "0.7", "-g", "none"},
		{"report", "-i", data, "--stdio", "--children", "--sort", "symbol", "--percent-limit", "3", "-g", "none"},
	} {
		out, err := exec.Command("perf", args...).CombinedOutput()
		fmt.Fprintf(&b, "$ perf %s\n", strings.Join(args, " "))
		if err != nil {
			fmt.Fprintf(&b, "error: %v\n", err)
		}
		b.Write(out)
	}
	_ = os.WriteFile(txt, []byte(b.String()), 0o644)
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// maxFuture is the hub's ingest.max_future: its default, or a day for
// -recent, whose data runs ahead of the clock as fast as the hub takes it.
func (r *runner) maxFuture() time.Duration {
	if r.cfg.Recent {
		return 24 * time.Hour
	}
	return 10 * time.Minute
}

// headSetting describes what the hub's head did with the load.
func (r *runner) headSetting() string {
	switch {
	case !r.cfg.HubHead:
		return ", head disabled"
	case r.cfg.Recent:
		return ", recent data (every sample appended to the head)"
	default:
		return ""
	}
}
