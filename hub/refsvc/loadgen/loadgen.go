// Package loadgen is the surge load generator of the reference services:
// it replays the incidents (the 07:40 health-code scan surge, visa slot
// releases) against the booking and health-code services of
// docs/refsvc.md, with the client behaviours that made them worse
// (refreshing on error, retry storms, double clicks, polling the waiting
// room), and reports per wall second what was offered, what succeeded, the
// latency quantiles and the seconds in violation of an SLO.
//
// Arrivals are open-loop: a non-homogeneous Poisson process whose rate
// follows the scenario's curve over simulated time; each arrival starts a
// client session on schedule whatever the outstanding requests, so a slow
// service does not slow the offered load. Only the bound on outstanding
// sessions (Config.MaxOutstanding) holds arrivals back, and those are
// counted as dropped_by_generator.
//
// SLO seconds: every completed request (answered, timed out or failed to
// connect) is attributed to the wall second, counted from Report.Start, in
// which it completed; a timeout completes when it fires. A request is good
// if it was answered 1xx-4xx other than 429 (a 409 slot_taken is the
// service working) within SLO.Latency. A second is in violation if it has
// at least one completed request and fewer than SLO.Objective of them are
// good. A second with no completed request is idle: never a violation, and
// counted apart (Totals.IdleSeconds). Arrivals dropped by the generator
// are not requests: they are reported (failed[dropped_by_generator]) but
// do not enter the SLO.
//
// Run is the entry point for tests, benchmarks and cmd/loadgen.
package loadgen

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bureauhub/bureauhub/hub/refsvc/simclock"
)

// Run generates the configured load until the scenario window (or
// Config.Duration) is over, lets the sessions in progress finish for
// Config.Drain, and returns the report. cfg must have been through
// SetDefaults (fields left zero afterwards mean zero) and is validated
// here. logger may be nil; reg, if not nil, gets the generator's own
// metrics (loadgen_*).
//
// If ctx ends early, Run stops at once and returns the report so far
// with Interrupted set and no error.
func Run(ctx context.Context, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	now := time.Now()
	tl, err := cfg.timeline(now)
	if err != nil {
		return nil, err
	}
	streams := cfg.streams()
	rate := func(wall time.Time) float64 {
		if wall.Before(tl.wallBegin) || !wall.Before(tl.wallEnd) {
			return 0
		}
		return totalRate(streams, tl.clock.ToSim(wall))
	}
	logger.Info("load generation starting", "scenario", cfg.Scenario, "rate", cfg.Rate, "speedup", tl.clock.Speedup(),
		"sim_start", tl.clock.ToSim(tl.wallBegin), "sim_end", tl.clock.ToSim(tl.wallEnd),
		"wall_start", tl.wallBegin, "wall_duration", tl.wallEnd.Sub(tl.wallBegin))
	if !sleepUntil(ctx, tl.wallBegin) {
		return nil, ctx.Err()
	}

	transport := &http.Transport{
		Proxy:               nil, // a load test goes straight to its target
		DialContext:         (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	defer transport.CloseIdleConnections()

	rec := newRecorder(tl.wallBegin, cfg.SLO, rate, tl.clock.ToSim, m)
	sessCtx, cancelSessions := context.WithCancel(ctx)
	defer cancelSessions()
	g := &generator{
		cfg:     &cfg,
		streams: streams,
		clock:   tl.clock,
		rec:     rec,
		m:       m,
		logger:  logger,
		cl: &clients{cfg: &cfg, http: &http.Client{Transport: transport}, rec: rec,
			toSim: tl.clock.ToSim, ctx: sessCtx},
	}

	tickDone := make(chan struct{})
	var tickWG sync.WaitGroup
	tickWG.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				rec.tick(now)
			case <-tickDone:
				return
			}
		}
	})

	g.arrive(ctx, tl.wallBegin, tl.wallEnd)
	sessionsDone := make(chan struct{})
	go func() { g.wg.Wait(); close(sessionsDone) }()
	drain := time.NewTimer(cfg.Drain)
	select {
	case <-sessionsDone:
	case <-drain.C:
		logger.Info("drain over; abandoning the outstanding requests", "outstanding", g.outstanding.Load())
	case <-ctx.Done():
	}
	drain.Stop()
	cancelSessions()
	<-sessionsDone
	close(tickDone)
	tickWG.Wait()

	end := time.Now()
	rows, totals := rec.finish(end)
	totals.PeakOutstanding = g.peak
	rep := &Report{
		Scenario:    cfg.Scenario,
		Seed:        cfg.Seed,
		Rate:        cfg.Rate,
		Speedup:     tl.clock.Speedup(),
		SLO:         SLOReport{Objective: cfg.SLO.Objective, LatencySeconds: cfg.SLO.Latency.Seconds()},
		Start:       tl.wallBegin,
		End:         end,
		SimStart:    tl.clock.ToSim(tl.wallBegin),
		SimEnd:      tl.clock.ToSim(tl.wallEnd),
		Interrupted: ctx.Err() != nil,
		Totals:      totals,
		Seconds:     rows,
	}
	logger.Info("load generation done", "offered", totals.Offered.Total, "fresh", totals.Offered.Fresh,
		"dropped", totals.Failed[ReasonDropped], "violation_seconds", totals.ViolationSeconds, "interrupted", rep.Interrupted)
	return rep, nil
}

// timeline is where a run sits on the wall and simulated clocks.
type timeline struct {
	clock              *simclock.Clock
	wallBegin, wallEnd time.Time
}

// timeline places the run: the window on each of Days simulated days from
// Date, on the shared clock if Clock.Epoch is set, else on a private clock
// that reads the window's start now.
func (c *Config) timeline(now time.Time) (timeline, error) {
	shared := !c.Clock.Epoch.IsZero()
	var date time.Time
	switch {
	case c.Date != "":
		date, _ = time.Parse(time.DateOnly, c.Date)
	case !shared:
		date, _ = time.Parse(time.DateOnly, defaultDate)
	default:
		simNow := simclock.New(c.Clock).ToSim(now).UTC()
		date = simNow.Truncate(24 * time.Hour)
		if !simNow.Before(date.Add(c.Window.To)) {
			date = date.Add(24 * time.Hour)
		}
	}
	simBegin := date.Add(c.Window.From)
	simEnd := date.Add(time.Duration(c.Days-1)*24*time.Hour + c.Window.To)
	var clock *simclock.Clock
	if shared {
		clock = simclock.New(c.Clock)
	} else {
		clock = simclock.New(simclock.Config{Epoch: now, SimStart: simBegin, Speedup: c.Clock.Speedup})
	}
	tl := timeline{clock: clock, wallBegin: clock.ToWall(simBegin), wallEnd: clock.ToWall(simEnd)}
	if tl.wallBegin.Before(now) {
		tl.wallBegin = now
	}
	if c.Duration > 0 && tl.wallBegin.Add(c.Duration).Before(tl.wallEnd) {
		tl.wallEnd = tl.wallBegin.Add(c.Duration)
	}
	if !tl.wallEnd.After(tl.wallBegin) {
		return tl, fmt.Errorf("date: the window %s to %s is already over on the shared clock (now %s)",
			simBegin.Format(time.RFC3339), simEnd.Format(time.RFC3339), clock.ToSim(now).Format(time.RFC3339))
	}
	return tl, nil
}

// generator runs the arrival process and the sessions it starts.
type generator struct {
	cfg         *Config
	streams     []stream
	clock       *simclock.Clock
	rec         *recorder
	m           *metrics
	cl          *clients
	wg          sync.WaitGroup
	outstanding atomic.Int64
	sessions    int64 // launched; only the arrival loop touches it
	peak        int64 // most outstanding; only the arrival loop touches it
	drops       int64 // arrivals dropped; only the arrival loop touches it
	logger      *slog.Logger
}

// arrive runs the arrival process from begin to end (or until ctx ends),
// launching each arrival when it is due. An arrival that is due is
// launched without waiting for anything but the clock: if the loop falls
// behind, it catches up in a burst rather than thinning the load.
func (g *generator) arrive(ctx context.Context, begin, end time.Time) {
	arr := newArrivals(g.cfg.Seed, g.streams, g.clock, begin, end)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		a, ok := arr.next()
		if !ok {
			break
		}
		if d := time.Until(a.at); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		} else if ctx.Err() != nil {
			return
		}
		g.launch(a.op, a.seed)
	}
	sleepUntil(ctx, end)
}

// arrival is one session start.
type arrival struct {
	at   time.Time // wall time
	op   string    // the stream's session type
	seed uint64    // the session's random seed
}

// arrivals is the scenario's arrival process in wall time, simulated by
// thinning (Lewis and Shedler): candidates come at the constant rate
// Λ = Σ max_i; each candidate is given to stream i with probability
// max_i/Λ and kept with probability rate_i(t)/max_i. The kept ones form
// independent Poisson processes of rates rate_i(t). The times depend only
// on the seed, never on the answers. Not safe for concurrent use.
type arrivals struct {
	rng     *rand.Rand
	streams []stream
	cum     []float64
	total   float64
	clock   *simclock.Clock
	t, end  time.Time
}

func newArrivals(seed uint64, streams []stream, clock *simclock.Clock, begin, end time.Time) *arrivals {
	a := &arrivals{rng: rand.New(rand.NewPCG(seed, 0x5eed)), streams: streams, clock: clock, t: begin, end: end}
	for _, s := range streams {
		a.total += s.max
		a.cum = append(a.cum, a.total)
	}
	return a
}

// next returns the next arrival, or false after the end.
func (a *arrivals) next() (arrival, bool) {
	for a.total > 0 {
		a.t = a.t.Add(time.Duration(a.rng.ExpFloat64() / a.total * float64(time.Second)))
		if !a.t.Before(a.end) {
			return arrival{}, false
		}
		u := a.rng.Float64() * a.total
		i := 0
		for i < len(a.cum)-1 && u >= a.cum[i] {
			i++
		}
		lo := a.cum[i] - a.streams[i].max
		if u-lo >= a.streams[i].rate(a.clock.ToSim(a.t)) {
			continue
		}
		return arrival{at: a.t, op: a.streams[i].op, seed: a.rng.Uint64()}, true
	}
	return arrival{}, false
}

// launch starts a session for one arrival, or drops it if MaxOutstanding
// sessions are in progress.
func (g *generator) launch(op string, seed uint64) {
	if g.outstanding.Load() >= int64(g.cfg.MaxOutstanding) {
		g.rec.dropped(time.Now(), op)
		if g.drops++; g.drops == 1 {
			g.logger.Warn("outstanding sessions at the bound; dropping arrivals (counted as dropped_by_generator)",
				"max_outstanding", g.cfg.MaxOutstanding)
		}
		return
	}
	g.peak = max(g.peak, g.outstanding.Add(1))
	g.m.outstanding.Inc()
	g.sessions++
	s := &session{
		c:   g.cl,
		rng: rand.New(rand.NewPCG(seed, g.cfg.Seed)),
		id:  fmt.Sprintf("loadgen-%d-%d", g.cfg.Seed, g.sessions),
	}
	g.wg.Go(func() {
		defer func() {
			g.outstanding.Add(-1)
			g.m.outstanding.Dec()
		}()
		s.run(op)
	})
}

// sleepUntil waits until t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
