// Command autoscalebench replays the healthcode-0740 and visa-release
// scenarios, time compressed, against the real reference services three
// ways in the same run: fixed replicas, a reactive HPA-style controller
// (autoscale.HPA: desired = ceil(current × metric / target), 15 s sync, 10%
// tolerance, 5 min scale-down stabilization) and the hub's predictive
// autoscaler (autoscale.Autoscaler with forecast.Forecaster). It reports,
// per scenario and way, the seconds in violation of the SLO, the requests
// failed, the replica-seconds used and the over-provisioning against the
// minimum replicas that would have held the SLO.
//
// Everything runs in this process on loopback, like cmd/refsvcbench: the
// hosted service (store in a temporary directory), its load balancer, the
// load generator and the controllers. The controllers observe the request
// rate from the load balancer's counter (sampled every 50 ms); the
// forecaster's history is that same rate recorded while the scenario's
// window was replayed on the previous simulated days (against replicas
// sized for the peak, so it is the offered load). No ClickHouse or PromQL
// is in the path: the end-to-end test e2e/autoscale_test.go covers that.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bureauhub/bureauhub/hub/autoscale"
	"github.com/bureauhub/bureauhub/hub/forecast"
	"github.com/bureauhub/bureauhub/hub/refsvc"
	"github.com/bureauhub/bureauhub/hub/refsvc/booking"
	"github.com/bureauhub/bureauhub/hub/refsvc/capacity"
	"github.com/bureauhub/bureauhub/hub/refsvc/healthcode"
	"github.com/bureauhub/bureauhub/hub/refsvc/host"
	"github.com/bureauhub/bureauhub/hub/refsvc/loadgen"
	"github.com/bureauhub/bureauhub/hub/refsvc/simclock"
	"github.com/bureauhub/bureauhub/internal/daemon"
)

func main() { daemon.Main("autoscalebench", run) }

// Ways of running a replay.
const (
	wayFixedPeak  = "fixed, sized for the peak"
	wayFixed      = "fixed"
	wayReactive   = "reactive (HPA)"
	wayPredictive = "predictive"
)

// scenario is one replayed scenario.
type scenario struct {
	Name string `json:"name"`
	// Service is the hosted service under load.
	Service string `json:"service"`
	// Window is the part of each simulated day replayed.
	Window loadgen.Window `json:"window"`
	// Surge is the predictable surge, whose violation seconds are
	// reported apart.
	Surge loadgen.Window `json:"surge"`
	// Events are the known recurring events (times of day) given to the
	// forecaster.
	Events []time.Duration `json:"events"`
	// Rate is the loadgen's base rate.
	Rate float64 `json:"rate"`
	// Peak is the highest request rate expected (requests per second),
	// for sizing the peak-sized fixed pool that records the history.
	Peak float64 `json:"peak"`
}

// params are the run's settings.
type params struct {
	Speedup           float64 `json:"speedup"`
	HistoryDays       int     `json:"history_days"`
	Date              string  `json:"date"`
	Capacity          capacity.Config
	PerReplica        float64       `json:"per_replica"`
	TargetUtilization float64       `json:"target_utilization"`
	WarmUp            time.Duration `json:"warm_up_sim"`
	PredictiveWarmUp  time.Duration `json:"predictive_warm_up_sim"`
	TrustedMAPE       float64       `json:"predictive_trusted_mape"`
	Sync              time.Duration `json:"sync_sim"`
	Stabilization     time.Duration `json:"stabilization_sim"`
	RateWindow        time.Duration `json:"rate_window_sim"`
	Step              time.Duration `json:"forecast_step_wall"`
	MaxReplicas       int           `json:"max_replicas"`
	Seed              uint64        `json:"seed"`
	DayVariation      float64       `json:"day_variation"`
	Verbose           bool          `json:"-"`
	Ways              string        `json:"ways"`
	HistorySave       string        `json:"-"`
	HistoryLoad       string        `json:"history_load,omitempty"`
}

func (p params) wall(sim time.Duration) time.Duration {
	return time.Duration(float64(sim) / p.Speedup)
}

// result is one replay.
type result struct {
	Scenario string `json:"scenario"`
	Way      string `json:"way"`
	Date     string `json:"date"`
	// Replicas is the fixed count, or the range the controller used.
	Replicas    string  `json:"replicas"`
	WallSeconds float64 `json:"wall_seconds"`
	Offered     int64   `json:"offered"`
	Failed      int64   `json:"failed"`
	// Queued is the booking attempts answered 202 (sent to the waiting
	// room).
	Queued int64 `json:"queued"`
	// ViolationSeconds are the wall seconds in violation of the SLO as the
	// users see it: a 202 from the waiting room is not a good answer (the
	// user was not served, only queued). RequestViolationSeconds is the
	// load generator's own count, where any fast answer is good.
	ViolationSeconds        int `json:"slo_violation_seconds"`
	RequestViolationSeconds int `json:"request_slo_violation_seconds"`
	// SurgeViolationSeconds are those in the scenario's surge window.
	SurgeViolationSeconds int     `json:"surge_slo_violation_seconds"`
	P99                   float64 `json:"p99_seconds"`
	ReplicaSeconds        float64 `json:"replica_seconds"`
	// NotReadySeconds are the replica-seconds of replicas warming up or
	// draining (in ReplicaSeconds).
	NotReadySeconds   float64 `json:"not_ready_replica_seconds"`
	MinReplicaSeconds float64 `json:"min_replica_seconds"`
	// OverProvisioning is (ReplicaSeconds − MinReplicaSeconds) /
	// MinReplicaSeconds.
	OverProvisioning float64 `json:"over_provisioning"`
	ScaleActions     int     `json:"scale_actions"`
	// ReadyAtEvent is the ready replicas at the scenario's event (07:40,
	// 08:00), and NeededAtEvent the most minimum replicas of the wall
	// seconds that start in the 2 wall seconds from it.
	ReadyAtEvent  int `json:"ready_at_event"`
	NeededAtEvent int `json:"needed_at_event"`
	// FirstScaleUp is, for the controllers, the simulated time of the
	// first scale-up within an hour before the surge (empty: none).
	FirstScaleUp string `json:"first_scale_up_before_surge,omitempty"`
	// Forecast describes the predictive run's last forecast model.
	Forecast string `json:"forecast,omitempty"`
	// SurgeForecast describes the predictive run's last decision by the
	// forecast term before the event.
	SurgeForecast string `json:"surge_forecast,omitempty"`
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("autoscalebench", flag.ContinueOnError)
	p := params{}
	names := fs.String("scenarios", "healthcode-0740,visa-release", "scenarios to replay")
	fs.Float64Var(&p.Speedup, "speedup", 180, "simulated seconds per wall second")
	fs.IntVar(&p.HistoryDays, "history-days", 3, "previous simulated days replayed to record the forecaster's history")
	fs.StringVar(&p.Date, "date", "2026-11-05", "the simulated day compared (a weekday); history days precede it")
	fs.IntVar(&p.Capacity.Concurrency, "capacity.concurrency", 2, "requests one replica serves at once")
	fs.DurationVar(&p.Capacity.ServiceTime, "capacity.service-time", 20*time.Millisecond, "time each request holds its slot")
	fs.Float64Var(&p.TargetUtilization, "target-utilization", 0.7, "share of a replica's capacity the controllers size for (HPA target = capacity × this)")
	fs.DurationVar(&p.WarmUp, "warm-up", 2*time.Minute, "simulated time a new replica takes to become ready")
	fs.Float64Var(&p.TrustedMAPE, "predictive.trusted-mape", 0.15, "backtest MAPE up to which the predictive autoscaler uses the forecast value rather than its upper bound")
	fs.DurationVar(&p.PredictiveWarmUp, "predictive.warm-up", 0, "warm_up configured in the predictive autoscaler (default: -warm-up)")
	fs.DurationVar(&p.Sync, "sync", 15*time.Second, "simulated sync interval of both controllers")
	fs.DurationVar(&p.Stabilization, "stabilization", 5*time.Minute, "simulated scale-down stabilization of both controllers")
	fs.DurationVar(&p.RateWindow, "rate-window", time.Minute, "simulated window of the observed request rate")
	fs.DurationVar(&p.Step, "forecast.step", 500*time.Millisecond, "wall step of the forecast series")
	fs.IntVar(&p.MaxReplicas, "max-replicas", 40, "upper bound of both controllers")
	fs.Uint64Var(&p.Seed, "seed", 1, "load generator seed (each day adds its index)")
	fs.Float64Var(&p.DayVariation, "day-variation", 0.05, "seeded day-to-day level variation")
	hcRate := fs.Float64("healthcode.rate", 100, "healthcode-0740: usual daytime peak in requests per wall second (the surge is 10x)")
	visaRate := fs.Float64("visa.rate", 600, "visa-release: peak slot refreshes per wall second (of the biggest release; 08:00 draws 3/4 of it)")
	note := fs.String("note", "", "a note printed under the machine line of the report (e.g. about contention and reruns)")
	fs.BoolVar(&p.Verbose, "v", false, "print each replay's replica counts and per-second SLO around the event")
	out := fs.String("out", "bench-out", "directory for autoscale.md and autoscale.json")
	fs.StringVar(&p.Ways, "ways", "fixed,reactive,predictive", "ways of replaying the compared day (fixed needs predictive: it spends the predictive run's mean)")
	fs.StringVar(&p.HistorySave, "history.save", "", "write the recorded history days to this file (JSON), for -history.load")
	fs.StringVar(&p.HistoryLoad, "history.load", "", "read the history days from this file instead of replaying them (for trying controller changes quickly; not for published results)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p.Capacity.SetDefaults()
	if err := p.Capacity.Validate("-capacity"); err != nil {
		return err
	}
	p.PerReplica = p.Capacity.PerSecond()
	period := time.Duration(float64(24*time.Hour) / p.Speedup)
	if period%p.Step != 0 {
		return fmt.Errorf("-forecast.step %v does not divide the compressed day %v", p.Step, period)
	}
	if p.PredictiveWarmUp == 0 {
		p.PredictiveWarmUp = p.WarmUp
	}
	if _, err := time.Parse(time.DateOnly, p.Date); err != nil {
		return fmt.Errorf("-date: %w", err)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	catalog := map[string]scenario{
		loadgen.ScenarioHealthcode740: {Name: loadgen.ScenarioHealthcode740, Service: "healthcode",
			Window: loadgen.Window{From: 7 * time.Hour, To: 9 * time.Hour},
			Surge:  loadgen.Window{From: 7*time.Hour + 30*time.Minute, To: 8*time.Hour + 40*time.Minute},
			Events: []time.Duration{loadgen.SurgeAt}, Rate: *hcRate,
			Peak: *hcRate * loadgen.SurgeFactor * (1 + p.DayVariation)},
		loadgen.ScenarioVisaRelease: {Name: loadgen.ScenarioVisaRelease, Service: "booking",
			Window: loadgen.Window{From: 7*time.Hour + 15*time.Minute, To: 8*time.Hour + 45*time.Minute},
			Surge:  loadgen.Window{From: 7*time.Hour + 50*time.Minute, To: 8*time.Hour + 30*time.Minute},
			Events: []time.Duration{8 * time.Hour, 12 * time.Hour, 18 * time.Hour}, Rate: *visaRate,
			// Refreshes peak at the rate; each booking session at the
			// release (half the rate) lists slots, books and pays.
			Peak: *visaRate * (1.05 + 0.5*3) * (1 + p.DayVariation)},
	}
	var results []result
	for _, name := range strings.Split(*names, ",") {
		sc, ok := catalog[strings.TrimSpace(name)]
		if !ok {
			return fmt.Errorf("-scenarios: unknown %q", name)
		}
		rs, err := runScenario(ctx, logger, p, sc)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.Name, err)
		}
		results = append(results, rs...)
	}
	js, err := json.MarshalIndent(map[string]any{"params": p, "results": results}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "autoscale.json"), js, 0o644); err != nil {
		return err
	}
	md := markdown(results, p, catalog, strings.Join(os.Args, " "), *note)
	if err := os.WriteFile(filepath.Join(*out, "autoscale.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Print(md)
	return nil
}

// runScenario records the history days, then replays the compared day
// predictive, reactive and fixed (at the predictive run's mean count).
func runScenario(ctx context.Context, logger *slog.Logger, p params, sc scenario) ([]result, error) {
	date, _ := time.Parse(time.DateOnly, p.Date)
	u := p.TargetUtilization
	peakN := int(math.Ceil(1.2 * sc.Peak / (p.PerReplica * u)))
	hist := &history{period: time.Duration(float64(24*time.Hour) / p.Speedup), step: p.Step, days: map[int]map[int]float64{}}
	var out []result
	var peakRuns []result
	file := func(name string) string { return strings.ReplaceAll(name, "%s", sc.Name) }
	if p.HistoryLoad != "" {
		b, err := os.ReadFile(file(p.HistoryLoad))
		if err != nil {
			return nil, fmt.Errorf("-history.load: %w", err)
		}
		if err := json.Unmarshal(b, &hist.days); err != nil {
			return nil, fmt.Errorf("-history.load: %w", err)
		}
	}
	for k := p.HistoryDays; k >= 1 && p.HistoryLoad == ""; k-- {
		d := date.Add(-time.Duration(k) * 24 * time.Hour)
		say("%s %s: history day -%d, %d fixed replicas", sc.Name, d.Format(time.DateOnly), k, peakN)
		r, rec, err := replay(ctx, logger, p, sc, d, uint64(k), wayFixedPeak, peakN, nil)
		if err != nil {
			return nil, err
		}
		hist.days[k] = rec.buckets(p.Step, rec.midnight)
		peakRuns = append(peakRuns, r)
	}
	if p.HistorySave != "" {
		b, err := json.Marshal(hist.days)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(file(p.HistorySave), b, 0o644); err != nil {
			return nil, fmt.Errorf("-history.save: %w", err)
		}
	}
	ways := map[string]bool{}
	for _, w := range strings.Split(p.Ways, ",") {
		ways[strings.TrimSpace(w)] = true
	}
	initial := 1
	var fixed, react, pred []result
	if ways["predictive"] {
		say("%s %s: predictive", sc.Name, p.Date)
		r, _, err := replay(ctx, logger, p, sc, date, 0, wayPredictive, initial, hist)
		if err != nil {
			return nil, err
		}
		pred = append(pred, r)
	}
	if ways["reactive"] {
		say("%s %s: reactive (HPA)", sc.Name, p.Date)
		r, _, err := replay(ctx, logger, p, sc, date, 0, wayReactive, initial, nil)
		if err != nil {
			return nil, err
		}
		react = append(react, r)
	}
	if ways["fixed"] && len(pred) > 0 {
		fixedN := max(1, int(math.Round(pred[0].ReplicaSeconds/pred[0].WallSeconds)))
		say("%s %s: fixed at %d replicas (the predictive run's mean)", sc.Name, p.Date, fixedN)
		r, _, err := replay(ctx, logger, p, sc, date, 0, wayFixed, fixedN, nil)
		if err != nil {
			return nil, err
		}
		fixed = append(fixed, r)
	}
	out = append(out, fixed...)
	out = append(out, react...)
	out = append(out, pred...)
	out = append(out, peakRuns...)
	return out, nil
}

func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "autoscalebench: "+format+"\n", args...)
}

// history is the forecaster's view of the previous days: per day k
// before the compared one, the request rate per step indexed by steps
// since its simulated midnight.
type history struct {
	period, step time.Duration
	days         map[int]map[int]float64
}

// at returns the recorded rate of the step starting at g, placing day k
// k compressed days before midnight (the compared day's).
func (h *history) at(g, midnight time.Time) float64 {
	for k, b := range h.days {
		off := g.Sub(midnight.Add(-time.Duration(k) * h.period))
		if off < 0 || off >= h.period {
			continue
		}
		if v, ok := b[int(off/h.step)]; ok {
			return v
		}
	}
	return math.NaN()
}

// recorder samples the load balancer's request counter and the replica
// counts every 50 ms.
type recorder struct {
	midnight time.Time // wall time of the simulated day's midnight

	mu      sync.Mutex
	at      []time.Time
	count   []float64
	live    []int // replicas starting, ready or draining: what costs
	ready   []int
	desired []int
}

func (r *recorder) sample(t time.Time, count float64, st host.ServiceStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.at = append(r.at, t)
	r.count = append(r.count, count)
	r.live = append(r.live, len(st.Replicas))
	r.ready = append(r.ready, st.Ready)
	r.desired = append(r.desired, st.Desired)
}

// countAt interpolates the counter at t; ok is false outside the samples.
func (r *recorder) countAt(t time.Time) (float64, bool) {
	n := len(r.at)
	if n == 0 || t.Before(r.at[0]) || t.After(r.at[n-1]) {
		return 0, false
	}
	i := sort.Search(n, func(i int) bool { return !r.at[i].Before(t) })
	if r.at[i].Equal(t) || i == 0 {
		return r.count[i], true
	}
	a, b := r.at[i-1], r.at[i]
	f := float64(t.Sub(a)) / float64(b.Sub(a))
	return r.count[i-1] + f*(r.count[i]-r.count[i-1]), true
}

// rate is the request rate over [t−w, t] (NaN when not covered).
func (r *recorder) rate(t time.Time, w time.Duration) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.at) == 0 {
		return math.NaN()
	}
	if last := r.at[len(r.at)-1]; t.After(last) {
		t = last
	}
	from := t.Add(-w)
	if from.Before(r.at[0]) {
		from = r.at[0]
	}
	a, ok1 := r.countAt(from)
	b, ok2 := r.countAt(t)
	if !ok1 || !ok2 || !t.After(from) {
		return math.NaN()
	}
	return (b - a) / t.Sub(from).Seconds()
}

// bucket is the rate over [g, g+step) (NaN unless covered by samples).
func (r *recorder) bucket(g time.Time, step time.Duration) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok1 := r.countAt(g)
	b, ok2 := r.countAt(g.Add(step))
	if !ok1 || !ok2 {
		return math.NaN()
	}
	return (b - a) / step.Seconds()
}

// buckets returns every covered step's rate, indexed by steps since
// midnight.
func (r *recorder) buckets(step time.Duration, midnight time.Time) map[int]float64 {
	out := map[int]float64{}
	r.mu.Lock()
	if len(r.at) == 0 {
		r.mu.Unlock()
		return out
	}
	first, last := r.at[0], r.at[len(r.at)-1]
	r.mu.Unlock()
	for g := first.Truncate(step).Add(step); !g.Add(step).After(last); g = g.Add(step) {
		out[int(g.Sub(midnight)/step)] = r.bucket(g, step)
	}
	return out
}

// replicaSecondsIn integrates the live replicas over [from, to]; notReady
// the live ones not ready (warming up or draining).
func (r *recorder) replicaSecondsIn(from, to time.Time) (live, notReady float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 1; i < len(r.at); i++ {
		a, b := r.at[i-1], r.at[i]
		if b.Before(from) || a.After(to) {
			continue
		}
		if a.Before(from) {
			a = from
		}
		if b.After(to) {
			b = to
		}
		live += float64(r.live[i-1]) * b.Sub(a).Seconds()
		notReady += float64(max(0, r.live[i-1]-r.ready[i-1])) * b.Sub(a).Seconds()
	}
	return live, notReady
}

// readyAt is the ready replicas at t.
func (r *recorder) readyAt(t time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := sort.Search(len(r.at), func(i int) bool { return r.at[i].After(t) })
	if i == 0 {
		return 0
	}
	return r.ready[i-1]
}

// scaleUps lists the times the desired count rose.
func (r *recorder) scaleUps() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []time.Time
	for i := 1; i < len(r.at); i++ {
		if r.desired[i] > r.desired[i-1] {
			out = append(out, r.at[i])
		}
	}
	return out
}

// replay runs one way of one day: the service with initial replicas, the
// way's controller, and the load generator over the scenario's window.
func replay(ctx context.Context, logger *slog.Logger, p params, sc scenario, date time.Time, dayIndex uint64,
	way string, initial int, hist *history) (result, *recorder, error) {
	dir, err := os.MkdirTemp("", "autoscalebench")
	if err != nil {
		return result{}, nil, err
	}
	defer os.RemoveAll(dir)

	// The simulated window starts at a whole forecast step a few seconds
	// from now, so steps fall on the same phase of every day.
	epoch := time.Now().Add(6 * time.Second).Truncate(p.Step)
	clockCfg := simclock.Config{Epoch: epoch, SimStart: date.Add(sc.Window.From), Speedup: p.Speedup}
	clock := simclock.New(clockCfg)
	rec := &recorder{midnight: clock.ToWall(date)}

	svc, err := newService(sc.Service, dir, p.Capacity, logger, clock)
	if err != nil {
		return result{}, nil, err
	}
	hc := host.ServiceConfig{Name: sc.Service, Tenant: "bench", ListenAddress: "127.0.0.1:0",
		Replicas: initial, MinReplicas: 1, MaxReplicas: max(initial, p.MaxReplicas), WarmUp: p.wall(p.WarmUp), DrainTimeout: 5 * time.Second}
	hc.SetDefaults()
	if err := hc.Validate("hosting"); err != nil {
		return result{}, nil, err
	}
	reg := prometheus.NewRegistry()
	h, err := host.New([]host.Hosted{{Config: hc, Service: svc}}, logger, reg)
	if err != nil {
		return result{}, nil, err
	}
	hctx, cancelHost := context.WithCancel(ctx)
	hostDone := make(chan error, 1)
	go func() { hostDone <- h.Run(hctx) }()
	defer func() { cancelHost(); <-hostDone }()
	var addr string
	for deadline := time.Now().Add(30 * time.Second); ; {
		st, err := h.Status(sc.Service)
		if err != nil {
			return result{}, nil, err
		}
		if st.Ready == initial {
			addr = "http://" + st.Address
			break
		}
		if time.Now().After(deadline) {
			return result{}, nil, fmt.Errorf("%d of %d replicas ready after 30s", st.Ready, initial)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The sampler, and the way's controller.
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	sampleOnce := func() {
		st, err := h.Status(sc.Service)
		if err == nil {
			rec.sample(time.Now(), lbRequests(reg), st)
		}
	}
	sampleOnce()
	wg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				sampleOnce()
			}
		}
	})
	observed := func(t time.Time) float64 { return rec.rate(t, p.wall(p.RateWindow)) }
	target := p.PerReplica * p.TargetUtilization
	var forecaster *forecast.Forecaster
	var surgeMu sync.Mutex
	var surgeDecision *autoscale.Decision
	switch way {
	case wayReactive:
		pol := autoscale.DefaultHPAPolicy(1, p.MaxReplicas)
		pol.SyncInterval, pol.ScaleDownStabilization = p.wall(p.Sync), p.wall(p.Stabilization)
		wg.Go(func() { runHPA(runCtx, h, sc.Service, pol, observed, target, logger) })
	case wayPredictive:
		midnight := rec.midnight
		var events []time.Duration
		for _, e := range sc.Events {
			events = append(events, p.wall(e))
		}
		fcfg := forecast.Config{Signals: []forecast.SignalConfig{{Name: "rate", Tenant: "bench", Expr: "lb_requests",
			Step: p.Step, History: time.Duration(p.HistoryDays+1) * hist.period, Interval: time.Second,
			Options: forecast.Options{Period: hist.period, PhaseOrigin: midnight, EventOffsets: events}}}}
		query := func(_ context.Context, _, _ string, start, end time.Time, step time.Duration) (forecast.Series, error) {
			n := int(end.Sub(start)/step) + 1
			s := forecast.Series{Start: start, Step: step, Values: make([]float64, n)}
			for i := range s.Values {
				g := start.Add(time.Duration(i) * step)
				v := rec.bucket(g, step)
				if math.IsNaN(v) {
					v = hist.at(g, midnight)
				}
				s.Values[i] = v
			}
			return s, nil
		}
		if forecaster, err = forecast.New(fcfg, query, logger, nil); err != nil {
			return result{}, nil, err
		}
		cfg := autoscale.Config{Targets: []autoscale.TargetConfig{{Name: sc.Service, Tenant: "bench", Service: sc.Service,
			Signal: "rate", RateExpr: "lb_requests", Mode: autoscale.ModeOn, Min: 1, Max: p.MaxReplicas,
			TargetUtilization: p.TargetUtilization, WarmUp: p.wall(p.PredictiveWarmUp), SyncInterval: p.wall(p.Sync),
			ScaleDownStabilization: p.wall(p.Stabilization), RetryBackoff: 10 * time.Millisecond,
			TrustedMAPE: p.TrustedMAPE, Capacity: autoscale.CapacityConfig{DefaultPerReplica: p.PerReplica}}}}
		cfg.SetDefaults()
		if err := cfg.Validate("autoscale"); err != nil {
			return result{}, nil, err
		}
		as, err := autoscale.New(cfg, logger, nil, autoscale.Deps{
			Query:    func(_ context.Context, _, _ string, t time.Time) (float64, error) { return observed(t), nil },
			Forecast: func(_, signal string) (forecast.Forecast, bool) { return forecaster.Latest(signal) },
			Host:     h,
		})
		if err != nil {
			return result{}, nil, err
		}
		wg.Go(func() { _ = forecaster.Run(runCtx) })
		wg.Go(func() { _ = as.Run(runCtx) })
		// Keep the last decision the forecast made before the event, to
		// report which bound of which forecast sized the surge.
		eventWall := clock.ToWall(date.Add(sc.Events[0]))
		wg.Go(func() {
			t := time.NewTicker(p.wall(p.Sync))
			defer t.Stop()
			for time.Now().Before(eventWall) {
				for _, ts := range as.Recommendations(nil) {
					if d := ts.Decision; d != nil && d.Explanation.Term == autoscale.TermForecast && d.Explanation.Forecast != nil {
						surgeMu.Lock()
						surgeDecision = d
						surgeMu.Unlock()
					}
				}
				select {
				case <-runCtx.Done():
					return
				case <-t.C:
				}
			}
		})
	}

	lg := loadgen.Config{}
	lg.SetDefaults()
	lg.Scenario = sc.Name
	if sc.Service == "healthcode" {
		lg.Targets.Healthcode = addr
	} else {
		lg.Targets.Booking = addr
	}
	lg.Rate, lg.DayVariation, lg.Seed = sc.Rate, p.DayVariation, p.Seed+dayIndex
	lg.Clock = clockCfg
	lg.Date, lg.Days, lg.Window = date.Format(time.DateOnly), 1, sc.Window
	lg.Healthcode.Population = 20000
	runtime.GC()
	rep, err := loadgen.Run(ctx, lg, logger, nil)
	if err != nil {
		return result{}, nil, err
	}
	stop()
	wg.Wait()

	r := summarize(p, sc, date, way, rep, rec, clock)
	if p.Verbose {
		trace(p, sc, date, rep, rec, clock)
	}
	if way == wayFixed || way == wayFixedPeak {
		r.Replicas = fmt.Sprint(initial)
	}
	if forecaster != nil {
		if f, ok := forecaster.Latest("rate"); ok {
			r.Forecast = fmt.Sprintf("%s, backtest MAPE %.3f", f.Model, f.MAPE)
		}
	}
	surgeMu.Lock()
	if d := surgeDecision; d != nil {
		fu := d.Explanation.Forecast
		trust := "trusted"
		if !fu.Trusted {
			trust = "not trusted"
		}
		r.SurgeForecast = fmt.Sprintf("%s, backtest MAPE %.3f (%s): %d replicas for its %s %.0f/s (value %.0f, upper %.0f), decided at %s",
			fu.Model, float64(fu.MAPE), trust, d.Recommended, fu.Bound, float64(fu.Used), float64(fu.Peak), float64(fu.PeakUpper),
			clock.ToSim(d.Time).Format("15:04:05"))
		// How close the decision came to the other bound: the trust
		// threshold is a step, and MAPE moves from run to run.
		if fu.Trusted && float64(fu.MAPE) > 0.8*p.TrustedMAPE {
			r.SurgeForecast += fmt.Sprintf(" — close to trusted_mape %.2f: above it the same decision sizes for the upper bound, %d replicas",
				p.TrustedMAPE, int(math.Ceil(float64(fu.PeakUpper)/(p.PerReplica*p.TargetUtilization)-1e-9)))
		}
	}
	surgeMu.Unlock()
	say("  %s: %d violation seconds (%d in the surge), %d failed, %.0f replica-seconds (minimum %.0f, +%.0f%%), replicas %s",
		way, r.ViolationSeconds, r.SurgeViolationSeconds, r.Failed, r.ReplicaSeconds, r.MinReplicaSeconds, 100*r.OverProvisioning, r.Replicas)
	return r, rec, nil
}

// summarize turns a replay's report and samples into its result.
func summarize(p params, sc scenario, date time.Time, way string, rep *loadgen.Report, rec *recorder, clock *simclock.Clock) result {
	windowWall := p.wall(sc.Window.To - sc.Window.From)
	end := rep.Start.Add(windowWall)
	r := result{Scenario: sc.Name, Way: way, Date: date.Format(time.DateOnly), WallSeconds: windowWall.Seconds(),
		Offered: rep.Totals.Offered.Total, RequestViolationSeconds: rep.Totals.ViolationSeconds, P99: rep.Totals.Latency.P99}
	for k, v := range rep.Totals.Failed {
		if k != loadgen.ReasonDropped {
			r.Failed += v
		}
	}
	surgeFrom, surgeTo := date.Add(sc.Surge.From), date.Add(sc.Surge.To)
	target := p.PerReplica * p.TargetUtilization
	slo := loadgen.SLO{Objective: rep.SLO.Objective}
	for _, s := range rep.Seconds {
		// A waiting-room ticket is answered at once (before the replica's
		// capacity queue), so it is among Good: take it out.
		queued := s.Status[strconv.Itoa(http.StatusAccepted)]
		r.Queued += queued
		violation := slo.Violated(max(0, s.Good-queued), s.Completed)
		if violation {
			r.ViolationSeconds++
		}
		inSurge := !s.Sim.Before(surgeFrom) && s.Sim.Before(surgeTo)
		if violation && inSurge {
			r.SurgeViolationSeconds++
		}
		if s.Wall.Before(end) {
			need := max(1, int(math.Ceil(float64(s.Offered.Total)/target-1e-9)))
			// The last row may be partial.
			frac := math.Min(1, end.Sub(s.Wall).Seconds())
			r.MinReplicaSeconds += float64(need) * frac
			if ev := date.Add(sc.Events[0]); !s.Sim.Before(ev.Add(-time.Duration(p.Speedup)*time.Second)) && s.Sim.Before(ev.Add(time.Duration(2*p.Speedup)*time.Second)) {
				r.NeededAtEvent = max(r.NeededAtEvent, need)
			}
		}
	}
	r.ReplicaSeconds, r.NotReadySeconds = rec.replicaSecondsIn(rep.Start, end)
	if r.MinReplicaSeconds > 0 {
		r.OverProvisioning = (r.ReplicaSeconds - r.MinReplicaSeconds) / r.MinReplicaSeconds
	}
	r.ReadyAtEvent = rec.readyAt(clock.ToWall(date.Add(sc.Events[0])))
	lo, hi := math.MaxInt, 0
	rec.mu.Lock()
	for i, t := range rec.at {
		if !t.Before(rep.Start) && !t.After(end) {
			lo, hi = min(lo, rec.desired[i]), max(hi, rec.desired[i])
		}
	}
	rec.mu.Unlock()
	r.Replicas = fmt.Sprintf("%d–%d", lo, hi)
	ups := rec.scaleUps()
	r.ScaleActions = len(ups)
	eventAt := date.Add(sc.Events[0])
	for _, t := range ups {
		if s := clock.ToSim(t); !s.Before(eventAt.Add(-time.Hour)) && s.Before(eventAt.Add(10*time.Minute)) {
			r.FirstScaleUp = s.Format("15:04:05")
			break
		}
	}
	return r
}

// runHPA is the reactive baseline: every sync, the Kubernetes HPA rule on
// the request rate per replica (replicas still warming up count with
// zero load, as the HPA counts pods without metrics on a scale-up).
func runHPA(ctx context.Context, h *host.Host, name string, pol autoscale.HPAPolicy, observed func(time.Time) float64,
	target float64, logger *slog.Logger) {
	t := time.NewTicker(pol.SyncInterval)
	defer t.Stop()
	var hist []autoscale.Recommendation
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		st, err := h.Status(name)
		if err != nil || st.Desired < 1 {
			continue
		}
		res := autoscale.HPA(now, st.Desired, observed(now)/float64(st.Desired), target, hist, pol)
		hist = append(hist, res.Record)
		cutoff := now.Add(-pol.ScaleDownStabilization)
		for len(hist) > 0 && !hist[0].At.After(cutoff) {
			hist = hist[1:]
		}
		if res.Replicas != st.Desired {
			if err := h.Scale(name, res.Replicas); err != nil {
				logger.Warn("hpa scale failed", "err", err)
			}
		}
	}
}

// lbRequests is the load balancer's request count, all outcomes.
func lbRequests(g prometheus.Gatherer) float64 {
	fams, err := g.Gather()
	if err != nil {
		return math.NaN()
	}
	sum := 0.0
	for _, f := range fams {
		if f.GetName() != "bureauhub_refsvc_lb_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// newService builds the scenario's service with its store under dir.
func newService(name, dir string, capCfg capacity.Config, logger *slog.Logger, clock *simclock.Clock) (refsvc.Service, error) {
	switch name {
	case "healthcode":
		cfg := healthcode.Config{StorePath: filepath.Join(dir, "hc.db"), Population: 20000, Capacity: capCfg}
		cfg.SetDefaults()
		if err := cfg.Validate("healthcode"); err != nil {
			return nil, err
		}
		return healthcode.New(cfg, logger, nil, clock)
	default:
		cfg := booking.Config{Store: booking.StoreConfig{Path: filepath.Join(dir, "booking.db"), NoSync: true}, Capacity: capCfg}
		cfg.SetDefaults()
		if err := cfg.Validate("booking"); err != nil {
			return nil, err
		}
		return booking.New(cfg, logger, nil, clock)
	}
}

func markdown(rs []result, p params, catalog map[string]scenario, cmd, note string) string {
	var b strings.Builder
	hostname, _ := os.Hostname()
	fmt.Fprintf(&b, "## Autoscaling: fixed vs reactive vs predictive\n\n")
	fmt.Fprintf(&b, "Machine: %s, %d CPUs, %s/%s. Command: `%s`. Date: %s.\n\n", hostname, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, cmd, time.Now().UTC().Format(time.RFC3339))
	if note != "" {
		fmt.Fprintf(&b, "Note: %s\n\n", note)
	}
	wall := func(d time.Duration) string { return p.wall(d).Round(time.Millisecond).String() }
	fmt.Fprintf(&b, "Each scenario's window of the simulated day %s is replayed at %gx time compression against the real "+
		"reference service behind the host's load balancer, each replica %d concurrent requests of %v (%.0f requests/s), "+
		"warm-up %v simulated (%s wall); open-loop Poisson arrivals, the load generator's default clients; SLO: 99%% of "+
		"requests good (answered, not 429/5xx) within 500 ms, per wall second, **as the user sees it**: a booking answered "+
		"202 (a waiting-room ticket) is *not* good, because that user was queued, not served. The booking service answers "+
		"202 at once (before a replica's capacity queue) whenever %d booking attempts are already in progress across the "+
		"service, which happens when the replicas are too few and attempts wait for capacity; counted as good, those fast "+
		"202s hid exactly the shortage the SLO is there to show. The tickets' later polls (fast 200s) still count as good; "+
		"the load generator's own per-request count (any fast answer good) is shown beside it. The ways, on the same day and seed:\n\n",
		p.Date, p.Speedup, p.Capacity.Concurrency, p.Capacity.ServiceTime, p.PerReplica, p.WarmUp, wall(p.WarmUp), bookingMaxInProgress())
	fmt.Fprintf(&b, "- **%s**: the predictive run's mean replica count, held all along (the same budget, spent fixed).\n", wayFixed)
	fmt.Fprintf(&b, "- **%s**: `autoscale.HPA` with Kubernetes' defaults, time compressed: sync %v (%s wall), tolerance 10%%, "+
		"scale-down stabilization %v (%s wall), scale-up at most ×2 or +4 per sync; metric = request rate ÷ desired replicas "+
		"(replicas warming up count with no load, as the HPA treats pods without metrics on a scale-up), target = %.0f%% of a "+
		"replica's capacity (%.0f requests/s).\n", wayReactive, p.Sync, wall(p.Sync), p.Stabilization, wall(p.Stabilization),
		100*p.TargetUtilization, p.PerReplica*p.TargetUtilization)
	fmt.Fprintf(&b, "- **%s**: the hub's `autoscale.Autoscaler` (mode on, hosted actuator) with `forecast.Forecaster`: same sync, "+
		"stabilization, tolerance (10%%, on the reactive floor) and target utilization, capacity configured (%.0f/s per replica, not learned), `warm_up` %v "+
		"(the replicas' %v: the decision reads a forecast point between its neighbours as a change inside its step, "+
		"so no step is added for a surge that starts inside one), `forecast_shortens_hold` on (the default: a scale-down "+
		"holds only for the forecast's peak over the stabilization window, when the forecast reaches that far). The forecaster refits every second on a %s-step series "+
		"(%v simulated) with the period of the compressed day and the scenario's known event times; its history is "+
		"the request rate recorded while the same window was replayed on the %d previous simulated days.\n",
		wayPredictive, p.PerReplica, p.PredictiveWarmUp, p.WarmUp, p.Step, time.Duration(float64(p.Step)*p.Speedup), p.HistoryDays)
	fmt.Fprintf(&b, "- **%s**: the history days themselves, at a count sized for 1.2 × the expected peak (for scale).\n\n", wayFixedPeak)
	fmt.Fprintf(&b, "Both controllers observe the request rate from the load balancer's counter, sampled in process every 50 ms, "+
		"as the rate over the last %v simulated (%s wall); the predictive forecaster reads the same samples. "+
		"**Data path: in process, no ClickHouse or PromQL** (the end-to-end test `e2e/autoscale_test.go` runs the "+
		"forecaster and autoscaler in the hub on PromQL over ClickHouse). Minimum replicas per wall second = "+
		"max(1, ceil(requests offered in it ÷ %.0f)), the replicas at the same target utilization; over-provisioning = "+
		"(replica-seconds used − minimum) ÷ minimum, replica-seconds counting every live replica (warming up, ready or "+
		"draining) over the window (*of them not ready*: the part warming up or draining, which the minimum, an oracle "+
		"with no warm-up, never pays). Violation seconds are wall seconds (one is %v simulated).\n\n",
		p.RateWindow, wall(p.RateWindow), p.PerReplica*p.TargetUtilization, time.Duration(p.Speedup*float64(time.Second)))
	var order []string
	by := map[string][]result{}
	for _, r := range rs {
		if _, ok := by[r.Scenario]; !ok {
			order = append(order, r.Scenario)
		}
		by[r.Scenario] = append(by[r.Scenario], r)
	}
	type goal struct {
		reduction, over    float64
		react, pred, surge int
	}
	goals := map[string]goal{}
	for _, name := range order {
		sc := catalog[name]
		fmt.Fprintf(&b, "### %s (window %s–%s, surge counted %s–%s, rate %g)\n\n", name, tod(sc.Window.From), tod(sc.Window.To),
			tod(sc.Surge.From), tod(sc.Surge.To), sc.Rate)
		fmt.Fprintf(&b, "| way | day | replicas | offered | failed | queued (202) | p99 | SLO violation s | in the surge | per request (loadgen) | ready at the event / needed just after | first scale-up before the event | replica-seconds | of them not ready | minimum | over-provisioning |\n")
		fmt.Fprintf(&b, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		var g goal
		for _, r := range by[name] {
			fs := r.FirstScaleUp
			if fs == "" {
				fs = "–"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %d | %d | %d | %.3f s | %d | %d | %d | %d / %d | %s | %.0f | %.0f | %.0f | %+.0f%% |\n", r.Way, r.Date, r.Replicas,
				r.Offered, r.Failed, r.Queued, r.P99, r.ViolationSeconds, r.SurgeViolationSeconds, r.RequestViolationSeconds, r.ReadyAtEvent, r.NeededAtEvent, fs,
				r.ReplicaSeconds, r.NotReadySeconds, r.MinReplicaSeconds, 100*r.OverProvisioning)
			switch r.Way {
			case wayReactive:
				g.react = r.ViolationSeconds
			case wayPredictive:
				g.pred, g.surge, g.over = r.ViolationSeconds, r.SurgeViolationSeconds, r.OverProvisioning
			}
		}
		if g.react > 0 {
			g.reduction = 1 - float64(g.pred)/float64(g.react)
		} else {
			g.reduction = math.NaN()
		}
		goals[name] = g
		for _, r := range by[name] {
			// Replicas for 1.2 × the peak cannot miss the SLO unless
			// the machine could not run them: the whole run is suspect.
			if r.Way == wayFixedPeak && r.ViolationSeconds > 0 {
				fmt.Fprintf(&b, "\n**Contention:** the history day %s, at %s replicas sized for 1.2 × the peak, had %d violation "+
					"seconds: the machine was busy with other work during this run, which also distorts the forecaster's history. "+
					"Do not compare these numbers; rerun.\n", r.Date, r.Replicas, r.ViolationSeconds)
				say("contention: %s %s at %s replicas had %d violation seconds", name, r.Date, r.Replicas, r.ViolationSeconds)
			}
		}
		for _, r := range by[name] {
			if r.Way == wayPredictive && r.Forecast != "" {
				fmt.Fprintf(&b, "\nPredictive run's last forecast: %s.\n", r.Forecast)
				if r.SurgeForecast != "" {
					fmt.Fprintf(&b, "Its last decision by the forecast before %s: %s.\n", tod(sc.Events[0]), r.SurgeForecast)
				}
			}
		}
		if name == loadgen.ScenarioVisaRelease {
			for _, r := range by[name] {
				if r.Way == wayReactive {
					fmt.Fprintf(&b, "\nWhy a per-request SLO saw nothing here: the slot refreshes ramp up as exp(−(08:00 − t)/10 min) "+
						"over the 45 minutes before the release, so over the HPA's reaction time (sync + warm-up, %v) the load grows "+
						"by %.0f%%, inside the %.0f%% headroom of the %.0f%% target; a reactive controller keeps up with the ramp. "+
						"What it cannot follow is the step at 08:00, when the booking sessions start (fading over 3 simulated minutes, "+
						"one wall second): the reactive run had %d ready replicas at 08:00 where %d were needed, and the booking "+
						"service's waiting room answered %d bookings 202 (queued; each such user then polls every 500 ms wall, 90 s "+
						"simulated, before booking). Per request those fast 202s are good (%d violation seconds); as the users see "+
						"it they are not (%d).\n",
						p.Sync+p.WarmUp, 100*(math.Exp(float64(p.Sync+p.WarmUp)/float64(10*time.Minute))-1),
						100*(1/p.TargetUtilization-1), 100*p.TargetUtilization,
						r.ReadyAtEvent, r.NeededAtEvent, r.Queued, r.RequestViolationSeconds, r.ViolationSeconds)
				}
			}
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "### Goals\n\n| scenario | violation s, predictive vs reactive | ≥ 60%% fewer | over-provisioning (predictive) | ≤ 25%% | surge violation s (predictive) | 0 on the 07:40 surge |\n|---|---:|---|---:|---|---:|---|\n")
	for _, name := range order {
		g := goals[name]
		red := "n/a (reactive had none)"
		if !math.IsNaN(g.reduction) {
			red = fmt.Sprintf("%.0f%% fewer", 100*g.reduction)
		}
		zero := "–"
		if name == loadgen.ScenarioHealthcode740 {
			zero = yes(g.surge == 0)
		}
		fmt.Fprintf(&b, "| %s | %d vs %d (%s) | %s | %+.0f%% | %s | %d | %s |\n", name, g.pred, g.react, red,
			yes(!math.IsNaN(g.reduction) && g.reduction >= 0.6), 100*g.over, yes(g.over <= 0.25), g.surge, zero)
	}
	return b.String()
}

func yes(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

func tod(d time.Duration) string {
	return fmt.Sprintf("%02d:%02d", int(d.Hours()), int(d.Minutes())%60)
}

// trace prints the replica counts and the per-second SLO rows from 30
// simulated minutes before the scenario's event to an hour after it.
func trace(p params, sc scenario, date time.Time, rep *loadgen.Report, rec *recorder, clock *simclock.Clock) {
	ev := date.Add(sc.Events[0])
	from, to := ev.Add(-45*time.Minute), ev.Add(time.Hour)
	rec.mu.Lock()
	prevD, prevR := -1, -1
	for i, t := range rec.at {
		s := clock.ToSim(t)
		if s.Before(from) || !s.Before(to) || (rec.desired[i] == prevD && rec.ready[i] == prevR) {
			continue
		}
		prevD, prevR = rec.desired[i], rec.ready[i]
		say("    %s desired %d ready %d live %d", s.Format("15:04:05"), rec.desired[i], rec.ready[i], rec.live[i])
	}
	rec.mu.Unlock()
	for _, row := range rep.Seconds {
		if row.Sim.Before(from) || !row.Sim.Before(to) {
			continue
		}
		say("    second %s: target %.0f/s offered %d (polls %d) completed %d good %d queued %d failed %v p99 %.3f violation %v", row.Sim.Format("15:04:05"),
			row.TargetRate, row.Offered.Total, row.Offered.Poll, row.Completed, row.Good, row.Status[strconv.Itoa(http.StatusAccepted)], row.Failed, row.Latency.P99, row.Violation)
	}
}

// bookingMaxInProgress is the booking service's waiting-room threshold
// (its default, which newService keeps).
func bookingMaxInProgress() int {
	cfg := booking.Config{}
	cfg.SetDefaults()
	return cfg.WaitingRoom.MaxInProgress
}
