package clusterbench

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
)

// quantile is the nearest-rank q-quantile of xs, NaN values left out (the
// smallest value with at least q of the values at or below it): with 20
// values the p50 is the 10th smallest. NaN for no values.
func quantile(xs []float64, q float64) float64 {
	var s []float64
	for _, x := range xs {
		if !math.IsNaN(x) {
			s = append(s, x)
		}
	}
	if len(s) == 0 {
		return math.NaN()
	}
	slices.Sort(s)
	rank := int(math.Ceil(q * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	var sum float64
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

func num(format string, x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "–"
	}
	return fmt.Sprintf(format, x)
}

func ratio(x float64) string { return num("%.2fx", x) }

func thousands(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	s := fmt.Sprintf("%.0f", x)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Markdown renders the results as the section of docs/benchmarks.md.
func Markdown(res *Results) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := res.Machine
	w("## Hub cluster: cost and failover\n\n")
	w("Run %s on %d CPUs (%s), %.1f GiB memory, Linux %s; 1-minute load average %.2f at the start. Other work on the machine was not stopped: compare the modes within this run (the ratios), not with other runs. The run took %.0f s.\n\n",
		res.Date.Format("2006-01-02T15:04Z"), m.CPUs, m.CPUModel, m.MemGiB, m.Kernel, float64(m.LoadAvg), res.Seconds)
	w("Command: `%s`.\n\n", res.Command)
	if res.Short {
		w("**This was a -short run (harness check): its numbers are not comparable to a full run.**\n\n")
	}
	var vs []string
	for _, k := range []string{"bureauhub", "clickhouse", "go"} {
		if v := res.Versions[k]; v != "" {
			vs = append(vs, k+": "+v)
		}
	}
	w("**Versions.** %s.\n\n", strings.Join(vs, "; "))
	c := res.Cluster
	w("**Cluster settings.** Every cluster runs hub/cluster's defaults, as an operator who sets no failure-detection field would: probe_interval %s, probe_timeout %s, suspicion_mult %d, gossip_interval %s, settle %s. With three hubs memberlist declares a suspected hub dead after suspicion_mult × max(1, log10 3) × probe_interval = %s (two survivors cannot gather the independent suspicions that would shorten it). A SIGKILLed hub is therefore noticed when a survivor next probes it (each survivor probes its two peers in turn, one per probe interval), suspected once that probe and the indirect probe through the other survivor have failed (the rest of that probe interval), and declared dead, leaving the ring, %s later: about 5–7 s after the kill. The new owner then waits settle (%s) and evaluates the group at its next scheduled time (Prometheus's group schedule: a missed slot is not made up), so expect the first evaluation 7–9 s after the kill plus up to one interval.\n\n",
		c.ProbeInterval, c.ProbeTimeout, c.SuspicionMult, c.GossipInterval, c.Settle, c.SuspicionTimeout, c.SuspicionTimeout, c.Settle)
	l := res.Live
	w("**Data the rules read.** %d bureau tenants (%s), each with %d node_exporter-like series whose last %s was stored before the first phase and which are kept current (one scrape round every 15 s) through the whole run; the shipped %s are evaluated for each bureau over its own data.",
		len(l.Bureaus), strings.Join(l.Bureaus, ", "), l.SeriesPerBureau, l.History, strings.Join(l.ShippedRuleFiles, " and "))
	if l.FeederFailures > 0 {
		w(" Sending them failed %d times (last: %s); the rounds then sent were lost, as with an agent whose buffer overflowed.", l.FeederFailures, l.FeederLastError)
	}
	w("\n\n")
	if res.Cost != nil {
		costMarkdown(&b, res.Cost)
	}
	if res.Failover != nil {
		failoverMarkdown(&b, res.Failover, res.Cluster)
	}
	if len(res.Notes) > 0 {
		w("**Notes.**\n\n")
		for _, n := range res.Notes {
			w("- %s\n", n)
		}
		w("\n")
	}
	return b.String()
}

func costMarkdown(b *strings.Builder, c *CostResults) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("### Cost of clustering: hub-1 alone vs hub-1 as one of three\n\n")
	w("Each run starts fresh hub processes on the shared ClickHouse: *alone* is hub-1 without a `cluster:` section; *cluster* is hub-1 with hub-2 and hub-3, the same config plus `cluster:` (encrypted gossip, defaults above). In the cluster runs hub-2 and hub-3 receive no agent (idle for ingest) and evaluate the rule groups the ring gives them; hub-1 evaluates only its own. The order alternates from round to round (alone first in odd rounds) so that neither mode always runs on a ClickHouse busier merging the previous run's parts. First the shipped rules are watched for %s at a %s evaluation interval (after every group's first evaluation, and after settle in a cluster); then hub-1 receives the ingest load: %d node_exporter-like series sent as fast as hub-1 acknowledges, over %d TLS federation streams (as ingestbench), %s of warm-up then a %s window; each run as its own tenant, so every run stores the same samples as new series.\n\n",
		c.RuleWindow, c.RuleInterval, c.Series, c.Streams, c.Warmup, c.Window)

	// Ingest.
	w("**Ingest into hub-1** (CPU in CPU seconds per second over the window):\n\n")
	w("| round | mode | samples/s | hub-1 CPU | hub-2 + hub-3 CPU | ClickHouse CPU | samples per hub-1 CPU second | load avg at start |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
	rates := map[string][]float64{}
	perRound := map[int]map[string]float64{}
	for _, r := range c.Runs {
		others := r.IngestCPU["hub-2"] + r.IngestCPU["hub-3"]
		otherS := "–"
		if r.Mode == modeCluster {
			otherS = num("%.2f", others)
		}
		w("| %d | %s | %s | %s | %s | %s | %s | %s |\n", r.Round, r.Mode, thousands(r.Ingest.SamplesPerSecond), num("%.2f", r.IngestCPU["hub-1"]),
			otherS, num("%.2f", r.IngestCPU["clickhouse"]), thousands(r.Ingest.SamplesPerSecond/r.IngestCPU["hub-1"]), num("%.2f", float64(r.LoadAvg)))
		rates[r.Mode] = append(rates[r.Mode], r.Ingest.SamplesPerSecond)
		if perRound[r.Round] == nil {
			perRound[r.Round] = map[string]float64{}
		}
		perRound[r.Round][r.Mode] = r.Ingest.SamplesPerSecond
	}
	var roundRatios []string
	rounds := make([]int, 0, len(perRound))
	for k := range perRound {
		rounds = append(rounds, k)
	}
	sort.Ints(rounds)
	for _, k := range rounds {
		roundRatios = append(roundRatios, fmt.Sprintf("round %d %s", k, ratio(perRound[k][modeCluster]/perRound[k][modeAlone])))
	}
	w("\nIngest throughput, cluster ÷ alone: **%s** (mean of the runs; %s).\n\n", ratio(mean(rates[modeCluster])/mean(rates[modeAlone])), strings.Join(roundRatios, ", "))

	// Rules.
	w("**Rule evaluation** (every group evaluation that started in the window, as the evaluating hub's `prometheus_rule_group_last_duration_seconds` reported it; the hub's evaluation includes storing the results through ingestion):\n\n")
	w("| mode | evaluations | median | p90 | max | groups per hub | hubs' CPU | ClickHouse CPU | groups evaluated by two hubs |\n|---|---:|---:|---:|---:|---|---:|---:|---:|\n")
	all := map[string][]float64{}
	byGroup := map[string]map[string][]float64{}
	for _, mode := range []string{modeAlone, modeCluster} {
		var ms []float64
		perHub := map[string]map[string]bool{}
		var hubCPU, chCPU []float64
		doubled := 0
		for _, r := range c.Runs {
			if r.Mode != mode {
				continue
			}
			for k, g := range r.Evals {
				ms = append(ms, g.Millis...)
				if perHub[g.Hub] == nil {
					perHub[g.Hub] = map[string]bool{}
				}
				perHub[g.Hub][k] = true
				_, name, _ := strings.Cut(k, ";")
				if byGroup[name] == nil {
					byGroup[name] = map[string][]float64{}
				}
				byGroup[name][mode] = append(byGroup[name][mode], g.Millis...)
			}
			hubCPU = append(hubCPU, r.RulesCPU["hub-1"]+r.RulesCPU["hub-2"]+r.RulesCPU["hub-3"])
			chCPU = append(chCPU, r.RulesCPU["clickhouse"])
			doubled += r.Doubled
		}
		all[mode] = ms
		var split []string
		hubs := make([]string, 0, len(perHub))
		for h := range perHub {
			hubs = append(hubs, h)
		}
		sort.Strings(hubs)
		for _, h := range hubs {
			split = append(split, fmt.Sprintf("%s: %d", h, len(perHub[h])))
		}
		w("| %s | %d | %s | %s | %s | %s | %s | %s | %d |\n", mode, len(ms), num("%.1f ms", quantile(ms, 0.5)), num("%.1f ms", quantile(ms, 0.9)),
			num("%.1f ms", quantile(ms, 1)), strings.Join(split, ", "), num("%.3f", mean(hubCPU)), num("%.3f", mean(chCPU)), doubled)
	}
	w("\nRule evaluation latency, cluster ÷ alone: **%s** at the median, %s at p90. The hubs' CPU column is the sum over the running hubs in the rules window (no ingest load): what the two extra hubs cost when idle.\n\n",
		ratio(quantile(all[modeCluster], 0.5)/quantile(all[modeAlone], 0.5)), ratio(quantile(all[modeCluster], 0.9)/quantile(all[modeAlone], 0.9)))
	w("| rule group (all bureaus) | alone median | cluster median | cluster ÷ alone |\n|---|---:|---:|---:|\n")
	names := make([]string, 0, len(byGroup))
	for n := range byGroup {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a, cl := quantile(byGroup[n][modeAlone], 0.5), quantile(byGroup[n][modeCluster], 0.5)
		w("| %s | %s | %s | %s |\n", n, num("%.1f ms", a), num("%.1f ms", cl), ratio(cl/a))
	}
	w("\n")
}

func failoverMarkdown(b *strings.Builder, f *FailoverResults, c ClusterSettings) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("### Failover: SIGKILL of a rule group's owner\n\n")
	w("Three hubs evaluate the shipped rules and a one-rule group `failover` (recording `%s`) for every bureau, every %s (Prometheus's common scrape and evaluation interval, and the hub's default). The %d kill phases (times after one of the group's scheduled evaluations) are spread evenly over the interval, one at a random point in each of %d equal strata. Each trial waits until all three hubs see each other, agree on every group's owner, and the last ring change is older than settle; takes the bureau's `failover` group and remaining phase that come first (the groups' schedules are offset from one another, so the harness waits little; a group already used waits a third of an interval more per use, so the kills spread over the groups and their owners); SIGKILLs that group's owner (found with `/api/v1/cluster?item=`) at that phase; and polls the survivors: `/api/v1/cluster` every 100 ms, `/metrics` every 250 ms, ClickHouse for the recording rule's sample. Then it restarts the killed hub, which rejoins and takes its groups back. The bureaus' data keeps flowing to the live hubs.\n\n",
		probeMetric, f.Interval, len(f.Trials), len(f.Trials))
	w("The headline is the **first evaluation by the new owner**: the wall-clock start of that evaluation as the new owner's `prometheus_rule_group_last_evaluation_timestamp_seconds` reports it (set only by an evaluation that ran: a hub skipping a group it does not own leaves it alone), minus the kill time. It is the most faithful of the three signals: the recording rule's sample timestamp is the evaluation's scheduled time (a few ms earlier) and only proves the evaluation once stored, and the time it became readable in ClickHouse adds the write and this harness's polling. All three are shown.\n\n")
	col := func(get func(*Trial) Float) []float64 {
		var out []float64
		for _, t := range f.Trials {
			out = append(out, float64(get(t)))
		}
		return out
	}
	evals := col(func(t *Trial) Float { return t.Eval })
	under := 0
	for _, e := range evals {
		if !math.IsNaN(e) && e < f.GoalSeconds {
			under++
		}
	}
	verdict := "met"
	if quantile(evals, 1) >= f.GoalSeconds {
		verdict = "**not met**"
	}
	w("| seconds after the SIGKILL (%d trials) | p50 | max |\n|---|---:|---:|\n", len(f.Trials))
	rows := []struct {
		name string
		xs   []float64
	}{
		{"a survivor's member list drops the victim (declared dead)", col(func(t *Trial) Float { return t.Dropped })},
		{"the new owner's ring drops the victim", col(func(t *Trial) Float { return t.Ring })},
		{"**first evaluation by the new owner**", evals},
		{"its recording-rule sample's timestamp", col(func(t *Trial) Float { return t.Sample })},
		{"that sample read from ClickHouse", col(func(t *Trial) Float { return t.Visible })},
	}
	for _, r := range rows {
		w("| %s | %s | %s |\n", r.name, num("%.2f", quantile(r.xs, 0.5)), num("%.2f", quantile(r.xs, 1)))
	}
	w("\nGoal: failover under one evaluation interval plus 5 s = %.0f s: %s (p50 %s s, max %s s; %d of %d trials under it). Restarting the killed hub took %s s at the median.\n\n",
		f.GoalSeconds, verdict, num("%.2f", quantile(evals, 0.5)), num("%.2f", quantile(evals, 1)), under, len(f.Trials),
		num("%.2f", quantile(col(func(t *Trial) Float { return t.Restart }), 0.5)))
	// Where the time goes: detection, settle, waiting for the schedule.
	var waits []float64
	for _, t := range f.Trials {
		waits = append(waits, float64(t.Eval-t.Ring))
	}
	w("From the ring change on the new owner to its first evaluation (settle %s, then the group's next scheduled time): p50 %s s, max %s s.\n\n",
		c.Settle, num("%.2f", quantile(waits, 0.5)), num("%.2f", quantile(waits, 1)))
	w("**Correctness over the phase.** Rule results stored twice (a group evaluated by two hubs at once): %d. Scheduled evaluations of the `failover` groups without a sample: %d of %d (%d kills; a kill skips at most one slot of each `failover` group its victim owned, when detection plus settle is shorter than the interval). After each restart, the first evaluation of every group the restarted hub evaluated within an interval plus settle: %d seen, %d of them sooner than settle after the hub joined (which it does just before it serves)",
		f.Duplicates, f.Missed, f.Expected, len(f.Trials), len(f.RejoinFirstEval), f.EarlyRejoins)
	if len(f.RejoinFirstEval) > 0 {
		w("; the earliest %s s after readiness", num("%.2f", quantile(f.RejoinFirstEval, 0)))
	}
	w(". Each restart follows a failover evaluation by a fraction of a second, so restarts land at a few fixed phases of the groups' schedules: a count of 0 here only means no group's slot fell within settle of a restart, not that a joining hub waits settle.\n\n")
	w("<details><summary>Every trial</summary>\n\n| # | bureau | killed → new owner | phase | dropped | ring | first evaluation | sample ts | visible | restart |\n|---:|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, t := range f.Trials {
		w("| %d | %s | %s → %s | %s | %s | %s | %s | %s | %s | %s |\n", t.N, t.Bureau, t.Victim, t.NewOwner, num("%.1f", float64(t.Phase)),
			num("%.2f", float64(t.Dropped)), num("%.2f", float64(t.Ring)), num("%.2f", float64(t.Eval)), num("%.2f", float64(t.Sample)), num("%.2f", float64(t.Visible)), num("%.2f", float64(t.Restart)))
	}
	w("\n</details>\n\n")
}

// Float is a float64 written as null in JSON when it is NaN (not
// observed), which encoding/json cannot write.
type Float float64

// MarshalJSON writes null for NaN.
func (f Float) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(f))
}

// UnmarshalJSON reads null as NaN.
func (f *Float) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = Float(math.NaN())
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = Float(v)
	return nil
}
