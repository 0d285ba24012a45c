package alertbench

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

var displayName = map[string]string{
	sysHub:  "bureauhub",
	sysProm: "Prometheus + Alertmanager",
	sysAM:   "Alertmanager",
}

func secs(ms float64) string {
	if math.IsNaN(ms) {
		return "–"
	}
	return fmt.Sprintf("%.2f s", ms/1000)
}

func millis(ms float64) string {
	if math.IsNaN(ms) {
		return "–"
	}
	return fmt.Sprintf("%.0f ms", ms)
}

func ratio(x float64) string {
	if x == 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2fx", x)
}

func thousands(x float64) string {
	s := fmt.Sprintf("%.0f", x)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
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

// Markdown renders the results as the section of docs/benchmarks.md.
func Markdown(res *Results) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := res.Machine
	w("## Alerting: pipeline latency and throughput\n\n")
	w("Run %s on %d CPUs (%s), %.1f GiB memory, Linux %s; 1-minute load average %.2f at the start. Other work on the machine was not stopped: compare the systems within this run (the ratios), not with other runs. The run took %.0f s.\n\n",
		res.Date.Format("2006-01-02T15:04Z"), m.CPUs, m.CPUModel, m.MemGiB, m.Kernel, m.LoadAvg, res.Seconds)
	w("Command: `%s`.\n\n", res.Command)
	if res.Short {
		w("**This was a -short run (harness check): its numbers are not comparable to a full run.**\n\n")
	}
	var vs []string
	for _, k := range []string{sysHub, "clickhouse", sysProm, sysAM, "go"} {
		if v := res.Versions[k]; v != "" {
			vs = append(vs, k+": "+v)
		}
	}
	w("**Versions.** %s.\n\n", strings.Join(vs, "; "))
	if l := res.Latency; l != nil {
		latencyMarkdown(&b, l)
	}
	if t := res.Throughput; t != nil {
		throughputMarkdown(&b, t)
	}
	if len(res.Skipped) > 0 || len(res.Notes) > 0 {
		w("**Skipped and notes**\n\n")
		keys := make([]string, 0, len(res.Skipped))
		for k := range res.Skipped {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			w("- skipped %s: %s\n", k, res.Skipped[k])
		}
		for _, n := range res.Notes {
			w("- %s\n", n)
		}
		w("\n")
	}
	return b.String()
}

func latencyMarkdown(b *strings.Builder, l *LatencyResults) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	iv, _ := time.ParseDuration(l.Interval)
	w("### Pipeline latency: from a surge in the scraped data to the webhook\n\n")
	w("**Method.** The benchmark serves %d scrape targets on loopback; each exposes the gauge `bench_surge{trial=\"N\"}` (0) of the trials assigned to it (round robin). ", l.Targets)
	w("A trial sets its gauge to 1 at T0; the rule `%s` (`for: 0s`) then fires, and the route (`group_by: [alertname, trial]`, `group_wait: 0s`, `group_interval: 5m`, `repeat_interval: 24h`) sends one webhook notification per trial to a receiver in the benchmark process, which takes the receive time once it has read the request. Latency = receive time − T0, on the same clock. ", ruleExpr)
	w("Both systems run **at the same time off the same targets** (each scrapes its own path of the same listeners, so both see the same flip at the same instant and share the machine's noise):\n\n")
	for _, s := range l.Systems {
		w("- **%s**: %s.\n", displayName[s], l.Settings[s])
	}
	w("\nOne unmeasured warm-up trial, then %d trials, each started %s after the previous one plus a uniformly random part of one interval, so that T0 falls at a uniformly random phase of the scrape and evaluation cycles; the trials' gauges are spread over %d targets because every target has its own (hash-derived) scrape phase, so several alignments of scrape and evaluation are sampled rather than one. Seed %d. ", l.Trials, l.TrialGap, l.Targets, l.Seed)
	w("Each trial's time is split at the target (the first scrape that saw the surge, taken under the lock that guards the flip) and at the alert's `startsAt`, which both systems set to the timestamp of the rule evaluation that fired it. Percentiles are nearest-rank (the p95 of %d trials is the %s smallest).\n\n", l.Trials, ordinal(int(math.Ceil(0.95*float64(l.Trials)))))
	w("Prometheus' `--rules.alert.resend-delay` and the hub's `rules.resend_delay` (both 1m, the default) only delay *re*-sends of an alert that keeps firing; a newly firing alert is sent after the evaluation that fired it in both. With `group_wait: 0s` both Alertmanagers flush a new aggregation group at once (0.25's dispatcher and the v0.34 packages the hub embeds). Alertmanager runs with clustering off: a clustered instance waits for gossip to settle before its first notification, and the hub's alerting has no cluster either.\n\n")

	w("| system | trials | p50 | p95 | max | mean | missing | mean T0 → scrape | mean scrape → firing evaluation | mean evaluation → webhook (p50 / max) | firing evaluation ≥ 1 interval after the scrape |\n")
	w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range l.Systems {
		x := l.Summary[s]
		if x == nil {
			continue
		}
		w("| %s | %d | **%s** | **%s** | %s | %s | %d | %s | %s | %s (%s / %s) | %d of %d |\n", displayName[s], x.N, secs(x.P50), secs(x.P95), secs(x.Max), secs(x.Mean), x.Missing,
			secs(x.ScrapeWait), secs(x.ScrapeToEval), millis(x.EvalToWebhook), millis(x.EvalToWebhookP50), millis(x.EvalToWebhookMax), x.LateEvals, x.N)
	}
	w("\n")
	if l.RatioP50 > 0 {
		w("**bureauhub ÷ Prometheus + Alertmanager**: p50 **%s**, p95 **%s**, max %s. ", ratio(l.RatioP50), ratio(l.RatioP95), ratio(l.RatioMax))
	}
	met := "**not met**"
	if l.GoalMet {
		met = "**met**"
	}
	h := l.Summary[sysHub]
	w("Goal (issue 5): bureauhub p95 under %s over at least 20 trials: %s (p95 %s over %d trials, %d missing).\n\n", l.GoalP95, met, secs(h.P95), h.N, h.Missing)

	w("**Where the time goes.** A surge waits for the next scrape (uniform over one interval, mean about %s; measured %s for bureauhub", secs(float64(iv.Milliseconds())/2), secs(h.ScrapeWait))
	if p := l.Summary[sysProm]; p != nil && p.N > 0 {
		w(", %s for Prometheus", secs(p.ScrapeWait))
	}
	w("), then for the first rule evaluation that can read the scraped sample, then for the alerting path. ")
	w("The second part is set by the phase of the evaluation relative to the target's scrape, which is fixed for a target during a run (both systems derive scrape and evaluation offsets from hashes), hence several targets; here, scrape → evaluation by target: ")
	var per []string
	for _, s := range l.Systems {
		per = append(per, displayName[s]+" "+phaseGaps(l, s))
	}
	w("%s. Which system is ahead in a run's totals is mostly this luck of alignment, not speed. ", strings.Join(per, "; "))
	w("For Prometheus a sample is readable as soon as the scrape is appended, so the wait is at most one interval. ")
	w("For bureauhub the sample must first travel agent → disk buffer → gRPC → hub ingest (batched, `ingest.flush_interval` 200 ms) → ClickHouse insert; when the next evaluation comes sooner than that, it misses the sample and the alert fires one interval later (the last column: %d of %d trials", h.LateEvals, h.N)
	if g := minCaught(l, sysHub, iv); !math.IsNaN(g) {
		w("; the hub's evaluation still caught a sample scraped %.0f ms before it", g)
	}
	w("). ")
	w("The last part, evaluation to webhook (rule manager → alerting → dispatcher → notification pipeline → webhook), is what each alerting path itself costs: means %s for bureauhub", millis(h.EvalToWebhook))
	if p := l.Summary[sysProm]; p != nil && p.N > 0 {
		w(" and %s for Prometheus → Alertmanager", millis(p.EvalToWebhook))
	}
	w(". So a surge is notified after about one interval on average (half for the scrape, up to one for the evaluation, plus the ingest lag for bureauhub) and at worst after two intervals plus the alerting path, or three when bureauhub's evaluation misses the sample. With %s intervals the worst case is about %s (two intervals): a trial only gets near it when a surge just misses a scrape on a target whose evaluation comes just before its scrape; a missed evaluation adds one more interval.\n\n", l.Interval, 2*iv)

	w("Per trial (seconds: total = T0 → scrape + scrape → evaluation + evaluation → webhook):\n\n")
	w("| trial | target | T0 (UTC) |")
	for _, s := range l.Systems {
		w(" %s |", displayName[s])
	}
	w("\n|---:|---:|---|")
	for range l.Systems {
		w("---|")
	}
	w("\n")
	for _, tr := range l.Runs {
		n := fmt.Sprint(tr.N)
		if tr.Warmup {
			n += " (warm-up)"
		}
		w("| %s | %d | %s |", n, tr.Target, tr.T0.UTC().Format("15:04:05.000"))
		for _, s := range l.Systems {
			o := tr.Obs[s]
			if o == nil || o.Missing {
				w(" missing |")
				continue
			}
			w(" %.2f = %.2f + %.2f + %.2f |", o.TotalMS/1000, o.ScrapeWaitMS/1000, o.ScrapeToEvalMS/1000, o.EvalToWebhookMS/1000)
		}
		w("\n")
	}
	w("\n")
}

func throughputMarkdown(b *strings.Builder, t *ThroughputResults) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("### Notification throughput: %s active alerts across %d tenants\n\n", thousands(float64(t.Groups)), t.Tenants)
	w("**Method.** Each system runs alone (the other stopped) with the same policy: one child route per tenant (`bureau=\"t001\"` ...) to its own webhook receiver, `group_by: [%s]` so that every alert is its own group (%s groups), `group_wait: %s`, `repeat_interval: %s` so that every flush of a group (every `group_interval`) notifies again although nothing changed, a steady state at an offered rate of groups ÷ group_interval. ",
		strings.Join(t.GroupBy, ", "), thousands(float64(t.Groups)), t.GroupWait, t.RepeatInterval)
	w("Each of the %d tenants posts %d firing alerts (`endsAt` an hour ahead) to `POST /api/v2/alerts`, the tenants spread over one group_interval (at most 10 s) so the groups' timers are spread; to the hub with each tenant's own token (the hub sets `bureau`), to Alertmanager with `bureau` set as the hub would set it. ", t.Tenants, t.AlertsPerTenant)
	w("Once every group has been notified once, %s of warm-up, then a %s window in which the receiver (in the benchmark process, on the same 2 cores, counting only) counts notifications and the interval between two notifications of the same group. ", t.Warmup, t.Window)
	w("The hub is the real binary with its defaults (alert history to ClickHouse included: its CPU counts for bureauhub); CPU is from `/proc/PID/stat` over the window; RSS is the process's own (ClickHouse excluded), idle = after start before any alert; Go heap = `go_memstats_heap_inuse_bytes` from the process's `/metrics`. When a system cannot keep up, its groups' flushes run late and the delivered rate is what it sustains (the observed per-group interval grows beyond group_interval); the machine has 2 cores, shared with the receiver (its CPU is shown), so at saturation **notifications per CPU-second** is the steadier comparison. Memory is mostly goroutines and connections, in both: each of the %s aggregation groups has its goroutine, and each receiver keeps open as many webhook connections as its groups flushed at once (a tenant's %d groups start together), each with its goroutines and buffers; at saturation more flushes wait on requests at once. \"First round\" runs from the first post (the posts take up to one group_interval) until every group was notified once.\n\n", thousands(float64(t.Groups)), t.AlertsPerTenant)
	w("| system | group_interval | offered /s | **delivered /s** | delivered ÷ offered | per-group interval p50 / p95 | server CPU s/s | notifications per CPU-s | receiver CPU s/s | RSS idle → loaded (peak) | Go heap idle → loaded | goroutines | failed sends | first round |\n")
	w("|---|---|---:|---:|---:|---|---|---:|---:|---|---|---:|---:|---:|\n")
	for _, r := range t.Runs {
		if r.Error != "" && r.Notifications == 0 {
			w("| %s | %s | %s | error: %s | | | | | | | | | | |\n", displayName[r.System], r.GroupInterval, thousands(r.OfferedPerSecond), r.Error)
			continue
		}
		cpu := fmt.Sprintf("%.2f", r.CPUTotal)
		if len(r.CPU) > 1 {
			var parts []string
			for _, k := range []string{"hub", "clickhouse"} {
				parts = append(parts, fmt.Sprintf("%s %.2f", k, r.CPU[k]))
			}
			cpu += " (" + strings.Join(parts, " + ") + ")"
		}
		w("| %s | %s | %s | **%s** | %.2f | %.2f / %.2f s | %s | %s | %.2f | %.0f → %.0f MiB (%.0f) | %.0f → %.0f MiB | %s | %.0f | %.1f s |\n",
			displayName[r.System], r.GroupInterval, thousands(r.OfferedPerSecond), thousands(r.DeliveredPerSecond), r.DeliveredPerSecond/r.OfferedPerSecond,
			r.IntervalP50MS/1000, r.IntervalP95MS/1000, cpu, thousands(r.PerCPUSecond), r.ReceiverCPU, r.RSSIdleMiB, r.RSSMiB, r.PeakRSSMiB, r.HeapIdleMiB, r.HeapMiB,
			thousands(r.Goroutines), r.FailedTotal, r.FirstRoundSeconds)
	}
	w("\n")
	var lines []string
	for _, h := range t.Runs {
		if h.System != sysHub {
			continue
		}
		for _, a := range t.Runs {
			if a.System != sysAM || a.GroupInterval != h.GroupInterval || a.DeliveredPerSecond == 0 || h.DeliveredPerSecond == 0 {
				continue
			}
			lines = append(lines, fmt.Sprintf("- group_interval %s: delivered **%s**, notifications per CPU-second %s, RSS loaded %s, Go heap loaded %s",
				h.GroupInterval, ratio(h.DeliveredPerSecond/a.DeliveredPerSecond), ratio(h.PerCPUSecond/a.PerCPUSecond), ratio(h.RSSMiB/a.RSSMiB), ratio(h.HeapMiB/a.HeapMiB)))
		}
	}
	if len(lines) > 0 {
		w("**bureauhub ÷ Alertmanager**:\n\n%s\n\n", strings.Join(lines, "\n"))
	}
	for _, r := range t.Runs {
		if r.System == sysHub && r.HistoryDropped > 0 {
			w("The hub dropped %s alert-history records in its run at group_interval %s (`bureauhub_alerting_history_records_dropped_total`, from start to the end of the window, the first round's burst of a `firing` and a `notification` row per alert included): the bounded history queue (`alerting.history.queue_size`, default 10,000) overflowed; it records one `notification` row per alert per send. ", thousands(r.HistoryDropped), r.GroupInterval)
		}
	}
	w("\n\n")
}

// phaseGaps lists, per target, the median time from system's scrape to
// the evaluation that fired (the target's scrape-to-evaluation phase).
func phaseGaps(l *LatencyResults, system string) string {
	by := map[int][]float64{}
	for _, tr := range l.Runs {
		if o := tr.Obs[system]; o != nil && !o.Missing && !o.Scraped.IsZero() {
			by[tr.Target] = append(by[tr.Target], o.ScrapeToEvalMS)
		}
	}
	var parts []string
	for t := range l.Targets {
		if xs := by[t]; len(xs) > 0 {
			parts = append(parts, fmt.Sprintf("%.2f", quantile(xs, 0.5)/1000))
		}
	}
	return strings.Join(parts, " / ") + " s"
}

// minCaught is the smallest scrape-to-evaluation time at which system's
// evaluation read the scraped sample (NaN if none): the ingest lag is
// below it.
func minCaught(l *LatencyResults, system string, interval time.Duration) float64 {
	best := math.NaN()
	for _, tr := range l.Runs {
		o := tr.Obs[system]
		if o == nil || o.Missing || o.Scraped.IsZero() || o.ScrapeToEvalMS >= float64(interval.Milliseconds()) {
			continue
		}
		if math.IsNaN(best) || o.ScrapeToEvalMS < best {
			best = o.ScrapeToEvalMS
		}
	}
	return best
}

func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return fmt.Sprint(n) + suffix
}
