package querybench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// RuleGroupResult is the evaluation time of one shipped rule group.
type RuleGroupResult struct {
	File  string `json:"file"`
	Group string `json:"group"`
	// Hub holds, per bureau tenant, the median evaluation time after the
	// first evaluation; HubSum adds them up (the same data as one
	// Prometheus evaluation reads), HubMax is the slowest tenant's.
	Hub       map[string]EvalTimes `json:"bureauhub_by_tenant,omitempty"`
	HubSum    float64              `json:"bureauhub_sum_of_tenants_median_s"`
	HubMax    float64              `json:"bureauhub_slowest_tenant_median_s"`
	Prom      *EvalTimes           `json:"prometheus,omitempty"`
	HubFailed float64              `json:"bureauhub_evaluation_failures"`
	PromFail  float64              `json:"prometheus_evaluation_failures"`
	Rules     []*RuleResult        `json:"rules"`
}

// RuleResult is one rule's share: its last evaluation time as each
// system's /api/v1/rules reports it, and the median time of its expression
// run as an instant query over every bureau's data (the read side alone;
// the hub's rule evaluation also stores the results and waits for the
// insert).
type RuleResult struct {
	Name          string             `json:"name"`
	Expr          string             `json:"expr"`
	HubEvalMillis map[string]float64 `json:"bureauhub_eval_ms_by_tenant,omitempty"`
	PromEval      float64            `json:"prometheus_eval_ms"`
	HubQuery      float64            `json:"bureauhub_instant_query_ms"`
	PromQuery     float64            `json:"prometheus_instant_query_ms"`
}

// EvalTimes are the durations of a group's evaluations seen in the window.
type EvalTimes struct {
	// Seconds lists every evaluation observed, the first included.
	Seconds []float64 `json:"seconds"`
	// Median leaves out the first evaluation, which warms caches, when
	// there are others.
	Median float64 `json:"median_s"`
	Max    float64 `json:"max_s"`
}

func evalTimes(xs []float64) EvalTimes {
	e := EvalTimes{Seconds: xs}
	rest := xs
	if len(rest) > 1 {
		rest = rest[1:]
	}
	s := slices.Clone(rest)
	slices.Sort(s)
	if len(s) > 0 {
		e.Median = quantile(s, 0.5)
		e.Max = s[len(s)-1]
	}
	return e
}

// ruleFiles lists the shipped rule files.
func (r *runner) ruleFiles() ([]string, error) {
	files, err := filepath.Glob(filepath.Join(r.rulesDir, "*.yml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no rule files in %s", r.rulesDir)
	}
	return files, nil
}

// rulePhase evaluates the shipped rule files on the hub (for each bureau
// over its own data, as shipped) and on Prometheus (over all the data),
// each for RulesWindow, one after the other.
func (r *runner) rulePhase(ctx context.Context) error {
	files, err := r.ruleFiles()
	if err != nil {
		return err
	}
	for _, f := range files {
		r.res.Rules.Files = append(r.res.Rules.Files, filepath.Base(f))
	}
	r.res.Rules.Interval = r.cfg.EvaluationInterval.String()
	r.res.Rules.Window = r.cfg.RulesWindow.String()
	// Each tenant gets its own copy of the files: with one shared path,
	// the per-tenant rule managers would report under the same
	// rule_group label and overwrite each other's gauges.
	var rulesYAML strings.Builder
	fmt.Fprintf(&rulesYAML, "rules:\n  evaluation_interval: %s\n  tenant_files:\n", r.cfg.EvaluationInterval)
	for _, b := range bureaus {
		dir := filepath.Join(r.work, "rules-hub", b.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o644); err != nil {
				return err
			}
		}
		fmt.Fprintf(&rulesYAML, "    %s: [%q]\n", b.name, filepath.Join(dir, "*.yml"))
	}
	results := map[string]*RuleGroupResult{}
	get := func(file, group string) *RuleGroupResult {
		k := filepath.Base(file) + ";" + group
		if results[k] == nil {
			results[k] = &RuleGroupResult{File: filepath.Base(file), Group: group, Hub: map[string]EvalTimes{}}
		}
		return results[k]
	}

	r.logf("rules: hub evaluating %d rule files for %d bureaus every %s for %s", len(files), len(bureaus), r.cfg.EvaluationInterval, r.cfg.RulesWindow)
	hub, err := r.startHub(ctx, hubOptions{name: "hub-rules", rules: rulesYAML.String()})
	if err != nil {
		return err
	}
	r.res.Rules.HubEvaluatedAt = time.Now().UTC()
	seen, failures, err := watchRules(ctx, hub, r.cfg.RulesWindow)
	var hubRules []apiRuleGroup
	hubQuery := map[string]float64{}
	if err == nil {
		hubRules, err = rulesAPI(ctx, hub)
	}
	if err == nil {
		hubQuery, err = instantTimes(ctx, hub, hubRules)
	}
	if stopErr := hub.stop(); stopErr != nil {
		r.note("hub (rules) stop: %v", stopErr)
	}
	if err != nil {
		return err
	}
	for key, durs := range seen {
		file, group, _ := strings.Cut(key, ";")
		tenant := filepath.Base(filepath.Dir(file))
		g := get(file, group)
		g.Hub[tenant] = evalTimes(durs)
		g.HubFailed += failures[key]
	}
	for _, ag := range hubRules {
		g := get(ag.File, ag.Name)
		tenant := filepath.Base(filepath.Dir(ag.File))
		for _, ar := range ag.Rules {
			rr := g.rule(ar)
			rr.HubEvalMillis[tenant] = ar.EvaluationTime * 1000
			rr.HubQuery = hubQuery[ar.Query]
		}
	}

	if r.cfg.PrometheusBinary != "" && r.promData != "" {
		r.logf("rules: prometheus evaluating the same files for %s", r.cfg.RulesWindow)
		p, err := r.startProm(ctx, "prometheus-rules", files)
		if err != nil {
			return err
		}
		r.res.Rules.PromEvaluatedAt = time.Now().UTC()
		seen, failures, err := watchRules(ctx, p, r.cfg.RulesWindow)
		var promRules []apiRuleGroup
		promQuery := map[string]float64{}
		if err == nil {
			promRules, err = rulesAPI(ctx, p)
		}
		if err == nil {
			promQuery, err = instantTimes(ctx, p, promRules)
		}
		if stopErr := p.stop(); stopErr != nil {
			r.note("prometheus (rules) stop: %v", stopErr)
		}
		if err != nil {
			return err
		}
		for key, durs := range seen {
			file, group, _ := strings.Cut(key, ";")
			g := get(file, group)
			e := evalTimes(durs)
			g.Prom = &e
			g.PromFail = failures[key]
		}
		for _, ag := range promRules {
			g := get(ag.File, ag.Name)
			for _, ar := range ag.Rules {
				rr := g.rule(ar)
				rr.PromEval = ar.EvaluationTime * 1000
				rr.PromQuery = promQuery[ar.Query]
			}
		}
	}
	keys := make([]string, 0, len(results))
	for k := range results {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g := results[k]
		for _, e := range g.Hub {
			g.HubSum += e.Median
			g.HubMax = max(g.HubMax, e.Median)
		}
		r.res.Rules.Groups = append(r.res.Rules.Groups, g)
	}
	return nil
}

// watchRules polls t's /metrics for window and records, per rule group
// key (file;group), the duration of every evaluation that ends, and the
// group's evaluation failures at the end.
func watchRules(ctx context.Context, t *target, window time.Duration) (map[string][]float64, map[string]float64, error) {
	last := map[string]float64{}
	seen := map[string][]float64{}
	failures := map[string]float64{}
	deadline := time.Now().Add(window)
	for {
		page, err := scrape(ctx, t.base+"/metrics", "")
		if err != nil {
			return nil, nil, fmt.Errorf("%s /metrics: %w", t.name, err)
		}
		durs := map[string]float64{}
		for _, s := range page {
			switch s.name {
			case "prometheus_rule_group_last_duration_seconds":
				durs[s.labels["rule_group"]] = s.value
			}
		}
		for _, s := range page {
			switch s.name {
			case "prometheus_rule_group_last_evaluation_timestamp_seconds":
				key := s.labels["rule_group"]
				if s.value > 0 && s.value != last[key] {
					last[key] = s.value
					seen[key] = append(seen[key], durs[key])
				}
			case "prometheus_rule_evaluation_failures_total":
				failures[s.labels["rule_group"]] = s.value
			}
		}
		if time.Now().After(deadline) {
			return seen, failures, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (g *RuleGroupResult) rule(ar apiRule) *RuleResult {
	for _, r := range g.Rules {
		if r.Name == ar.Name && r.Expr == ar.Query {
			return r
		}
	}
	r := &RuleResult{Name: ar.Name, Expr: ar.Query, HubEvalMillis: map[string]float64{}}
	g.Rules = append(g.Rules, r)
	return r
}

// apiRuleGroup is a group as /api/v1/rules lists it.
type apiRuleGroup struct {
	Name           string    `json:"name"`
	File           string    `json:"file"`
	EvaluationTime float64   `json:"evaluationTime"`
	Rules          []apiRule `json:"rules"`
}

type apiRule struct {
	Name           string  `json:"name"`
	Query          string  `json:"query"`
	Type           string  `json:"type"`
	Health         string  `json:"health"`
	LastError      string  `json:"lastError"`
	EvaluationTime float64 `json:"evaluationTime"`
}

// rulesAPI reads t's /api/v1/rules.
func rulesAPI(ctx context.Context, t *target) ([]apiRuleGroup, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.base+"/api/v1/rules", nil)
	if err != nil {
		return nil, err
	}
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	resp, err := noProxy.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Groups []apiRuleGroup `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("%s /api/v1/rules: %w", t.name, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("%s /api/v1/rules: %s", t.name, body.Error)
	}
	return body.Data.Groups, nil
}

// instantTimes runs each rule expression as an instant query at the
// current time, five times, and returns the median milliseconds by
// expression.
func instantTimes(ctx context.Context, t *target, groups []apiRuleGroup) (map[string]float64, error) {
	out := map[string]float64{}
	for _, g := range groups {
		for _, ru := range g.Rules {
			if _, done := out[ru.Query]; done {
				continue
			}
			var runs []float64
			for range 5 {
				form := url.Values{}
				form.Set("query", ru.Query)
				form.Set("time", strconv.FormatFloat(float64(time.Now().UnixMilli())/1000, 'f', 3, 64))
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.base+"/api/v1/query", strings.NewReader(form.Encode()))
				if err != nil {
					return nil, err
				}
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if t.token != "" {
					req.Header.Set("Authorization", "Bearer "+t.token)
				}
				start := time.Now()
				resp, err := noProxy.Do(req)
				if err != nil {
					return nil, err
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil {
					return nil, err
				}
				if resp.StatusCode != http.StatusOK {
					return nil, fmt.Errorf("%s instant query %q: http %d", t.name, ru.Query, resp.StatusCode)
				}
				runs = append(runs, ms(time.Since(start)))
			}
			slices.Sort(runs)
			out[ru.Query] = quantile(runs, 0.5)
		}
	}
	return out, nil
}
