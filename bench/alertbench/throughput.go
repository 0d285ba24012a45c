package alertbench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/bureauhub/bureauhub/bench/benchenv"
	"github.com/bureauhub/bureauhub/e2e"
)

// ThroughputResults is the notification throughput phase's outcome.
type ThroughputResults struct {
	Tenants         int      `json:"tenants"`
	AlertsPerTenant int      `json:"alerts_per_tenant"`
	Groups          int      `json:"groups"`
	GroupBy         []string `json:"group_by"`
	GroupWait       string   `json:"group_wait"`
	RepeatInterval  string   `json:"repeat_interval"`
	Warmup          string   `json:"warmup"`
	Window          string   `json:"window"`
	// Runs: one per system and group_interval.
	Runs []*ThroughputRun `json:"runs"`
}

// ThroughputRun is one system at one group_interval.
type ThroughputRun struct {
	System        string `json:"system"`
	GroupInterval string `json:"group_interval"`
	// OfferedPerSecond is groups / group_interval: what the route asks.
	OfferedPerSecond float64 `json:"offered_per_second"`
	Posted           int     `json:"alerts_posted"`
	// FirstRoundSeconds: from the first post until every group had its
	// first notification.
	FirstRoundSeconds float64 `json:"first_round_seconds"`
	GroupsNotified    int     `json:"groups_notified"`
	// Notifications the sink received in the window, and per second.
	Notifications      int64   `json:"notifications"`
	DeliveredPerSecond float64 `json:"delivered_per_second"`
	// CPU is CPU seconds per second of each server process in the window
	// (the hub's ClickHouse writes the alert history); CPUTotal sums them.
	CPU      map[string]float64 `json:"cpu_seconds_per_second"`
	CPUTotal float64            `json:"cpu_total"`
	// ReceiverCPU is the benchmark process's CPU seconds per second in the
	// window (the webhook receiver, on the same cores).
	ReceiverCPU float64 `json:"receiver_cpu_seconds_per_second"`
	// PerCPUSecond is notifications per server CPU-second.
	PerCPUSecond float64 `json:"notifications_per_cpu_second"`
	// Interval between two notifications of one group in the window
	// (group_interval when the system keeps up).
	IntervalP50MS float64 `json:"group_interval_observed_p50_ms"`
	IntervalP95MS float64 `json:"group_interval_observed_p95_ms"`
	IntervalMaxMS float64 `json:"group_interval_observed_max_ms"`
	// Memory of the system's own process (not ClickHouse): before any
	// alert, at the end of the window, and the peak; the Go heap in use
	// from its /metrics.
	RSSIdleMiB     float64 `json:"rss_idle_mib"`
	RSSMiB         float64 `json:"rss_mib"`
	PeakRSSMiB     float64 `json:"peak_rss_mib"`
	HeapIdleMiB    float64 `json:"go_heap_inuse_idle_mib"`
	HeapMiB        float64 `json:"go_heap_inuse_mib"`
	Goroutines     float64 `json:"goroutines"`
	FailedTotal    float64 `json:"notifications_failed_total"`
	SentTotal      float64 `json:"notifications_total"`
	BadRequests    int64   `json:"sink_bad_requests"`
	HistoryDropped float64 `json:"history_records_dropped_total,omitempty"`
	Error          string  `json:"error,omitempty"`
}

// tputRepeat makes every flush of a group notify again, so a steady state
// exists without alerts changing: the dedup stage re-sends once
// repeat_interval has passed since the last send.
const tputRepeat = "1ms"

var tputGroupBy = []string{"bureau", "alertname", "instance"}

func tenantName(i int) string { return fmt.Sprintf("t%03d", i+1) }

// throughputPolicy routes each tenant (by its bureau label) to its own
// webhook receiver; group_by puts every alert in its own group.
func (r *runner) throughputPolicy(sink *countingSink, system string, gi time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "route:\n  receiver: other\n  group_by: [%s]\n  group_wait: %s\n  group_interval: %s\n  repeat_interval: %s\n  routes:\n",
		strings.Join(tputGroupBy, ", "), r.cfg.GroupWait, gi, tputRepeat)
	for i := range r.cfg.Tenants {
		fmt.Fprintf(&b, "    - matchers: ['bureau=\"%s\"']\n      receiver: %s\n", tenantName(i), tenantName(i))
	}
	fmt.Fprintf(&b, "receivers:\n  - name: other\n    webhook_configs: [{url: %q}]\n", sink.url(system, "other"))
	for i := range r.cfg.Tenants {
		fmt.Fprintf(&b, "  - name: %s\n    webhook_configs: [{url: %q}]\n", tenantName(i), sink.url(system, tenantName(i)))
	}
	return b.String()
}

func (r *runner) throughputPhase(ctx context.Context) error {
	cfg := r.cfg
	groups := cfg.Tenants * cfg.AlertsPerTenant
	res := &ThroughputResults{Tenants: cfg.Tenants, AlertsPerTenant: cfg.AlertsPerTenant, Groups: groups, GroupBy: tputGroupBy,
		GroupWait: cfg.GroupWait.String(), RepeatInterval: tputRepeat, Warmup: cfg.Warmup.String(), Window: cfg.Window.String()}
	r.res.Throughput = res
	sink, err := newCountingSink()
	if err != nil {
		return err
	}
	defer sink.close()
	systems := []string{sysHub}
	if r.cfg.AlertmanagerBinary != "" && r.res.Skipped[sysAM] == "" {
		systems = append(systems, sysAM)
	} else {
		r.skip("throughput baseline", "Alertmanager not available: "+r.res.Skipped[sysAM])
	}
	for i, gi := range cfg.GroupIntervals {
		order := systems
		if i%2 == 1 && len(systems) == 2 {
			order = []string{systems[1], systems[0]}
		}
		for _, s := range order {
			run, err := r.throughputRun(ctx, sink, s, gi, i)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				run.Error = err.Error()
				r.note("throughput %s at group_interval %s: %v", s, gi, err)
			}
			res.Runs = append(res.Runs, run)
		}
	}
	return nil
}

// throughputRun starts one system, posts the alerts, waits for every
// group's first notification and the warm-up, and measures a window.
func (r *runner) throughputRun(ctx context.Context, sink *countingSink, system string, gi time.Duration, idx int) (*ThroughputRun, error) {
	cfg := r.cfg
	groups := cfg.Tenants * cfg.AlertsPerTenant
	run := &ThroughputRun{System: system, GroupInterval: gi.String(), OfferedPerSecond: float64(groups) / gi.Seconds(), CPU: map[string]float64{}}
	from := len(r.procs)
	defer r.stopAll(from)
	// Each run has its own path on the sink so that a stopped system's
	// late notifications do not count for the next.
	key := fmt.Sprintf("%s-%d", system, idx)
	policy := r.throughputPolicy(sink, key, gi)
	r.logf("throughput: %s, %d groups, group_interval %s (offered %.0f notifications/s)", system, groups, gi, run.OfferedPerSecond)
	var srv *server
	var err error
	var tenants []string
	for i := range cfg.Tenants {
		tenants = append(tenants, tenantName(i))
	}
	pids := map[string]int{}
	if system == sysHub {
		srv, err = r.startHub(ctx, hubSpec{name: "tput-hub-" + gi.String(), database: fmt.Sprintf("alertbench_tput_%d", idx), policy: policy, tenants: tenants})
		if err == nil {
			pids["hub"], pids["clickhouse"] = srv.proc.Pid(), r.ch.PID()
		}
	} else {
		srv, err = r.startAlertmanager(ctx, "tput-alertmanager-"+gi.String(), policy)
		if err == nil {
			pids["alertmanager"] = srv.proc.Pid()
		}
	}
	if err != nil {
		return run, err
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return run, err
	}
	if rss, err := srv.proc.RSSBytes(); err == nil {
		run.RSSIdleMiB = mib(rss)
	}
	if m, err := metricSums(ctx, srv.base+"/metrics"); err == nil {
		run.HeapIdleMiB = mib(int64(m["go_memstats_heap_inuse_bytes"]))
	}

	// Post each tenant's alerts, spread over one group_interval (at most
	// 10 s) so that the groups' timers are spread too, as alerts arriving
	// from many rule evaluations would be.
	spread := min(gi, 10*time.Second)
	start := time.Now()
	for i, t := range tenants {
		if err := postAlerts(ctx, srv.base, system, t, cfg.AlertsPerTenant); err != nil {
			return run, fmt.Errorf("post %s's alerts: %w", t, err)
		}
		run.Posted += cfg.AlertsPerTenant
		if err := sleepUntil(ctx, start.Add(spread*time.Duration(i+1)/time.Duration(len(tenants)))); err != nil {
			return run, err
		}
	}
	deadline := time.Now().Add(2*time.Minute + 2*gi)
	for {
		_, n, _ := sink.snapshot(key)
		run.GroupsNotified = n
		if n >= groups {
			run.FirstRoundSeconds = time.Since(start).Seconds()
			break
		}
		if time.Now().After(deadline) {
			return run, fmt.Errorf("only %d of %d groups notified %s after the first post", n, groups, time.Since(start).Round(time.Second))
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return run, err
		}
	}
	if err := sleep(ctx, cfg.Warmup); err != nil {
		return run, err
	}

	self0, _ := e2e.ProcCPUSeconds(os.Getpid())
	cpu0 := cpuOf(pids)
	n0, _, _ := sink.snapshot(key)
	sink.record(key, true)
	t0 := time.Now()
	if err := sleep(ctx, cfg.Window); err != nil {
		return run, err
	}
	n1, _, bad := sink.snapshot(key)
	elapsed := time.Since(t0).Seconds()
	intervals := sink.record(key, false)
	cpu1 := cpuOf(pids)
	self1, _ := e2e.ProcCPUSeconds(os.Getpid())
	run.ReceiverCPU = (self1 - self0) / elapsed
	run.Notifications = n1 - n0
	run.DeliveredPerSecond = float64(run.Notifications) / elapsed
	run.BadRequests = bad
	for name := range pids {
		run.CPU[name] = (cpu1[name] - cpu0[name]) / elapsed
		run.CPUTotal += run.CPU[name]
	}
	if run.CPUTotal > 0 {
		run.PerCPUSecond = run.DeliveredPerSecond / run.CPUTotal
	}
	var iv []float64
	for _, d := range intervals {
		iv = append(iv, float64(d)/float64(time.Millisecond))
	}
	if len(iv) > 0 {
		run.IntervalP50MS, run.IntervalP95MS, run.IntervalMaxMS = quantile(iv, 0.5), quantile(iv, 0.95), quantile(iv, 1)
	}
	if rss, err := srv.proc.RSSBytes(); err == nil {
		run.RSSMiB = mib(rss)
	}
	if hwm, err := e2e.ProcStatusBytes(srv.proc.Pid(), "VmHWM"); err == nil {
		run.PeakRSSMiB = mib(hwm)
	}
	if m, err := metricSums(ctx, srv.base+"/metrics"); err == nil {
		run.HeapMiB = mib(int64(m["go_memstats_heap_inuse_bytes"]))
		run.Goroutines = m["go_goroutines"]
		run.SentTotal = m["alertmanager_notifications_total"]
		run.FailedTotal = m["alertmanager_notifications_failed_total"]
		run.HistoryDropped = m["bureauhub_alerting_history_records_dropped_total"]
	} else {
		r.note("throughput %s: reading /metrics: %v", system, err)
	}
	r.logf("throughput %s @ %s: %.0f notifications/s delivered (offered %.0f), CPU %.2f s/s, %.0f per CPU-s, RSS %.0f MiB (idle %.0f), heap %.0f MiB, per-group interval p50 %.0f ms p95 %.0f ms",
		system, gi, run.DeliveredPerSecond, run.OfferedPerSecond, run.CPUTotal, run.PerCPUSecond, run.RSSMiB, run.RSSIdleMiB, run.HeapMiB, run.IntervalP50MS, run.IntervalP95MS)
	return run, nil
}

func cpuOf(pids map[string]int) map[string]float64 {
	out := map[string]float64{}
	for name, pid := range pids {
		out[name], _ = e2e.ProcCPUSeconds(pid)
	}
	return out
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// postAlerts posts n alerts of tenant through the Alertmanager v2 API:
// to the hub with the tenant's token (which sets the bureau label), to
// Alertmanager with the bureau label set as the hub would set it.
func postAlerts(ctx context.Context, base, system, tenant string, n int) error {
	type postable struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
		EndsAt      time.Time         `json:"endsAt"`
	}
	now := time.Now().UTC()
	alerts := make([]postable, n)
	for i := range alerts {
		alerts[i] = postable{
			Labels: map[string]string{"alertname": "BenchLoad", "instance": fmt.Sprintf("host-%04d", i), "severity": "warning",
				"bureau": tenant},
			Annotations: map[string]string{"summary": fmt.Sprintf("load on host-%04d of %s", i, tenant)},
			StartsAt:    now, EndsAt: now.Add(time.Hour),
		}
	}
	body, err := json.Marshal(alerts)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v2/alerts", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if system == sysHub {
		req.Header.Set("Authorization", "Bearer "+tokenOf(tenant))
	}
	resp, err := noProxy.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("http %d: %s", resp.StatusCode, benchenv.Tail(string(b), 3))
	}
	return nil
}

func sleepUntil(ctx context.Context, t time.Time) error {
	if d := time.Until(t); d > 0 {
		return sleep(ctx, d)
	}
	return ctx.Err()
}
