package querybench

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/bureauhub/bureauhub/bench/benchenv"
)

// report writes query.json and query.md and prints the markdown to out.
func (r *runner) report(out io.Writer) error {
	if err := benchenv.WriteJSON(filepath.Join(r.cfg.OutDir, "query.json"), r.res); err != nil {
		return err
	}
	md := Markdown(r.res)
	if err := os.WriteFile(filepath.Join(r.cfg.OutDir, "query.md"), []byte(md), 0o644); err != nil {
		return err
	}
	_, err := io.WriteString(out, md)
	return err
}

var systemTitles = map[string]string{sysHub: "bureauhub", sysProm: "Prometheus", sysVM: "VictoriaMetrics"}

// Markdown renders results as a section for docs/benchmarks.md.
func Markdown(res *Results) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := res.Machine
	p("Run %s on %d CPUs (%s), %.1f GiB memory, Linux %s. Other work on the machine was not stopped: compare the systems within this run (the ratios), not with other runs.\n\n",
		res.Date.Format("2006-01-02T15:04Z"), m.CPUs, m.CPUModel, m.MemGiB, m.Kernel)
	p("Command: `%s`.\n\n", res.Command)

	d := res.Data
	p("**Data.** %s series, one sample every %s over %s: %s samples, the same in every store. ", num(float64(d.Series)), d.Interval, trimDuration(d.Span), num(float64(d.Samples)))
	p("Three bureaus (the hub's tenants); %d hosts with node_exporter metrics (CPU seconds per cpu and mode, memory, load, network, filesystem, disk, node_time_seconds) and the agent's shipping counter, %d API instances with `http_requests_total` by handler and code, classic histograms `http_request_duration_seconds` (12 buckets) by handler, the booking service's `booking_attempts_total`/`booking_successes_total` and `booking_bookings_total` and `healthcode_scan_duration_seconds` (what the shipped rules read), process metrics, and %d padding series; %d metric names. ",
		d.Hosts, d.APIs, d.Padding, d.MetricNames)
	p("Counters follow a daily cycle with noise; some API instances restart once (counter reset). Each target's samples sit at its own offset within the interval, on a half second. ")
	p("The data ends at %s, a little after the run started, so that rules evaluated during the run find current samples.\n\n", d.End.Format("2006-01-02 15:04Z"))
	p("**Loading.** ClickHouse through the hub's own store (`clickhouse.Store.WriteBlock`, a series row per series and UTC day, blocks of 1M samples), then `OPTIMIZE TABLE ... FINAL` on `samples` and `series`; Prometheus from an OpenMetrics file through `promtool tsdb create-blocks-from openmetrics --max-block-duration=18h`, started with `--storage.tsdb.max-block-duration=18h` so that it does not compact during the run; VictoriaMetrics through `/api/v1/import`, then `/internal/force_flush` and `/internal/force_merge`.")
	if d.Compacted {
		p(" Then the hub's compaction (`Store.CompactBefore`) rewrote every day into chunks (`hub/store/chunk`: decimal mantissas and grid offsets, bit-packed) in the `chunks` table, as a hub does with each UTC day 2 h (`clickhouse.compaction.delay`) after it ends: the hub's queries read chunks, as Prometheus's read its blocks. That includes the current day, which a live hub keeps raw; `-compact=false` measures reads of raw samples.")
	} else {
		p(" The hub's samples were left raw (`-compact=false`).")
	}
	if len(d.LoadSeconds) > 0 {
		keys := sortedKeys(d.LoadSeconds)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %.0f s", strings.ReplaceAll(k, "_", " "), d.LoadSeconds[k]))
		}
		p(" Times: %s.", strings.Join(parts, ", "))
	}
	if d.Reused {
		p(" (Data reused from an earlier run's load.)")
	}
	if len(d.Stored) > 0 {
		var parts []string
		for _, k := range sortedKeys(d.Stored) {
			parts = append(parts, fmt.Sprintf("%s %s", systemTitles[k], num(float64(d.Stored[k]))))
		}
		p(" Samples held: %s.", strings.Join(parts, ", "))
	}
	p("\n\n")
	if len(res.Versions) > 0 {
		var vs []string
		for _, k := range sortedKeys(res.Versions) {
			vs = append(vs, fmt.Sprintf("%s: %s", k, res.Versions[k]))
		}
		p("**Versions.** %s.\n\n", strings.Join(vs, "; "))
	}
	p("**Method.** Each query through the system's `/api/v1/query_range` (POST form, as Grafana sends it), one request at a time: one warm-up run per system (its result is the one compared), then %d measured runs per system, the systems' order rotating each round. Time is the wall time until the response body is read. The hub answers a cross-bureau token (every tenant's data); VictoriaMetrics runs with `-search.disableCache` so that it recomputes repeated queries as the others do. Hub settings: its defaults%s; a hub keeps its last hours in memory (`query.head`, 3 h by default) and refills them from ClickHouse when it starts, and the runs begin once the refill is done (the hub's `bureauhub_head_covered_from_timestamp_seconds`), so its last-hour queries read memory and its full-span ones ClickHouse.%s Server CPU is the median user+system CPU time one run cost the server's processes (hub plus ClickHouse for bureauhub). The hub's answers are compared point by point with Prometheus' (relative tolerance %g) and with the hub's own PromQL engine run in process over Prometheus' blocks, which separates differences in the stored data from differences between Prometheus 2.42's engine and the v0.315 engine the hub embeds.\n\n", res.Reps, hubExtra(res.HubConfigExtra), refills(res.HeadRefills), res.Tolerance)

	if len(res.Queries) > 0 {
		p("| query | range / step | series | ")
		for _, s := range res.Systems {
			p("%s p50 / p95 | ", systemTitles[s])
		}
		p("bureauhub ÷ Prometheus p50 | bureauhub ÷ VictoriaMetrics p50 | server CPU per query: ")
		var titles []string
		for _, s := range res.Systems {
			titles = append(titles, systemTitles[s])
		}
		p("%s | bureauhub = Prometheus |\n", strings.Join(titles, " / "))
		p("|---|---|---:|")
		for range res.Systems {
			p("---|")
		}
		p("---:|---:|---|---|\n")
		met, total := 0, 0
		for _, q := range res.Queries {
			hub := q.Timing[sysHub]
			p("| %s | %s / %s | %d | ", q.Name, fmtDuration(q.End.Sub(q.Start)), q.Step, hub.Series)
			var cpus []string
			for _, s := range res.Systems {
				t := q.Timing[s]
				if t == nil || len(t.RunsMillis) == 0 {
					p("failed | ")
					cpus = append(cpus, "-")
					continue
				}
				p("%s / %s | ", msStr(t.P50Millis), msStr(t.P95Millis))
				if s == sysHub {
					cpus = append(cpus, fmt.Sprintf("%.2f s (hub %.2f + ClickHouse %.2f)", t.CPUSeconds, t.CPUByProcess["hub"], t.CPUByProcess["clickhouse"]))
				} else {
					cpus = append(cpus, fmt.Sprintf("%.2f s", t.CPUSeconds))
				}
			}
			p("%s | %s | %s | %s |\n", ratio(q.HubOverProm), ratio(q.HubOverVM), strings.Join(cpus, " / "), agreeCell(q))
			if q.HubOverProm > 0 {
				total++
				if q.HubOverProm <= 1 {
					met++
				}
			}
		}
		p("\n")
		if total > 0 {
			p("**Goal** (bureauhub's p50 no slower than Prometheus' on every query): met on %d of %d queries.\n\n", met, total)
		}
		p("Queries (the full-span ones and the same over the last hour):\n\n")
		seen := map[string]bool{}
		for _, q := range res.Queries {
			name := strings.Fields(q.Name)[0]
			if seen[name] {
				continue
			}
			seen[name] = true
			p("- %s: `%s`\n", name, q.Expr)
		}
		p("\n")
	}

	if len(res.Rules.Groups) > 0 {
		p("**Rule evaluation** of the shipped rule files (%s) every %s for %s per system, read from each system's `prometheus_rule_group_last_duration_seconds` at every evaluation; median of the evaluations after the first. ",
			strings.Join(res.Rules.Files, ", "), res.Rules.Interval, res.Rules.Window)
		p("The hub evaluates the files for each bureau over that bureau's data (as shipped: `rules.files` apply to every bureau tenant; here as per-tenant copies under `rules.tenant_files`, because with one shared path the three tenants' rule managers report under the same `rule_group` label and overwrite each other's gauge). Prometheus evaluates them once over all three bureaus' data, so compare it with the sum over the tenants. ")
		p("Prometheus cannot store its rules' results here (its blocks reach past the wall clock, so appends are out of bounds): its times are evaluation plus a refused append.\n\n")
		p("| file | group | bureauhub per tenant | bureauhub sum of tenants | Prometheus (all bureaus) | sum ÷ Prometheus | evaluations hub / Prometheus |\n|---|---|---|---:|---:|---:|---|\n")
		for _, g := range res.Rules.Groups {
			var per []string
			evals := 0
			for _, t := range sortedKeys(g.Hub) {
				per = append(per, fmt.Sprintf("%s %s", t, msStr(g.Hub[t].Median*1000)))
				evals = max(evals, len(g.Hub[t].Seconds))
			}
			prom, rat, pe := "-", "-", 0
			if g.Prom != nil {
				prom = msStr(g.Prom.Median * 1000)
				pe = len(g.Prom.Seconds)
				if g.Prom.Median > 0 {
					rat = ratio(g.HubSum / g.Prom.Median)
				}
			}
			fail := ""
			if g.HubFailed > 0 || g.PromFail > 0 {
				fail = fmt.Sprintf(" (failures: hub %.0f, Prometheus %.0f)", g.HubFailed, g.PromFail)
			}
			p("| %s | %s | %s | %s | %s | %s | %d / %d%s |\n", g.File, g.Group, strings.Join(per, ", "), msStr(g.HubSum*1000), prom, rat, evals, pe, fail)
		}
		p("\n")
		p("Per rule: the last evaluation's time from each system's `/api/v1/rules`, and the median of five runs of the rule's expression as an instant query over all three bureaus' data through `/api/v1/query` (the read side alone; a hub rule evaluation also hands its results to ingestion and waits until they are inserted into ClickHouse).\n\n")
		p("| group | rule | bureauhub evaluation per tenant | Prometheus evaluation | instant query bureauhub / Prometheus |\n|---|---|---|---:|---|\n")
		for _, g := range res.Rules.Groups {
			for _, ru := range g.Rules {
				var per []string
				for _, t := range sortedKeys(ru.HubEvalMillis) {
					per = append(per, fmt.Sprintf("%s %s", t, msStr(ru.HubEvalMillis[t])))
				}
				p("| %s | %s | %s | %s | %s / %s |\n", g.Group, ru.Name, strings.Join(per, ", "), msStr(ru.PromEval), msStr(ru.HubQuery), msStr(ru.PromQuery))
			}
		}
		p("\n")
	}

	if pr := res.Profile; pr != nil && len(pr.Queries) > 0 {
		p("**Where the hub's time goes** (every query run %d times in process: the hub's store and Prometheus' engine with `hub/query`'s settings, against the same ClickHouse; no HTTP or JSON, each query evaluated whole, on one core, and read from ClickHouse, where the hub splits range queries into parts run at once and reads the last hours from its head). Storage is the time in `Select` and in the series set's `Next`; ClickHouse server time is the statements' `query_duration_ms` from `system.query_log`; the rest of storage is client side (receiving and decoding blocks, building series). %s\n\n", pr.Reps, pr.Note)
		p("| query | total | storage | ClickHouse server: series + chunks + samples statements (the last two run at once) | client side of storage | PromQL engine | rows read | rows returned | MB returned | ClickHouse peak memory |\n|---|---:|---:|---|---:|---:|---:|---:|---:|---:|\n")
		for _, q := range pr.Queries {
			if q.Error != "" {
				p("| %s | error: %s |||||||||\n", q.Name, abbreviate(q.Error, 120))
				continue
			}
			p("| %s | %s | %s | %s + %s + %s | %s | %s | %s | %s | %.1f | %.0f MB |\n", q.Name, msStr(q.TotalMillis), msStr(q.StorageMillis),
				msStr(q.ServerSeriesMillis), msStr(q.ServerChunksMillis), msStr(q.ServerSamplesMillis), msStr(max(0, q.StorageMillis-q.ServerMillis)), msStr(q.EngineMillis),
				num(q.ReadRows), num(q.ResultRows), q.ResultBytes/1e6, q.PeakMemoryMB)
		}
		p("\n")
		p("ClickHouse streams while the client decodes, so the server's time overlaps the client's; \"client side\" is what storage took beyond the server's statements (0 when the server was the bottleneck).\n\n")
		if len(pr.Probes) > 0 {
			p("ClickHouse alone on the reads of `%s` (statements over HTTP, `FORMAT Null` unless said, median of 3):\n\n| statement | time |\n|---|---:|\n", pr.ProbeQuery)
			for _, x := range pr.Probes {
				t := msStr(x.Millis)
				if x.Error != "" {
					t = "error: " + x.Error
				}
				p("| %s | %s |\n", x.Name, t)
			}
			p("\n")
		}
		if pr.TopFlat != "" {
			p("CPU profile of those runs (`%s`), top functions by own time:\n\n```\n%s\n```\n\n", filepath.Base(pr.CPUProfile), topLines(pr.TopFlat, 22))
		}
		if pr.TopCum != "" {
			p("and by cumulative time:\n\n```\n%s\n```\n\n", topLines(pr.TopCum, 28))
		}
	}

	var notes []string
	for _, q := range res.Queries {
		if a := q.HubVsProm; a != nil && !a.OK() {
			why := ""
			if e := q.HubVsEngineOnProm; e != nil && e.OK() {
				why = " The hub's own engine (Prometheus v0.315 packages) run over Prometheus' blocks gives exactly the hub's answer, so the stores return the same data and the difference is between the two Prometheus releases' PromQL engines."
			} else if e != nil {
				why = " The hub's answer also differs from its own engine run over Prometheus' blocks: " + agreementText(e)
			}
			notes = append(notes, fmt.Sprintf("%s: bureauhub differs from Prometheus 2.42: %s.%s", q.Name, agreementText(a), why))
		}
		if e := q.HubVsEngineOnProm; e != nil && !e.OK() && (q.HubVsProm == nil || q.HubVsProm.OK()) {
			notes = append(notes, fmt.Sprintf("%s: bureauhub differs from its own engine run over Prometheus' blocks: %s", q.Name, agreementText(e)))
		}
		if a := q.VMVsProm; a != nil && (a.OnlyHere > 0 || a.OnlyProm > 0) {
			notes = append(notes, fmt.Sprintf("%s: VictoriaMetrics returns %d series, Prometheus %d", q.Name, a.Series, a.PromSeries))
		}
		for _, s := range res.Systems {
			if t := q.Timing[s]; t != nil && len(t.Errors) > 0 {
				notes = append(notes, fmt.Sprintf("%s: %s errors: %s", q.Name, systemTitles[s], abbreviate(strings.Join(t.Errors, "; "), 400)))
			}
		}
	}
	if vmNote := vmAgreement(res); vmNote != "" {
		notes = append(notes, vmNote)
	}
	for _, s := range sortedKeys(res.Skipped) {
		notes = append(notes, fmt.Sprintf("%s skipped: %s", systemTitles[s], res.Skipped[s]))
	}
	notes = append(notes, res.Notes...)
	if len(notes) > 0 {
		p("**Checks and notes**\n\n")
		for _, n := range notes {
			p("- %s\n", n)
		}
		p("\n")
	}
	return b.String()
}

func hubExtra(extra string) string {
	if extra == "" {
		return ""
	}
	return ", with `" + strings.Join(strings.Fields(extra), " ") + "` added"
}

// trimDuration turns Go's "24h0m0s" into "24h".
func trimDuration(s string) string {
	d, err := time.ParseDuration(s)
	if err != nil {
		return s
	}
	return fmtDuration(d)
}

func agreeCell(q *QueryResult) string {
	a := q.HubVsProm
	if a == nil {
		return "-"
	}
	if a.OK() {
		return fmt.Sprintf("yes (%s points, max rel. diff %.1e)", num(float64(a.Points)), a.MaxRelDiff)
	}
	if e := q.HubVsEngineOnProm; e != nil && e.OK() && a.OnlyHere == 0 && a.OnlyProm == 0 {
		return fmt.Sprintf("differs from 2.42 at %d of %s points (engine versions: see the notes); identical to its own engine on Prometheus' blocks",
			a.Mismatched+a.PointsDiffT, num(float64(a.Points+a.PointsDiffT)))
	}
	return "**no**: " + agreementText(a)
}

func agreementText(a *Agreement) string {
	if a.Error != "" {
		return a.Error
	}
	return fmt.Sprintf("%d vs %d series (%d only here, %d only in Prometheus), %d of %d points outside tolerance, %d at other timestamps, max rel. diff %.2g; e.g. %s",
		a.Series, a.PromSeries, a.OnlyHere, a.OnlyProm, a.Mismatched, a.Points, a.PointsDiffT, a.MaxRelDiff, a.Example)
}

// vmAgreement summarises how close VictoriaMetrics' values are to
// Prometheus': MetricsQL's rate does not extrapolate and looks one sample
// further back, so small differences are expected.
func vmAgreement(res *Results) string {
	var parts []string
	for _, q := range res.Queries {
		if a := q.VMVsProm; a != nil {
			parts = append(parts, fmt.Sprintf("%s %.1e", q.Name, a.MedianRelDiff))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "VictoriaMetrics versus Prometheus, median relative difference per query (MetricsQL's rate neither extrapolates nor ignores the sample before the window, and it aligns steps, so values differ by design; timings compare the same work): " + strings.Join(parts, ", ")
}

func topLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	// Skip pprof's header lines up to the column titles.
	for i, l := range lines {
		if strings.Contains(l, "flat%") {
			lines = lines[i:]
			break
		}
	}
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func msStr(ms float64) string {
	switch {
	case ms >= 10000:
		return fmt.Sprintf("%.1f s", ms/1000)
	case ms >= 100:
		return fmt.Sprintf("%.0f ms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.2f ms", ms)
	}
}

func ratio(x float64) string {
	if x <= 0 {
		return "-"
	}
	if x >= 10 {
		return fmt.Sprintf("**%.0f×**", x)
	}
	if x > 1 {
		return fmt.Sprintf("**%.2f×**", x)
	}
	return fmt.Sprintf("%.2f×", x)
}

// num formats with thousands separators.
func num(x float64) string {
	neg := x < 0
	if neg {
		x = -x
	}
	s := fmt.Sprintf("%.0f", x)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// refills says what each hub's refill of its head took ("" for none).
func refills(rs []HeadRefill) string {
	if len(rs) == 0 {
		return ""
	}
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%s %s samples in %.1f s", r.Hub, num(r.Samples), r.Seconds))
	}
	return " Refills (the hub's `bureauhub_head_refill_duration_seconds` and `_refilled_samples_total`): " + strings.Join(parts, ", ") + "."
}
