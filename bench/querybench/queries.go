package querybench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Query is one range query of the dashboard-like set.
type Query struct {
	Name   string        `json:"name"`
	Expr   string        `json:"expr"`
	Window time.Duration `json:"-"`
	Step   time.Duration `json:"-"`
	// Start and End are the evaluation range, whole minutes.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// querySet is the dashboard: request rates, latency quantiles, the busiest
// CPUs, CPU and memory per bureau, and one host's CPU, over the data's full
// span and over its last ShortWindow.
func querySet(d *Dataset, cfg Config) []Query {
	exprs := []struct{ name, expr string }{
		{"requests-by-bureau", `sum by (bureau) (rate(http_requests_total[5m]))`},
		{"latency-p99-by-bureau", `histogram_quantile(0.99, sum by (bureau, le) (rate(http_request_duration_seconds_bucket[5m])))`},
		{"topk-cpu", `topk(5, rate(node_cpu_seconds_total{mode!="idle"}[5m]))`},
		{"cpu-by-bureau", `sum by (bureau) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))`},
		{"mem-available-by-bureau", `avg by (bureau) (node_memory_MemAvailable_bytes)`},
		{"one-host-cpu", fmt.Sprintf(`sum by (mode) (rate(node_cpu_seconds_total{instance=%q}[5m]))`, d.OneHost)},
	}
	type window struct {
		span, step time.Duration
	}
	windows := []window{{d.Span, cfg.Step}}
	if cfg.ShortWindow > 0 {
		windows = append(windows, window{cfg.ShortWindow, cfg.ShortStep})
	}
	var out []Query
	for _, w := range windows {
		for _, e := range exprs {
			out = append(out, Query{Name: e.name + " " + fmtDuration(w.span), Expr: e.expr, Window: w.span, Step: w.step,
				Start: d.End.Add(-w.span), End: d.End})
		}
	}
	return out
}

func fmtDuration(d time.Duration) string {
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	return strings.TrimSuffix(s, "0m")
}

// apiResponse is the Prometheus query API's answer to query_range.
type apiResponse struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
		} `json:"result"`
	} `json:"data"`
}

// matrix is a parsed range result: series by their label string.
type matrix map[string][]point

type point struct {
	t int64 // milliseconds
	v float64
}

// timedResult is one request's outcome.
type timedResult struct {
	wall     time.Duration
	cpu      []float64 // server CPU seconds, by process of the target
	bytes    int
	body     []byte
	err      error
	httpCode int
}

// queryRange runs q against t once, timing the request until its body is
// read. POST form, as Grafana sends it.
func queryRange(ctx context.Context, hc *http.Client, t *target, q Query) timedResult {
	form := url.Values{}
	form.Set("query", q.Expr)
	form.Set("start", strconv.FormatInt(q.Start.Unix(), 10))
	form.Set("end", strconv.FormatInt(q.End.Unix(), 10))
	form.Set("step", strconv.FormatFloat(q.Step.Seconds(), 'f', -1, 64))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.base+"/api/v1/query_range", strings.NewReader(form.Encode()))
	if err != nil {
		return timedResult{err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	cpu0 := t.cpuSeconds()
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return timedResult{err: err, wall: time.Since(start)}
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	r := timedResult{wall: time.Since(start), body: body, bytes: len(body), httpCode: resp.StatusCode, err: err}
	for i, c := range t.cpuSeconds() {
		r.cpu = append(r.cpu, c-cpu0[i])
	}
	if r.err == nil && resp.StatusCode != http.StatusOK {
		r.err = fmt.Errorf("http %d: %s", resp.StatusCode, abbreviate(string(body), 300))
	}
	return r
}

func abbreviate(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// parseMatrix decodes a query_range answer.
func parseMatrix(body []byte) (matrix, error) {
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decode answer: %w", err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	if r.Data.ResultType != "matrix" {
		return nil, fmt.Errorf("result type %q, want matrix", r.Data.ResultType)
	}
	m := matrix{}
	for _, s := range r.Data.Result {
		pts := make([]point, 0, len(s.Values))
		for _, v := range s.Values {
			ts, ok1 := v[0].(float64)
			vs, ok2 := v[1].(string)
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("bad point %v", v)
			}
			f, err := strconv.ParseFloat(vs, 64)
			if err != nil {
				return nil, err
			}
			pts = append(pts, point{t: int64(math.Round(ts * 1000)), v: f})
		}
		m[labelString(s.Metric)] = pts
	}
	return m, nil
}

func labelString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, m[k])
	}
	b.WriteByte('}')
	return b.String()
}

// Agreement compares one system's result with Prometheus'.
type Agreement struct {
	Series      int `json:"series"`
	PromSeries  int `json:"prometheus_series"`
	OnlyHere    int `json:"series_only_here"`
	OnlyProm    int `json:"series_only_in_prometheus"`
	Points      int `json:"points_compared"`
	PointsDiffT int `json:"points_at_other_timestamps"`
	Mismatched  int `json:"points_outside_tolerance"`
	// MaxRelDiff is the largest relative difference of a compared point.
	MaxRelDiff float64 `json:"max_relative_difference"`
	// MedianRelDiff is the median over compared points.
	MedianRelDiff float64 `json:"median_relative_difference"`
	Example       string  `json:"example,omitempty"`
	Error         string  `json:"error,omitempty"`
}

// OK reports whether the results have the same series and points, with
// values within tolerance.
func (a *Agreement) OK() bool {
	return a.Error == "" && a.OnlyHere == 0 && a.OnlyProm == 0 && a.PointsDiffT == 0 && a.Mismatched == 0
}

// compare checks got against want (Prometheus') point by point.
func compare(got, want matrix, tol float64) *Agreement {
	a := &Agreement{Series: len(got), PromSeries: len(want)}
	var diffs []float64
	keys := make([]string, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w, ok := want[k]
		if !ok {
			a.OnlyHere++
			if a.Example == "" {
				a.Example = "series missing in Prometheus: " + k
			}
			continue
		}
		wt := make(map[int64]float64, len(w))
		for _, p := range w {
			wt[p.t] = p.v
		}
		matched := 0
		for _, p := range got[k] {
			wv, ok := wt[p.t]
			if !ok {
				a.PointsDiffT++
				if a.Example == "" {
					a.Example = fmt.Sprintf("%s has a point at %s that Prometheus has not", k, time.UnixMilli(p.t).UTC().Format(time.RFC3339))
				}
				continue
			}
			matched++
			a.Points++
			d := relDiff(p.v, wv)
			diffs = append(diffs, d)
			a.MaxRelDiff = max(a.MaxRelDiff, d)
			if d > tol {
				a.Mismatched++
				if a.Example == "" {
					a.Example = fmt.Sprintf("%s at %s: %g, Prometheus %g", k, time.UnixMilli(p.t).UTC().Format(time.RFC3339), p.v, wv)
				}
			}
		}
		a.PointsDiffT += len(w) - matched
		if len(w) > matched && a.Example == "" {
			a.Example = fmt.Sprintf("%s lacks %d of Prometheus' points", k, len(w)-matched)
		}
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			a.OnlyProm++
			if a.Example == "" {
				a.Example = "series missing here: " + k
			}
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		a.MedianRelDiff = diffs[len(diffs)/2]
	}
	return a
}

func relDiff(a, b float64) float64 {
	switch {
	case math.IsNaN(a) && math.IsNaN(b), a == b:
		return 0
	case math.IsNaN(a) || math.IsNaN(b) || math.IsInf(a, 0) || math.IsInf(b, 0):
		return math.Inf(1)
	}
	return math.Abs(a-b) / max(math.Abs(a), math.Abs(b))
}

// Timing summarises one system's measured runs of one query.
type Timing struct {
	P50Millis  float64   `json:"p50_ms"`
	P95Millis  float64   `json:"p95_ms"`
	MinMillis  float64   `json:"min_ms"`
	MaxMillis  float64   `json:"max_ms"`
	RunsMillis []float64 `json:"runs_ms"`
	// CPUSeconds is the median server CPU time of one run (hub and
	// ClickHouse together for bureauhub); CPUByProcess splits it.
	CPUSeconds    float64            `json:"server_cpu_s"`
	CPUByProcess  map[string]float64 `json:"server_cpu_s_by_process"`
	ResponseBytes int                `json:"response_bytes"`
	Series        int                `json:"series"`
	Errors        []string           `json:"errors,omitempty"`
}

// quantile is the q-quantile of sorted xs, interpolating linearly.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(xs)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(xs)-1)
	return xs[lo] + (xs[hi]-xs[lo])*(pos-float64(lo))
}

func summarise(walls []time.Duration, cpus [][]float64, procs []namedPID) Timing {
	var t Timing
	ms := make([]float64, len(walls))
	for i, w := range walls {
		ms[i] = float64(w.Microseconds()) / 1000
	}
	t.RunsMillis = slices.Clone(ms)
	slices.Sort(ms)
	if len(ms) > 0 {
		t.P50Millis, t.P95Millis = quantile(ms, 0.5), quantile(ms, 0.95)
		t.MinMillis, t.MaxMillis = ms[0], ms[len(ms)-1]
	}
	var totals []float64
	byProc := make([][]float64, len(procs))
	for _, run := range cpus {
		sum := 0.0
		for i, c := range run {
			sum += c
			byProc[i] = append(byProc[i], c)
		}
		totals = append(totals, sum)
	}
	slices.Sort(totals)
	t.CPUSeconds = quantile(totals, 0.5)
	t.CPUByProcess = map[string]float64{}
	for i, p := range procs {
		slices.Sort(byProc[i])
		t.CPUByProcess[p.name] = quantile(byProc[i], 0.5)
	}
	return t
}
