// Command refsvcbench replays the healthcode-0740 surge against the real
// health-code service hosted with a fixed replica count (2, 5, 10, 20 by
// default) and reports, for each count, the seconds in violation of the SLO
// and the replica-seconds used. It is the baseline predictive autoscaling
// is measured against: fixed capacity either violates the SLO at the surge
// or pays for idle replicas all day.
//
// Everything runs in this process on loopback: the hosted service (its
// store in a temporary directory), its load balancer and the load
// generator.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bureauhub/bureauhub/hub/refsvc/capacity"
	"github.com/bureauhub/bureauhub/hub/refsvc/healthcode"
	"github.com/bureauhub/bureauhub/hub/refsvc/host"
	"github.com/bureauhub/bureauhub/hub/refsvc/loadgen"
	"github.com/bureauhub/bureauhub/internal/daemon"
)

func main() { daemon.Main("refsvcbench", run) }

// result is one fixed replica count's replay.
type result struct {
	Replicas         int     `json:"replicas"`
	WallSeconds      float64 `json:"wall_seconds"`
	SimHours         float64 `json:"sim_hours"`
	Offered          int64   `json:"offered"`
	Succeeded        int64   `json:"succeeded"`
	Failed           int64   `json:"failed"`
	ViolationSeconds int     `json:"slo_violation_seconds"`
	// ViolationSimMinutes is ViolationSeconds on the simulated clock.
	ViolationSimMinutes float64 `json:"slo_violation_sim_minutes"`
	ReplicaSeconds      float64 `json:"replica_seconds"`
	ReplicaSimHours     float64 `json:"replica_sim_hours"`
	P99                 float64 `json:"p99_seconds"`
	PeakOfferedPerSec   float64 `json:"peak_offered_per_second"`
	Report              *loadgen.Report
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("refsvcbench", flag.ContinueOnError)
	counts := fs.String("replicas", "2,5,10,20", "fixed replica counts to replay against")
	rate := fs.Float64("rate", 200, "usual daytime peak in scans per wall second (the 07:40 surge is 10x)")
	speedup := fs.Float64("speedup", 180, "simulated seconds per wall second")
	window := fs.String("window", "06:30-09:30", "part of the simulated day to replay")
	concurrency := fs.Int("capacity.concurrency", 4, "requests one replica serves at once")
	serviceTime := fs.Duration("capacity.service-time", 20*time.Millisecond, "time each request holds its slot")
	seed := fs.Uint64("seed", 1, "load generator seed")
	out := fs.String("out", "bench-out", "directory for refsvc.md and refsvc.json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	win, err := loadgen.ParseWindow(*window)
	if err != nil {
		return fmt.Errorf("-window: %w", err)
	}
	var replicas []int
	for _, f := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-replicas: %q is not a positive count", f)
		}
		replicas = append(replicas, n)
	}
	capCfg := capacity.Config{Concurrency: *concurrency, ServiceTime: *serviceTime}
	capCfg.SetDefaults()
	if err := capCfg.Validate("-capacity"); err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	var results []result
	for _, n := range replicas {
		fmt.Fprintf(os.Stderr, "refsvcbench: healthcode-0740 %s at %gx against %d replicas ...\n", *window, *speedup, n)
		r, err := replay(ctx, logger, n, capCfg, loadgenConfig(*rate, *speedup, *seed, win))
		if err != nil {
			return fmt.Errorf("%d replicas: %w", n, err)
		}
		fmt.Fprintf(os.Stderr, "refsvcbench: %d replicas: %d violation seconds, %.0f replica-seconds, p99 %.3fs\n",
			n, r.ViolationSeconds, r.ReplicaSeconds, r.P99)
		results = append(results, r)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	js, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "refsvc.json"), js, 0o644); err != nil {
		return err
	}
	md := markdown(results, *rate, *speedup, *window, capCfg, strings.Join(os.Args, " "))
	if err := os.WriteFile(filepath.Join(*out, "refsvc.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Print(md)
	return nil
}

func loadgenConfig(rate, speedup float64, seed uint64, win loadgen.Window) loadgen.Config {
	cfg := loadgen.Config{}
	cfg.SetDefaults()
	cfg.Scenario = loadgen.ScenarioHealthcode740
	cfg.Rate = rate
	cfg.Clock.Speedup = speedup
	cfg.Window = win
	cfg.Days = 1
	cfg.Seed = seed
	cfg.Healthcode.Population = 100000
	return cfg
}

func replay(ctx context.Context, logger *slog.Logger, n int, capCfg capacity.Config, lg loadgen.Config) (result, error) {
	dir, err := os.MkdirTemp("", "refsvcbench")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	hcCfg := healthcode.Config{StorePath: filepath.Join(dir, "hc.db"), Population: lg.Healthcode.Population, Capacity: capCfg}
	hcCfg.SetDefaults()
	if err := hcCfg.Validate("healthcode"); err != nil {
		return result{}, err
	}
	svc, err := healthcode.New(hcCfg, logger, nil, nil)
	if err != nil {
		return result{}, err
	}
	hc := host.ServiceConfig{Name: "healthcode", Tenant: "health", ListenAddress: "127.0.0.1:0",
		Replicas: n, MaxReplicas: max(n, 50), WarmUp: time.Millisecond}
	hc.SetDefaults()
	if err := hc.Validate("hosting"); err != nil {
		return result{}, err
	}
	h, err := host.New([]host.Hosted{{Config: hc, Service: svc}}, logger, prometheus.NewRegistry())
	if err != nil {
		return result{}, err
	}
	hctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- h.Run(hctx) }()
	defer func() { cancel(); <-done }()
	var url string
	for deadline := time.Now().Add(30 * time.Second); ; {
		st, err := h.Status("healthcode")
		if err != nil {
			return result{}, err
		}
		if st.Ready == n {
			url = "http://" + st.Address
			break
		}
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("%d of %d replicas ready after 30s", st.Ready, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	lg.Targets.Healthcode = url
	runtime.GC()
	rep, err := loadgen.Run(ctx, lg, logger, nil)
	if err != nil {
		return result{}, err
	}
	wall := rep.End.Sub(rep.Start).Seconds()
	r := result{
		Replicas: n, WallSeconds: wall, SimHours: rep.SimEnd.Sub(rep.SimStart).Hours(),
		Offered: rep.Totals.Offered.Total, Succeeded: rep.Totals.Succeeded,
		ViolationSeconds:    rep.Totals.ViolationSeconds,
		ViolationSimMinutes: float64(rep.Totals.ViolationSeconds) * rep.Speedup / 60,
		ReplicaSeconds:      float64(n) * wall, ReplicaSimHours: float64(n) * rep.SimEnd.Sub(rep.SimStart).Hours(),
		P99: rep.Totals.Latency.P99, Report: nil,
	}
	for _, v := range rep.Totals.Failed {
		r.Failed += v
	}
	for _, s := range rep.Seconds {
		r.PeakOfferedPerSec = math.Max(r.PeakOfferedPerSec, float64(s.Offered.Total))
	}
	return r, nil
}

func markdown(rs []result, rate, speedup float64, window string, capCfg capacity.Config, cmd string) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "## Reference services: healthcode-0740 at fixed replica counts\n\n")
	fmt.Fprintf(&b, "Machine: %s, %d CPUs, %s/%s. Command: `%s`. Date: %s.\n\n", host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, cmd, time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "The real health-code service behind the hub's load balancer, each replica %d concurrent requests of %v "+
		"(%.0f scans/s); the `healthcode-0740` scenario's %s window at %gx time compression, usual peak %g scans/s "+
		"(the 07:40 surge is 10x), open-loop Poisson arrivals, clients with the default retry and refresh behaviour. "+
		"SLO: 99%% of requests good (answered, not 429/5xx) within 500 ms, per wall second.\n\n",
		capCfg.Concurrency, capCfg.ServiceTime, capCfg.PerSecond(), window, speedup, rate)
	fmt.Fprintf(&b, "| replicas | capacity (scans/s) | offered | succeeded | failed | p99 | SLO violation s (wall) | violation (sim min) | replica-seconds (wall) | replica-hours (sim) |\n")
	fmt.Fprintf(&b, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %d | %.0f | %d | %d | %d | %.3f s | %d | %.0f | %.0f | %.1f |\n", r.Replicas, float64(r.Replicas)*capCfg.PerSecond(),
			r.Offered, r.Succeeded, r.Failed, r.P99, r.ViolationSeconds, r.ViolationSimMinutes, r.ReplicaSeconds, r.ReplicaSimHours)
	}
	if len(rs) > 0 {
		fmt.Fprintf(&b, "\nPeak offered load: %.0f requests in one wall second (retries and refreshes included).\n", rs[0].PeakOfferedPerSec)
	}
	return b.String()
}
