package clusterbench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/bureauhub/bureauhub/bench/benchenv"
	"github.com/bureauhub/bureauhub/e2e"
)

// Modes of the cost phase.
const (
	modeAlone   = "alone"
	modeCluster = "cluster"
)

// CostResults compare one hub alone with the same hub as one of three.
type CostResults struct {
	RuleInterval string     `json:"rule_interval"`
	RuleWindow   string     `json:"rule_window"`
	Warmup       string     `json:"ingest_warmup"`
	Window       string     `json:"ingest_window"`
	Series       int        `json:"ingest_series"`
	Streams      int        `json:"ingest_streams"`
	Runs         []*CostRun `json:"runs"`
}

// CostRun is one run of one mode: the shipped rules watched for a window,
// then the ingest load sent to hub-1.
type CostRun struct {
	Mode  string `json:"mode"`
	Round int    `json:"round"`
	// LoadAvg is the machine's 1-minute load average as the run began.
	LoadAvg Float        `json:"load_average_1m"`
	Ingest  IngestResult `json:"ingest"`
	// IngestCPU and RulesCPU are CPU seconds per second of each process
	// (hub-1..3, clickhouse) in the ingest and the rules window.
	IngestCPU map[string]float64 `json:"ingest_cpu"`
	RulesCPU  map[string]float64 `json:"rules_cpu"`
	// Evals are the rule group evaluations that started in the rules
	// window, by group key (tenant/file;group).
	Evals map[string]*GroupEvals `json:"evaluations"`
	// Doubled counts groups evaluated by more than one hub in the window.
	Doubled int `json:"groups_evaluated_by_two_hubs"`
}

// GroupEvals are one group's evaluations in a window.
type GroupEvals struct {
	Hub    string    `json:"hub"`
	Millis []float64 `json:"millis"`
}

// costPhase runs Rounds pairs of runs, alone then cluster in odd rounds
// and the reverse in even ones, so that neither mode always runs second
// (on a ClickHouse with more parts to merge).
func (r *runner) costPhase(ctx context.Context) error {
	cfg := r.cfg
	r.res.Cost = &CostResults{RuleInterval: cfg.RuleInterval.String(), RuleWindow: cfg.RuleWindow.String(),
		Warmup: cfg.Warmup.String(), Window: cfg.Window.String(), Series: cfg.Series, Streams: cfg.Streams}
	for round := 1; round <= cfg.Rounds; round++ {
		modes := []string{modeAlone, modeCluster}
		if round%2 == 0 {
			modes = []string{modeCluster, modeAlone}
		}
		for _, mode := range modes {
			run, err := r.costRun(ctx, mode, round)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", mode, round, err)
			}
			r.res.Cost.Runs = append(r.res.Cost.Runs, run)
		}
	}
	return nil
}

func (r *runner) rulesYAML(interval time.Duration, extra ...string) string {
	var fs []string
	for _, f := range append(append([]string(nil), r.ruleFiles...), extra...) {
		fs = append(fs, fmt.Sprintf("%q", f))
	}
	return fmt.Sprintf("rules: {evaluation_interval: %s, files: [%s]}\n", interval, strings.Join(fs, ", "))
}

func (r *runner) costRun(ctx context.Context, mode string, round int) (*CostRun, error) {
	cfg := r.cfg
	run := &CostRun{Mode: mode, Round: round, LoadAvg: Float(benchenv.LoadAvg())}
	n := 1
	if mode == modeCluster {
		n = 3
	}
	hubs, err := newHubs(n)
	if err != nil {
		return nil, err
	}
	var peers []*hub
	if mode == modeCluster {
		peers = hubs
	}
	rules := r.rulesYAML(cfg.RuleInterval)
	var names []string
	for _, h := range hubs {
		if err := r.writeConfig(h, rules, peers); err != nil {
			return nil, err
		}
		names = append(names, h.name)
	}
	defer func() {
		for i := len(hubs) - 1; i >= 0; i-- {
			r.stop(hubs[i])
		}
	}()
	r.logf("cost, round %d: starting %d hub(s) (%s)", round, n, mode)
	for _, h := range hubs {
		r.hubs = append(r.hubs, h)
		if err := r.start(ctx, h); err != nil {
			return nil, err
		}
	}
	settle := time.Duration(0)
	if mode == modeCluster {
		if err := waitMembers(ctx, hubs, names, time.Minute); err != nil {
			return nil, err
		}
		settle = clusterDefaults().Settle
	}
	feedCtx, stopFeed := context.WithCancel(ctx)
	defer stopFeed()
	go r.feeder.run(feedCtx, func() []string { return []string{hubs[0].addr()} })

	// Every group's first evaluation on its owner (which waits Settle in
	// a cluster) happens before the window: it warms caches.
	if err := sleep(ctx, settle+cfg.RuleInterval+time.Second); err != nil {
		return nil, err
	}
	procs := r.procs(hubs)
	cpu0 := cpuSnapshot(procs)
	evals, doubled, err := watchRules(ctx, hubs, cfg.RuleWindow)
	if err != nil {
		return nil, err
	}
	run.RulesCPU = cpuRates(procs, cpu0, cpuSnapshot(procs), cfg.RuleWindow)
	run.Evals, run.Doubled = evals, doubled
	r.logf("cost, round %d, %s: %d group evaluations in %s", round, mode, countEvals(evals), cfg.RuleWindow)

	r.loadRuns++
	tenant := fmt.Sprintf("load%d", r.loadRuns)
	type result struct {
		res IngestResult
		err error
	}
	done := make(chan result, 1)
	t0 := time.Now()
	go func() {
		res, err := r.ingestLoad(ctx, hubs[0].addr(), tenant, r.loadRuns)
		done <- result{res, err}
	}()
	if err := sleep(ctx, time.Until(t0.Add(cfg.Warmup))); err != nil {
		return nil, err
	}
	cpu0 = cpuSnapshot(procs)
	if err := sleep(ctx, time.Until(t0.Add(cfg.Warmup+cfg.Window))); err != nil {
		return nil, err
	}
	run.IngestCPU = cpuRates(procs, cpu0, cpuSnapshot(procs), cfg.Window)
	res := <-done
	if res.err != nil {
		return nil, res.err
	}
	run.Ingest = res.res
	r.logf("cost, round %d, %s: %.0f samples/s into hub-1, hub-1 %.2f CPU s/s, clickhouse %.2f", round, mode,
		run.Ingest.SamplesPerSecond, run.IngestCPU["hub-1"], run.IngestCPU["clickhouse"])
	for msg, k := range run.Ingest.Errors {
		r.note("cost, round %d, %s: %d ingest stream(s) failed: %s", round, mode, k, msg)
	}
	return run, nil
}

type namedPID struct {
	name string
	pid  int
}

func (r *runner) procs(hubs []*hub) []namedPID {
	out := []namedPID{{"clickhouse", r.ch.PID()}}
	for _, h := range hubs {
		out = append(out, namedPID{h.name, h.proc.Pid()})
	}
	return out
}

func cpuSnapshot(procs []namedPID) []float64 {
	out := make([]float64, len(procs))
	for i, p := range procs {
		out[i], _ = e2e.ProcCPUSeconds(p.pid)
	}
	return out
}

func cpuRates(procs []namedPID, a, b []float64, d time.Duration) map[string]float64 {
	out := map[string]float64{}
	for i, p := range procs {
		out[p.name] = (b[i] - a[i]) / d.Seconds()
	}
	return out
}

func countEvals(evals map[string]*GroupEvals) int {
	n := 0
	for _, g := range evals {
		n += len(g.Millis)
	}
	return n
}

// watchRules polls every hub's rule group gauges for window and records
// every evaluation that starts within it, with the hub that ran it. It
// also counts the groups that two hubs evaluated.
func watchRules(ctx context.Context, hubs []*hub, window time.Duration) (map[string]*GroupEvals, int, error) {
	start := time.Now()
	deadline := start.Add(window)
	last := map[string]time.Time{} // hub + key -> last evaluation seen
	out := map[string]*GroupEvals{}
	doubled := map[string]bool{}
	for {
		for _, h := range hubs {
			gs, err := scrapeGroups(ctx, h)
			if err != nil {
				return nil, 0, err
			}
			for k, s := range gs {
				hk := h.name + " " + k
				if s.LastEval.IsZero() || !s.LastEval.After(last[hk]) {
					continue
				}
				last[hk] = s.LastEval
				if s.LastEval.Before(start) || !s.LastEval.Before(deadline) {
					continue
				}
				g := out[k]
				if g == nil {
					g = &GroupEvals{Hub: h.name}
					out[k] = g
				} else if g.Hub != h.name {
					doubled[k] = true
				}
				g.Millis = append(g.Millis, float64(s.Duration)/1e6)
			}
		}
		if time.Now().After(deadline) {
			return out, len(doubled), nil
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return nil, 0, err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
