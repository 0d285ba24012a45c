package alertbench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bureauhub/bureauhub/bench/benchenv"
)

// LatencyResults is the pipeline latency phase's outcome.
type LatencyResults struct {
	Interval string `json:"interval"`
	Trials   int    `json:"trials"`
	Targets  int    `json:"targets"`
	Seed     uint64 `json:"seed"`
	// TrialGap is the fixed part of the time between trials.
	TrialGap string `json:"trial_gap"`
	// Systems ran side by side off the same targets.
	Systems []string `json:"systems"`
	// Settings describe each system's configuration in words.
	Settings map[string]string `json:"settings"`
	// Rule and Route are the alerting rule and the route, the same for
	// both systems.
	Rule  string `json:"rule"`
	Route string `json:"route"`
	// Runs holds every trial, the warm-up (not in the summaries) first.
	Runs    []*Trial                   `json:"runs"`
	Summary map[string]*LatencySummary `json:"summary"`
	// Ratios: bureauhub over Prometheus + Alertmanager.
	RatioP50 float64 `json:"ratio_p50,omitempty"`
	RatioP95 float64 `json:"ratio_p95,omitempty"`
	RatioMax float64 `json:"ratio_max,omitempty"`
	// GoalP95 is the goal for bureauhub's p95.
	GoalP95 string `json:"goal_p95"`
	GoalMet bool   `json:"goal_met"`
}

// Trial is one surge: its gauge flipped at T0 and what each system did.
type Trial struct {
	N      int                     `json:"n"`
	Target int                     `json:"target"`
	Warmup bool                    `json:"warmup,omitempty"`
	T0     time.Time               `json:"t0"`
	Obs    map[string]*Observation `json:"systems"`
}

// Observation is one system's path through one trial. Scraped is its first
// scrape of the trial's target that saw the surge (taken at the target),
// Evaluated the alert's startsAt (the timestamp of the rule evaluation
// that fired it), Received when the webhook had read the notification.
type Observation struct {
	Scraped   time.Time `json:"scraped,omitzero"`
	Evaluated time.Time `json:"evaluated,omitzero"`
	Received  time.Time `json:"received,omitzero"`
	// Milliseconds: T0 to scrape, scrape to evaluation, evaluation to
	// webhook, and T0 to webhook.
	ScrapeWaitMS    float64 `json:"scrape_wait_ms"`
	ScrapeToEvalMS  float64 `json:"scrape_to_eval_ms"`
	EvalToWebhookMS float64 `json:"eval_to_webhook_ms"`
	TotalMS         float64 `json:"total_ms"`
	Missing         bool    `json:"missing,omitempty"`
}

// LatencySummary summarises one system's measured trials (milliseconds).
type LatencySummary struct {
	N       int     `json:"n"`
	Missing int     `json:"missing"`
	P50     float64 `json:"p50_ms"`
	P95     float64 `json:"p95_ms"`
	Max     float64 `json:"max_ms"`
	Min     float64 `json:"min_ms"`
	Mean    float64 `json:"mean_ms"`
	// Means of the parts.
	ScrapeWait    float64 `json:"scrape_wait_mean_ms"`
	ScrapeToEval  float64 `json:"scrape_to_eval_mean_ms"`
	EvalToWebhook float64 `json:"eval_to_webhook_mean_ms"`
	// EvalToWebhookP95 and Max: the alerting path alone.
	EvalToWebhookP50 float64 `json:"eval_to_webhook_p50_ms"`
	EvalToWebhookMax float64 `json:"eval_to_webhook_max_ms"`
	// LateEvals counts trials whose firing evaluation came a whole
	// interval or more after the scrape: the scrape had not reached the
	// rule's query by the first evaluation after it.
	LateEvals int `json:"late_evals"`
}

const (
	ruleName   = "BenchSurge"
	ruleExpr   = "bench_surge > 0.5"
	latencyHub = "latency-hub"
	benchTen   = "bench"
	goalP95    = 10 * time.Second
)

func latencyRules() string {
	return fmt.Sprintf(`groups:
  - name: alertbench
    rules:
      - alert: %s
        expr: %s
        for: 0s
        labels: {severity: page}
        annotations: {summary: "surge of trial {{ $labels.trial }}"}
`, ruleName, ruleExpr)
}

// latencyRoute is the route of both systems: one group per trial, sent at
// once, never repeated during the run.
const latencyRoute = `route:
  receiver: hook
  group_by: [alertname, trial]
  group_wait: 0s
  group_interval: 5m
  repeat_interval: 24h
`

func latencyPolicy(hook string) string {
	return latencyRoute + fmt.Sprintf("receivers:\n  - name: hook\n    webhook_configs: [{url: %q}]\n", hook)
}

func (r *runner) latencyPhase(ctx context.Context) error {
	cfg := r.cfg
	total := cfg.Trials + 1
	seed := cfg.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	res := &LatencyResults{Interval: cfg.Interval.String(), Trials: cfg.Trials, Targets: cfg.Targets, Seed: seed, TrialGap: cfg.TrialGap.String(),
		Settings: map[string]string{}, Summary: map[string]*LatencySummary{},
		Rule: fmt.Sprintf("alert: %s, expr: %s, for: 0s", ruleName, ruleExpr), Route: strings.TrimSpace(latencyRoute),
		GoalP95: goalP95.String()}
	r.res.Latency = res

	targets, err := newSurgeTargets(cfg.Targets, total)
	if err != nil {
		return err
	}
	defer targets.close()
	sink, err := newLatencySink()
	if err != nil {
		return err
	}
	defer sink.close()
	rulesFile, err := r.writeFile("latency-rules.yml", latencyRules())
	if err != nil {
		return err
	}
	from := len(r.procs)
	defer r.stopAll(from)

	scrape := func(system string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "global: {scrape_interval: %s, scrape_timeout: %s, evaluation_interval: %s}\n", cfg.Interval, min(cfg.Interval, 4*time.Second), cfg.Interval)
		fmt.Fprintf(&b, "scrape_configs:\n  - job_name: surge\n    metrics_path: /metrics/%s\n    static_configs:\n      - targets: [", system)
		for i, a := range targets.addrs() {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", a)
		}
		b.WriteString("]\n")
		return b.String()
	}

	r.logf("latency: starting the hub and an agent")
	hub, err := r.startHub(ctx, hubSpec{
		name: latencyHub, database: "alertbench_latency", tls: true,
		rules:   fmt.Sprintf("rules: {evaluation_interval: %s, resend_delay: 1m, files: [%q]}\n", cfg.Interval, rulesFile),
		policy:  latencyPolicy(sink.url(sysHub)),
		tenants: []string{benchTen},
	})
	if err != nil {
		return err
	}
	if _, err := r.startAgent(ctx, "latency-agent", benchTen, r.hubGRPC, scrape(sysHub)); err != nil {
		return err
	}
	res.Systems = append(res.Systems, sysHub)
	res.Settings[sysHub] = fmt.Sprintf("agent scrape_interval %s (TLS, token, its defaults otherwise); hub rules.evaluation_interval %s, "+
		"rules.resend_delay 1m (Prometheus' default), ingest and alerting at their defaults (ingest.flush_interval 200ms)", cfg.Interval, cfg.Interval)

	var prom *server
	if r.baseline {
		r.logf("latency: starting Alertmanager and Prometheus")
		am, err := r.startAlertmanager(ctx, "latency-alertmanager", latencyPolicy(sink.url(sysProm)))
		if err != nil {
			return err
		}
		promCfg := scrape(sysProm) + fmt.Sprintf("rule_files: [%q]\nalerting:\n  alertmanagers:\n    - api_version: v2\n      static_configs: [{targets: [%q]}]\n",
			rulesFile, strings.TrimPrefix(am.base, "http://"))
		if prom, err = r.startPrometheus(ctx, "latency-prometheus", promCfg, "--rules.alert.resend-delay=1m"); err != nil {
			return err
		}
		res.Systems = append(res.Systems, sysProm)
		res.Settings[sysProm] = fmt.Sprintf("Prometheus scrape_interval and evaluation_interval %s, --rules.alert.resend-delay=1m (its default), "+
			"sending to Alertmanager over API v2; Alertmanager with clustering off (--cluster.listen-address=), otherwise its defaults", cfg.Interval)
	} else {
		r.skip("latency baseline", "Prometheus + Alertmanager not available: "+r.res.Skipped[sysProm]+" "+r.res.Skipped[sysAM])
	}

	// Ready: every system scraped every target twice and can query every
	// trial's series; then one more evaluation for the rules to run on it.
	r.logf("latency: waiting until every system scrapes and queries the targets")
	queryURL := map[string]string{sysHub: hub.base}
	if prom != nil {
		queryURL[sysProm] = prom.base
	}
	deadline := time.Now().Add(2 * time.Minute)
	for system, base := range queryURL {
		for {
			n, qerr := queryScalar(ctx, base, tokenOf(benchTen), "count(bench_surge)")
			if targets.scrapeCount(system) >= 2 && qerr == nil && int(n) == total {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: not scraping and querying the targets after 2m (scrapes %d, count(bench_surge) %v, %v)",
					system, targets.scrapeCount(system), n, qerr)
			}
			if err := sleep(ctx, 500*time.Millisecond); err != nil {
				return err
			}
		}
	}
	if err := sleep(ctx, 2*cfg.Interval); err != nil {
		return err
	}

	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	r.logf("latency: %d trials (+1 warm-up), one every %s + U[0, %s)", cfg.Trials, cfg.TrialGap, cfg.TrialJitter)
	for n := range total {
		wait := cfg.TrialGap
		if cfg.TrialJitter > 0 {
			wait += time.Duration(rng.Int64N(int64(cfg.TrialJitter)))
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		t0 := targets.flip(n)
		res.Runs = append(res.Runs, &Trial{N: n, Target: targetOf(n, cfg.Targets), Warmup: n == 0, T0: t0, Obs: map[string]*Observation{}})
	}
	last := res.Runs[len(res.Runs)-1].T0
	for {
		done := true
		for _, tr := range res.Runs {
			for _, s := range res.Systems {
				if _, ok := sink.get(s, tr.N); !ok {
					done = false
				}
			}
		}
		if done || time.Now().After(last.Add(cfg.TrialTimeout)) {
			break
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	sink.mu.Lock()
	for s, n := range sink.other {
		r.note("latency: %s sent %d firing alerts without a trial label (not the benchmark's)", s, n)
	}
	for _, b := range sink.bad {
		r.note("latency: a webhook body did not parse: %s", b)
	}
	sink.mu.Unlock()

	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for _, tr := range res.Runs {
		for _, s := range res.Systems {
			o := &Observation{}
			tr.Obs[s] = o
			if sc, ok := targets.firstScrapeAfter(s, tr.Target, tr.T0); ok {
				o.Scraped = sc
				o.ScrapeWaitMS = ms(sc.Sub(tr.T0))
			}
			a, ok := sink.get(s, tr.N)
			if !ok {
				o.Missing = true
				continue
			}
			o.Received, o.Evaluated = a.At, a.StartsAt
			o.TotalMS = ms(a.At.Sub(tr.T0))
			o.EvalToWebhookMS = ms(a.At.Sub(a.StartsAt))
			if !o.Scraped.IsZero() {
				o.ScrapeToEvalMS = ms(a.StartsAt.Sub(o.Scraped))
			}
		}
		line := fmt.Sprintf("trial %2d (target %d)", tr.N, tr.Target)
		for _, s := range res.Systems {
			o := tr.Obs[s]
			if o.Missing {
				line += fmt.Sprintf("  %s: MISSING", s)
				continue
			}
			line += fmt.Sprintf("  %s: %5.0f ms (scrape +%4.0f, eval +%5.0f, webhook +%4.0f)", s, o.TotalMS, o.ScrapeWaitMS, o.ScrapeToEvalMS, o.EvalToWebhookMS)
		}
		r.logf("%s", line)
	}
	for _, s := range res.Systems {
		sum := &LatencySummary{}
		var tot, wait, toEval, toHook []float64
		for _, tr := range res.Runs {
			if tr.Warmup {
				continue
			}
			o := tr.Obs[s]
			if o.Missing {
				sum.Missing++
				continue
			}
			tot = append(tot, o.TotalMS)
			wait = append(wait, o.ScrapeWaitMS)
			toEval = append(toEval, o.ScrapeToEvalMS)
			toHook = append(toHook, o.EvalToWebhookMS)
			if o.ScrapeToEvalMS >= ms(cfg.Interval) {
				sum.LateEvals++
			}
		}
		sum.N = len(tot)
		if sum.N > 0 {
			sum.P50, sum.P95, sum.Max, sum.Min, sum.Mean = quantile(tot, 0.5), quantile(tot, 0.95), quantile(tot, 1), quantile(tot, 0), mean(tot)
			sum.ScrapeWait, sum.ScrapeToEval, sum.EvalToWebhook = mean(wait), mean(toEval), mean(toHook)
			sum.EvalToWebhookP50, sum.EvalToWebhookMax = quantile(toHook, 0.5), quantile(toHook, 1)
		}
		res.Summary[s] = sum
		r.logf("latency %s: p50 %.0f ms, p95 %.0f ms, max %.0f ms over %d trials (%d missing)", s, sum.P50, sum.P95, sum.Max, sum.N, sum.Missing)
	}
	h := res.Summary[sysHub]
	res.GoalMet = h.Missing == 0 && h.N >= 1 && h.P95 < ms(goalP95)
	if p := res.Summary[sysProm]; p != nil && p.N > 0 && h.N > 0 {
		res.RatioP50, res.RatioP95, res.RatioMax = h.P50/p.P50, h.P95/p.P95, h.Max/p.Max
	}
	if cfg.Trials < 20 {
		r.note("latency: %d trials; the issue asks for at least 20", cfg.Trials)
	}
	return nil
}

// queryScalar runs an instant query whose result is one sample and
// returns its value.
func queryScalar(ctx context.Context, base, token, query string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/query?query="+url.QueryEscape(query), nil)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := noProxy.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("http %d: %s", resp.StatusCode, benchenv.Tail(string(body), 3))
	}
	var out struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return 0, err
	}
	if len(out.Data.Result) != 1 {
		return 0, fmt.Errorf("%d results", len(out.Data.Result))
	}
	s, _ := out.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
