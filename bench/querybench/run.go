package querybench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bureauhub/bureauhub/bench/benchenv"

	"github.com/bureauhub/bureauhub/e2e"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chserver"
)

const hubDB = "bureauhub"

// Results is what query.json holds.
type Results struct {
	Date     time.Time         `json:"date"`
	Command  string            `json:"command"`
	Machine  Machine           `json:"machine"`
	Versions map[string]string `json:"versions"`
	Data     DataInfo          `json:"data"`
	Systems  []string          `json:"systems"`
	Reps     int               `json:"reps"`
	// Tolerance is the relative difference allowed when comparing values.
	Tolerance float64 `json:"tolerance"`
	// HubConfigExtra is YAML added to the hub's config, if any.
	HubConfigExtra string `json:"hub_config_extra,omitempty"`
	// HeadRefills: what each hub started took to refill its head.
	HeadRefills []HeadRefill      `json:"head_refills,omitempty"`
	Queries     []*QueryResult    `json:"queries"`
	Rules       RulesInfo         `json:"rules"`
	Profile     *Profile          `json:"hub_profile,omitempty"`
	Skipped     map[string]string `json:"skipped,omitempty"`
	Notes       []string          `json:"notes,omitempty"`
}

// HeadRefill is a hub's refill of its head from ClickHouse at start
// (bureauhub_head_refill_duration_seconds and _refilled_samples_total).
type HeadRefill struct {
	Hub     string  `json:"hub"`
	Seconds float64 `json:"seconds"`
	Samples float64 `json:"samples"`
}

// Machine describes where the run happened.
type Machine = benchenv.Machine

// DataInfo describes the generated data and how long loading took.
type DataInfo struct {
	Series           int       `json:"series"`
	Samples          int64     `json:"samples"`
	SamplesPerSeries int       `json:"samples_per_series"`
	Interval         string    `json:"interval"`
	Span             string    `json:"span"`
	First            time.Time `json:"first_sample_before"`
	End              time.Time `json:"end"`
	MetricNames      int       `json:"metric_names"`
	Hosts            int       `json:"hosts"`
	APIs             int       `json:"api_instances"`
	Padding          int       `json:"padding_series"`
	// LoadSeconds: generating and writing to ClickHouse, VictoriaMetrics
	// and the OpenMetrics file in one pass, then promtool, then merging.
	LoadSeconds map[string]float64 `json:"load_seconds,omitempty"`
	Reused      bool               `json:"reused,omitempty"`
	// Compacted: the hub's samples were compacted into chunks after loading.
	Compacted bool             `json:"compacted,omitempty"`
	Stored    map[string]int64 `json:"stored_samples,omitempty"`
}

// QueryResult is one query's timings per system and the result checks.
type QueryResult struct {
	Query
	Step   string             `json:"step"`
	Points int                `json:"points_per_series"`
	Timing map[string]*Timing `json:"timing"`
	// HubVsProm compares the hub's result with Prometheus' point by point;
	// VMVsProm likewise (MetricsQL differs by design: informational).
	HubVsProm *Agreement `json:"bureauhub_vs_prometheus,omitempty"`
	VMVsProm  *Agreement `json:"victoriametrics_vs_prometheus,omitempty"`
	// HubVsEngineOnProm compares the hub's result with the hub's own
	// PromQL engine run in process over Prometheus' blocks.
	HubVsEngineOnProm *Agreement `json:"bureauhub_vs_its_engine_on_prometheus_blocks,omitempty"`
	// Ratios of p50s: hub over each peer.
	HubOverProm float64 `json:"p50_bureauhub_over_prometheus,omitempty"`
	HubOverVM   float64 `json:"p50_bureauhub_over_victoriametrics,omitempty"`
}

// RulesInfo is the rule phase's outcome.
type RulesInfo struct {
	Files           []string           `json:"files"`
	Interval        string             `json:"evaluation_interval"`
	Window          string             `json:"window"`
	HubEvaluatedAt  time.Time          `json:"bureauhub_started"`
	PromEvaluatedAt time.Time          `json:"prometheus_started"`
	Groups          []*RuleGroupResult `json:"groups"`
}

type runner struct {
	cfg      Config
	res      *Results
	log      io.Writer
	work     string
	logDir   string
	hubBin   string
	rulesDir string
	ch       *chserver.Server
	chPID    int
	promData string // empty when Prometheus is skipped
	vmData   string // empty when VictoriaMetrics is skipped
	// hubResults are the hub's answers, by query name.
	hubResults map[string]matrix
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "querybench: "+format+"\n", args...)
}

func (r *runner) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.logf("note: %s", msg)
	r.res.Notes = append(r.res.Notes, msg)
}

func (r *runner) skip(system, reason string) {
	r.logf("%s: skipped: %s", system, reason)
	r.res.Skipped[system] = reason
}

// manifest records a completed load in the working directory, for -reuse.
type manifest struct {
	Series   int       `json:"series"`
	Span     string    `json:"span"`
	Interval string    `json:"interval"`
	Seed     uint64    `json:"seed"`
	End      time.Time `json:"end"`
	Prom     bool      `json:"prometheus"`
	VM       bool      `json:"victoriametrics"`
	Compact  bool      `json:"compacted"`
}

// Run runs the benchmark and writes query.md and query.json to
// cfg.OutDir; progress goes to log.
func Run(ctx context.Context, cfg Config, log io.Writer) (err error) {
	if cfg.RenderFrom != "" {
		return benchenv.Rerender(cfg.RenderFrom, filepath.Join(cfg.OutDir, "query.md"), Markdown, log)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.Command == "" {
		cfg.Command = strings.Join(os.Args, " ")
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return err
	}
	if cfg.WorkDir == "" {
		cfg.WorkDir = filepath.Join(cfg.OutDir, "query-work")
	}
	work, err := filepath.Abs(cfg.WorkDir)
	if err != nil {
		return err
	}
	r := &runner{cfg: cfg, log: log, work: work, logDir: filepath.Join(work, "logs"), hubResults: map[string]matrix{},
		res: &Results{Date: time.Now().UTC(), Command: cfg.Command, Versions: map[string]string{}, Skipped: map[string]string{}, Reps: cfg.Reps, Tolerance: cfg.Tolerance, HubConfigExtra: cfg.HubConfigExtra}}
	r.res.Machine = benchenv.ReadMachine()
	r.findPeers()
	man, reuse := r.reusable()
	if !reuse {
		if err := os.RemoveAll(work); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(r.logDir, 0o755); err != nil {
		return err
	}
	defer func() {
		if !cfg.Keep {
			if rmErr := os.RemoveAll(work); rmErr != nil && err == nil {
				err = rmErr
			}
		} else {
			r.logf("kept %s", work)
		}
	}()
	root, rootErr := benchenv.ModuleRoot()
	r.rulesDir = cfg.RulesDir
	if r.rulesDir == "" {
		if rootErr != nil {
			return fmt.Errorf("-rules-dir: %w", rootErr)
		}
		r.rulesDir = filepath.Join(root, "rules")
	}
	r.hubBin = cfg.HubBinary
	if r.hubBin == "" {
		if rootErr != nil {
			return fmt.Errorf("-hub-binary: %w", rootErr)
		}
		dir := filepath.Join(work, "bin")
		r.logf("building cmd/hub into %s", dir)
		if err := e2e.Build(root, dir, "hub"); err != nil {
			return err
		}
		r.hubBin = filepath.Join(dir, "hub")
	}
	if rootErr == nil {
		r.res.Versions[sysHub] = benchenv.GitDescribe(root)
	}

	// ClickHouse, with query_log for the profile.
	chDir := filepath.Join(work, "clickhouse")
	if err := os.MkdirAll(filepath.Join(chDir, "config.d"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(chDir, "config.d", "query_log.xml"), []byte(queryLogXML), 0o644); err != nil {
		return err
	}
	chLog, err := os.Create(filepath.Join(r.logDir, "clickhouse.out"))
	if err != nil {
		return err
	}
	defer chLog.Close()
	r.logf("starting clickhouse-server")
	r.ch, err = chserver.Start(ctx, chserver.Options{Dir: chDir, Binary: cfg.ClickHouseBinary, Log: chLog})
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := r.ch.Stop(); stopErr != nil {
			r.logf("clickhouse stop: %v", stopErr)
		}
	}()
	r.chPID = r.ch.PID()
	if v, err := r.ch.Query(ctx, "SELECT version()"); err == nil {
		r.res.Versions["clickhouse"] = "ClickHouse " + strings.TrimSpace(v)
	}

	end := time.Now().Add(cfg.Ahead)
	if reuse {
		end = man.End
	}
	d, err := NewDataset(cfg.Series, cfg.Span, cfg.Interval, end, cfg.Seed)
	if err != nil {
		return err
	}
	r.describeData(d)

	var vm *target
	if r.vmData != "" {
		if vm, err = r.startVM(ctx); err != nil {
			return err
		}
		defer func() {
			if stopErr := vm.stop(); stopErr != nil {
				r.logf("victoria-metrics stop: %v", stopErr)
			}
		}()
		if v := binVersion(cfg.VMBinary, "victoria-metrics"); v != "" {
			r.res.Versions[sysVM] = v
		}
	}
	if reuse {
		r.res.Data.Reused = true
		r.logf("reusing the data loaded at %s (ending %s)", work, man.End.Format(time.RFC3339))
		if man.Compact {
			if err := r.recompact(ctx, d); err != nil {
				return err
			}
		}
	} else if err := r.load(ctx, d, vm); err != nil {
		return err
	}
	r.countStored(ctx, d, vm)

	if cfg.RulesWindow > 0 {
		if err := r.rulePhase(ctx); err != nil {
			return fmt.Errorf("rule phase: %w", err)
		}
	}
	qs := querySet(d, cfg)
	if err := r.queryPhase(ctx, d, qs, vm); err != nil {
		return fmt.Errorf("query phase: %w", err)
	}
	if r.promData != "" {
		r.logf("checking the hub's answers against its engine on Prometheus' blocks")
		if err := r.engineCheck(ctx); err != nil {
			r.note("engine check on Prometheus' blocks failed: %v", err)
		}
	}
	if cfg.ProfileReps > 0 {
		pqs := qs
		if cfg.ProfileQueries != "" {
			re := regexp.MustCompile(cfg.ProfileQueries) // checked by Validate
			pqs = slices.DeleteFunc(slices.Clone(qs), func(q Query) bool { return !re.MatchString(q.Name) })
		}
		r.logf("profile: %d queries x %d in process", len(pqs), cfg.ProfileReps)
		p, err := r.profileHub(ctx, pqs)
		if err != nil {
			r.note("profile failed: %v", err)
		}
		r.res.Profile = p
	}
	return r.report(log)
}

const queryLogXML = `<?xml version="1.0"?>
<!-- Written by querybench: system.query_log for statements run with log_queries=1. -->
<yandex>
    <query_log>
        <database>system</database>
        <table>query_log</table>
        <flush_interval_milliseconds>1000</flush_interval_milliseconds>
    </query_log>
</yandex>
`

// reusable reports whether the working directory holds a completed load
// of the same data that -reuse may use.
func (r *runner) reusable() (manifest, bool) {
	var m manifest
	if !r.cfg.Reuse {
		return m, false
	}
	b, err := os.ReadFile(filepath.Join(r.work, "manifest.json"))
	if err != nil || json.Unmarshal(b, &m) != nil {
		r.logf("-reuse: no completed load in %s; loading afresh", r.work)
		return m, false
	}
	if m.Series != r.cfg.Series || m.Span != r.cfg.Span.String() || m.Interval != r.cfg.Interval.String() || m.Seed != r.cfg.Seed ||
		m.Prom != (r.promData != "") || m.VM != (r.vmData != "") || m.Compact != r.cfg.Compact {
		r.logf("-reuse: %s holds other data; loading afresh", r.work)
		return m, false
	}
	return m, true
}

// findPeers decides which peers run, recording why one is skipped.
func (r *runner) findPeers() {
	look := func(name, bin, pkg string) string {
		if bin == "" {
			r.skip(name, "no binary given")
			return ""
		}
		path, err := exec.LookPath(bin)
		if err != nil {
			r.skip(name, fmt.Sprintf("%v (install Debian's %s package)", err, pkg))
			return ""
		}
		return path
	}
	if p := look(sysProm, r.cfg.PrometheusBinary, "prometheus"); p != "" {
		tool, err := exec.LookPath(r.cfg.PromtoolBinary)
		if err != nil {
			r.skip(sysProm, fmt.Sprintf("promtool: %v", err))
		} else {
			r.cfg.PrometheusBinary, r.cfg.PromtoolBinary = p, tool
			r.promData = filepath.Join(r.work, "prometheus")
			r.res.Versions[sysProm] = binVersion(p, "prometheus", "--version")
		}
	}
	if !r.has(sysProm) {
		r.cfg.PrometheusBinary = ""
	}
	if p := look(sysVM, r.cfg.VMBinary, "victoria-metrics"); p != "" {
		r.cfg.VMBinary = p
		r.vmData = filepath.Join(r.work, "victoria-metrics")
	}
}

func (r *runner) has(system string) bool {
	switch system {
	case sysProm:
		return r.promData != ""
	case sysVM:
		return r.vmData != ""
	}
	return true
}

// openStore opens the hub's store on the benchmark's ClickHouse, for
// loading, compacting and the in-process profile.
func (r *runner) openStore(conns int) (*clickhouse.Store, error) {
	return clickhouse.Open(clickhouse.Config{Addr: []string{r.ch.Addr()}, Database: hubDB, Username: "default",
		DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Minute, MaxOpenConns: conns}, slog.New(slog.DiscardHandler), nil)
}

// recompact compacts reused data again. ClickHouse 18.16 deletes a
// dropped partition's files only old_parts_lifetime (8 min) after the
// drop, and a server started again before then loads them as live parts:
// the raw days the load's compaction dropped are back. Compacting them
// again writes the same chunks (which fold) and drops them again.
func (r *runner) recompact(ctx context.Context, d *Dataset) error {
	store, err := r.openStore(4)
	if err != nil {
		return err
	}
	defer store.Close()
	done, err := store.CompactBefore(ctx, d.End.Add(48*time.Hour))
	if err != nil {
		return fmt.Errorf("compact reused data: %w", err)
	}
	r.logf("-reuse: compacted %d raw day(s) again", len(done))
	return r.ch.OptimizeFinal(ctx, hubDB, "chunks")
}

// load generates the data once into every store, then lets each store
// settle: OPTIMIZE FINAL in ClickHouse, blocks written by promtool for
// Prometheus, a forced flush and merge in VictoriaMetrics.
func (r *runner) load(ctx context.Context, d *Dataset, vm *target) error {
	r.res.Data.LoadSeconds = map[string]float64{}
	store, err := r.openStore(4)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		return err
	}
	sinks := []sink{newCHSink(ctx, store)}
	omPath := filepath.Join(r.work, "data.om")
	if r.promData != "" {
		om, err := newOMSink(omPath)
		if err != nil {
			return err
		}
		sinks = append(sinks, om)
	}
	if vm != nil {
		sinks = append(sinks, newVMSink(ctx, vm.base))
	}
	r.logf("generating %d series x %d samples into %d stores", len(d.Series), d.Samples(), len(sinks))
	start := time.Now()
	if err := generate(ctx, d, sinks); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	r.res.Data.LoadSeconds["generate_and_write"] = time.Since(start).Seconds()
	r.logf("written in %.0f s", time.Since(start).Seconds())

	if r.promData != "" {
		start = time.Now()
		r.logf("promtool: writing Prometheus blocks")
		cmd := exec.CommandContext(ctx, r.cfg.PromtoolBinary, "tsdb", "create-blocks-from", "openmetrics",
			"--max-block-duration=18h", "--quiet", omPath, r.promData)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("promtool: %w: %s", err, abbreviate(string(out), 2000))
		}
		r.res.Data.LoadSeconds["promtool"] = time.Since(start).Seconds()
		r.logf("promtool took %.0f s", time.Since(start).Seconds())
		if !r.cfg.Keep {
			os.Remove(omPath)
		}
	}
	start = time.Now()
	r.logf("clickhouse: OPTIMIZE FINAL")
	for _, t := range []string{"samples", "series"} {
		if err := r.ch.OptimizeFinal(ctx, hubDB, t); err != nil {
			return err
		}
	}
	r.res.Data.LoadSeconds["clickhouse_optimize_final"] = time.Since(start).Seconds()
	if r.cfg.Compact {
		start = time.Now()
		r.logf("clickhouse: compacting every day into chunks")
		done, err := store.CompactBefore(ctx, d.End.Add(48*time.Hour))
		if err != nil {
			return err
		}
		if err := r.ch.OptimizeFinal(ctx, hubDB, "chunks"); err != nil {
			return err
		}
		r.res.Data.LoadSeconds["clickhouse_compaction"] = time.Since(start).Seconds()
		r.logf("compacted %d day(s) in %.0f s", len(done), time.Since(start).Seconds())
	}
	if vm != nil {
		start = time.Now()
		r.logf("victoria-metrics: force flush and merge")
		if err := vmSettle(ctx, vm.base); err != nil {
			return err
		}
		r.res.Data.LoadSeconds["victoriametrics_force_merge"] = time.Since(start).Seconds()
	}
	m := manifest{Series: r.cfg.Series, Span: r.cfg.Span.String(), Interval: r.cfg.Interval.String(), Seed: r.cfg.Seed,
		End: d.End, Prom: r.promData != "", VM: vm != nil, Compact: r.cfg.Compact}
	b, _ := json.Marshal(m)
	return os.WriteFile(filepath.Join(r.work, "manifest.json"), b, 0o644)
}

// countStored reads how many samples each store holds, to show that all
// hold the same data.
func (r *runner) countStored(ctx context.Context, d *Dataset, vm *target) {
	r.res.Data.Stored = map[string]int64{}
	// Raw rows plus the samples in chunks (FINAL folds a chunk written twice).
	if out, err := r.ch.Query(ctx, "SELECT (SELECT count() FROM "+hubDB+".samples) + (SELECT sum(samples) FROM "+hubDB+".chunks FINAL)"); err == nil {
		n, _ := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
		r.res.Data.Stored[sysHub] = n
	}
	if r.promData != "" {
		var total int64
		entries, _ := os.ReadDir(r.promData)
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(r.promData, e.Name(), "meta.json"))
			if err != nil {
				continue
			}
			var meta struct {
				Stats struct {
					NumSamples int64 `json:"numSamples"`
				} `json:"stats"`
			}
			if json.Unmarshal(b, &meta) == nil {
				total += meta.Stats.NumSamples
			}
		}
		r.res.Data.Stored[sysProm] = total
	}
	if vm != nil {
		// Rows that went into VictoriaMetrics' storage (it counts only in
		// the current process, so this is 0 when -reuse started it anew).
		if m, err := scrape(ctx, vm.base+"/metrics", ""); err == nil {
			r.res.Data.Stored[sysVM] = int64(m.sum("vm_rows_added_to_storage_total"))
		}
	}
	want := int64(len(d.Series)) * int64(d.Samples())
	if r.res.Data.Reused {
		return // earlier rule phases added their results
	}
	for sys, n := range r.res.Data.Stored {
		if n != want && !(sys == sysVM && n == 0) {
			r.note("%s holds %d samples; %d were generated", sys, n, want)
		}
	}
}

func (r *runner) describeData(d *Dataset) {
	names := map[string]bool{}
	for _, s := range d.Series {
		names[s.Labels.Get("__name__")] = true
	}
	r.res.Data = DataInfo{
		Series: len(d.Series), Samples: int64(len(d.Series)) * int64(d.Samples()), SamplesPerSeries: d.Samples(),
		Interval: d.Interval.String(), Span: d.Span.String(), First: d.End.Add(-d.Span).UTC(), End: d.End.UTC(),
		MetricNames: len(names), Hosts: d.Hosts, APIs: d.APIs, Padding: d.Padding, Compacted: r.cfg.Compact,
	}
}

// queryPhase runs every query on every system: one unmeasured warm-up run
// each (whose results are compared), then Reps measured runs, rotating
// the order of the systems from one round to the next.
func (r *runner) queryPhase(ctx context.Context, d *Dataset, qs []Query, vm *target) error {
	hub, err := r.startHub(ctx, hubOptions{name: "hub"})
	if err != nil {
		return err
	}
	defer func() {
		if err := hub.stop(); err != nil {
			r.logf("hub stop: %v", err)
		}
	}()
	targets := []*target{hub}
	if r.promData != "" {
		prom, err := r.startProm(ctx, "prometheus", nil)
		if err != nil {
			return err
		}
		defer func() {
			if err := prom.stop(); err != nil {
				r.logf("prometheus stop: %v", err)
			}
		}()
		targets = append(targets, prom)
	}
	if vm != nil {
		targets = append(targets, vm)
	}
	for _, t := range targets {
		r.res.Systems = append(r.res.Systems, t.name)
	}
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}, Timeout: r.cfg.RequestTimeout}
	for _, q := range qs {
		qr := &QueryResult{Query: q, Step: q.Step.String(), Points: int(q.End.Sub(q.Start)/q.Step) + 1, Timing: map[string]*Timing{}}
		r.res.Queries = append(r.res.Queries, qr)
		results := map[string]matrix{}
		walls := map[string][]time.Duration{}
		cpus := map[string][][]float64{}
		errs := map[string][]string{}
		var bytes = map[string]int{}
		for _, t := range targets {
			res := queryRange(ctx, hc, t, q)
			if res.err != nil {
				errs[t.name] = append(errs[t.name], "warm-up: "+res.err.Error())
				continue
			}
			m, err := parseMatrix(res.body)
			if err != nil {
				errs[t.name] = append(errs[t.name], "warm-up: "+err.Error())
				continue
			}
			results[t.name] = m
			bytes[t.name] = res.bytes
			if t.name == sysHub {
				r.hubResults[q.Name] = m
			}
		}
		for rep := range r.cfg.Reps {
			for k := range targets {
				t := targets[(k+rep)%len(targets)]
				res := queryRange(ctx, hc, t, q)
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if res.err != nil {
					errs[t.name] = append(errs[t.name], res.err.Error())
					continue
				}
				walls[t.name] = append(walls[t.name], res.wall)
				cpus[t.name] = append(cpus[t.name], res.cpu)
			}
		}
		for _, t := range targets {
			tm := summarise(walls[t.name], cpus[t.name], t.procs)
			tm.ResponseBytes = bytes[t.name]
			tm.Series = len(results[t.name])
			tm.Errors = errs[t.name]
			qr.Timing[t.name] = &tm
		}
		if want, ok := results[sysProm]; ok {
			if got, ok := results[sysHub]; ok {
				qr.HubVsProm = compare(got, want, r.cfg.Tolerance)
			}
			if got, ok := results[sysVM]; ok {
				qr.VMVsProm = compare(got, want, r.cfg.Tolerance)
			}
		}
		hubT := qr.Timing[sysHub]
		if p := qr.Timing[sysProm]; p != nil && p.P50Millis > 0 && hubT.P50Millis > 0 {
			qr.HubOverProm = hubT.P50Millis / p.P50Millis
		}
		if v := qr.Timing[sysVM]; v != nil && v.P50Millis > 0 && hubT.P50Millis > 0 {
			qr.HubOverVM = hubT.P50Millis / v.P50Millis
		}
		line := fmt.Sprintf("%-32s", q.Name)
		for _, t := range targets {
			tm := qr.Timing[t.name]
			line += fmt.Sprintf("  %s p50 %.0f ms p95 %.0f ms (%d series)", t.name, tm.P50Millis, tm.P95Millis, tm.Series)
		}
		if qr.HubVsProm != nil && !qr.HubVsProm.OK() {
			line += "  MISMATCH: " + qr.HubVsProm.Example
		}
		r.logf("%s", line)
	}
	return nil
}
