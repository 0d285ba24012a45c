package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bureauhub/bureauhub/hub/autoscale"
	"github.com/bureauhub/bureauhub/hub/refsvc/loadgen"
	"github.com/bureauhub/bureauhub/hub/refsvc/simclock"
)

// The compressed world of TestPredictiveScaleUpBeforeTheSurge: a simulated
// day lasts 60 wall seconds.
const (
	asSpeedup = 1440
	asDay     = 60 * time.Second // 24 h / asSpeedup
	// asHistoryDays are run before the day the assertions are about.
	asHistoryDays = 3
	// asRate is the usual daytime peak in requests per wall second; the
	// 07:40 surge is 10 times it. A replica serves 2 × 1/20 ms = 100/s.
	asRate = 50
)

// replicaSample is the hosted service's replica counts at one moment.
type replicaSample struct {
	at             time.Time
	desired, ready int
}

// TestPredictiveScaleUpBeforeTheSurge runs the whole chain, time
// compressed 1440 times (a simulated day in a wall minute): the hub hosts
// the health-code service and runs the forecaster and the autoscaler
// (mode on) on PromQL over ClickHouse; the health bureau's agent scrapes
// the replicas found through the hub's HTTP SD; the load generator replays
// the healthcode-0740 scenario for three simulated days and the morning of
// a fourth. On the fourth day the autoscaler must scale the service up
// before 07:40 because the forecast says so (term "forecast"), and the SLO
// must hold through the surge. The first day, without a seasonal history,
// shows the same surge breaking the SLO under reactive scaling alone.
func TestPredictiveScaleUpBeforeTheSurge(t *testing.T) {
	if testing.Short() {
		t.Skip("about 4 minutes of compressed simulated days")
	}
	e := newEnv(t)
	hp := freePort(t)
	healthURL := fmt.Sprintf("http://127.0.0.1:%d", hp)

	// The simulated day 1 (a Monday) starts at epoch; every wall instant
	// maps to the same simulated time in the hub, the forecaster's phase
	// and the load generator.
	epoch := time.Now().Add(12 * time.Second).Truncate(time.Second)
	day1 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	clockCfg := simclock.Config{Epoch: epoch, SimStart: day1, Speedup: asSpeedup}
	clock := simclock.New(clockCfg)
	lastDay := day1.Add(asHistoryDays * 24 * time.Hour)
	surge := lastDay.Add(loadgen.SurgeAt)
	surgeWall := clock.ToWall(surge)
	end := lastDay.Add(9*time.Hour + 30*time.Minute)

	// Each replica: 2 requests at once of 20 ms (100/s), ready 1 s after it
	// starts (a pod's 24 simulated minutes of warm-up: reacting once the
	// surge is seen is too late).
	//
	// The signal is the scan rate over 2 s scraped every 500 ms; it shows
	// a step up to about 1.5 s after the load steps, and the forecaster
	// learns it as measured. So the autoscaler's warm_up (how far ahead
	// of now the forecast peak must be covered, minus the sync) is the
	// replicas' 1 s plus that lag plus half a second of margin: 3 s.
	// Capacity is configured (100/s per replica), not learned, so the
	// test is about the forecast. Stabilization is the HPA's 5 simulated
	// minutes (12.5 s).
	const signalExpr = `sum(rate(healthcode_scans_total[2s]))`
	eventOffset := loadgen.SurgeAt / asSpeedup
	e.hubTop += fmt.Sprintf(`services:
  data_dir: %s
  clock: {epoch: %q, sim_start: %q, speedup: %d}
  healthcode:
    hosting: {tenant: health, listen_address: "127.0.0.1:%d", replicas: 1, min_replicas: 1, max_replicas: 10, warm_up: 1s, drain_timeout: 2s}
    config: {population: 2000, capacity: {concurrency: 2, service_time: 20ms}}
forecast:
  signals:
    - name: healthcode_scans
      tenant: health
      expr: %s
      period: %s
      step: 1s
      horizon: 8s
      interval: 1s
      history: 300s
      phase_origin: %q
      event_offsets: [%s]
autoscale:
  audit_flush_interval: 500ms
  targets:
    - name: healthcode
      tenant: health
      service: healthcode
      signal: healthcode_scans
      rate_expr: %s
      mode: "on"
      min: 1
      max: 10
      target_utilization: 0.7
      warm_up: 3s
      sync_interval: 500ms
      scale_down_stabilization: 12500ms
      retry_backoff: 100ms
      capacity: {default_per_replica: 100, learn: false}
`, e.dir, epoch.Format(time.RFC3339Nano), day1.Format(time.RFC3339), asSpeedup, hp,
		signalExpr, asDay, epoch.Format(time.RFC3339Nano), eventOffset, signalExpr)
	e.startHub()
	ap := freePort(t)
	e.startAgent("agent-health", e.agentConfig("health", "health-vm-1", ap, t.TempDir(), fmt.Sprintf(`global: {scrape_interval: 500ms}
scrape_configs:
  - job_name: healthcode
    scrape_interval: 500ms
    scrape_timeout: 400ms
    http_sd_configs:
      - url: %s/api/v1/sd?service=healthcode
        refresh_interval: 500ms
        authorization: {credentials_file: %s}
`, e.hubURL(), e.tokens["health"])), ap)
	if time.Now().After(epoch) {
		t.Logf("hub and agent ready %s after the simulated day 1 began", time.Since(epoch).Round(time.Millisecond))
	}

	// Record the replica counts through the services API all along.
	var (
		mu      sync.Mutex
		samples []replicaSample
	)
	pollCtx, stopPoll := context.WithCancel(context.Background())
	var pollWG sync.WaitGroup
	pollWG.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-pollCtx.Done():
				return
			case <-tick.C:
			}
			code, body := e.apiDo(t, "health", "GET", "/api/v1/services/healthcode", "")
			var st struct {
				Data struct {
					Desired int `json:"desired_replicas"`
					Ready   int `json:"ready_replicas"`
				} `json:"data"`
			}
			if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
				continue
			}
			mu.Lock()
			samples = append(samples, replicaSample{at: time.Now(), desired: st.Data.Desired, ready: st.Data.Ready})
			mu.Unlock()
		}
	})
	defer func() { stopPoll(); pollWG.Wait() }()

	lg := loadgen.Config{}
	lg.SetDefaults()
	lg.Scenario = loadgen.ScenarioHealthcode740
	lg.Targets.Healthcode = healthURL
	lg.Rate, lg.DayVariation = asRate, 0.05
	lg.Clock = clockCfg
	lg.Date, lg.Days = day1.Format(time.DateOnly), asHistoryDays+1
	lg.Duration = time.Until(clock.ToWall(end))
	if w := time.Until(epoch); w > 0 {
		lg.Duration -= w
	}
	lg.Timeout = 2 * time.Second
	lg.Healthcode.Population = 2000
	t.Logf("replaying healthcode-0740 at %dx: simulated %s to %s, %s of wall time; last day's 07:40 at wall %s",
		asSpeedup, day1.Format(time.DateTime), end.Format(time.DateTime), clock.ToWall(end).Sub(epoch), surgeWall.Format(time.TimeOnly+".000"))
	rep, err := loadgen.Run(context.Background(), lg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatalf("load generator: %v", err)
	}
	stopPoll()
	pollWG.Wait()

	// The SLO, per wall second, around each day's surge (07:30 to 09:30).
	violations := func(day int) (viol, secs int) {
		from := day1.Add(time.Duration(day)*24*time.Hour + 7*time.Hour + 30*time.Minute)
		to := from.Add(2 * time.Hour)
		for _, s := range rep.Seconds {
			if !s.Sim.Before(from) && s.Sim.Before(to) {
				secs++
				if s.Violation {
					viol++
				}
			}
		}
		return viol, secs
	}
	// The replicas at the simulated time sim.
	mu.Lock()
	replicasAt := func(sim time.Time) (desired, ready int) {
		for _, s := range samples {
			if s.at.After(clock.ToWall(sim)) {
				break
			}
			desired, ready = s.desired, s.ready
		}
		return desired, ready
	}
	for d := 0; d <= asHistoryDays; d++ {
		v, n := violations(d)
		day := day1.Add(time.Duration(d) * 24 * time.Hour)
		des, rdy := replicasAt(day.Add(loadgen.SurgeAt))
		t.Logf("day %d (%s): desired/ready %d/%d at 07:40; %d of %d wall seconds from 07:30 to 09:30 in violation of the SLO",
			d+1, day.Format(time.DateOnly), des, rdy, v, n)
	}

	// What the replicas did around the last day's surge.
	desiredAtSurge, readyAtSurge := replicasAt(surge)
	var trace []string
	prev := replicaSample{desired: -1}
	for _, s := range samples {
		d := s.at.Sub(surgeWall)
		if d < -6*time.Second || d > 6*time.Second || (s.desired == prev.desired && s.ready == prev.ready) {
			continue
		}
		prev = s
		trace = append(trace, fmt.Sprintf("%+.1fs (sim %s): desired/ready %d/%d", d.Seconds(), clock.ToSim(s.at).Format("15:04"), s.desired, s.ready))
	}
	mu.Unlock()
	for _, l := range trace {
		t.Log(l)
	}

	// The autoscaler's actions, from the audit trail in ClickHouse: the
	// first scale-up of each morning before 07:40, then the last day's.
	all := e.autoscaleActions(t, epoch, clock.ToWall(end))
	for d := 0; d <= asHistoryDays; d++ {
		day := day1.Add(time.Duration(d) * 24 * time.Hour)
		from, to := clock.ToWall(day.Add(6*time.Hour)), clock.ToWall(day.Add(loadgen.SurgeAt))
		for _, a := range all {
			if a.Replicas > a.Current && !a.Time.Before(from) && a.Time.Before(to) {
				model := "none"
				if a.expl.Forecast != nil {
					model = fmt.Sprintf("%s (bound %s)", a.expl.Forecast.Model, a.expl.Forecast.Bound)
				}
				t.Logf("day %d: first scale-up before 07:40 at sim %s, %d -> %d, term %s, forecast %s", d+1,
					clock.ToSim(a.Time).Format("15:04"), a.Current, a.Replicas, a.Term, model)
				break
			}
		}
	}
	var actions []auditAction
	for _, a := range all {
		if !a.Time.Before(clock.ToWall(lastDay)) {
			actions = append(actions, a)
		}
	}
	var first *auditAction
	for i := range actions {
		a := &actions[i]
		t.Logf("action at %+.2fs from the surge (sim %s): %d -> %d, term %s, outcome %s, forecast peak %v, observed %v",
			a.Time.Sub(surgeWall).Seconds(), clock.ToSim(a.Time).Format("15:04:05"), a.Current, a.Replicas, a.Term, a.Outcome,
			a.expl.Forecast.peak(), a.ObservedRate)
		if first == nil && a.Replicas > a.Current && a.Outcome == autoscale.OutcomeOK &&
			a.Time.After(clock.ToWall(lastDay.Add(6*time.Hour))) {
			first = a
		}
	}
	switch {
	case first == nil:
		t.Fatalf("no scale-up on the last day's morning; desired/ready at 07:40: %d/%d", desiredAtSurge, readyAtSurge)
	case !first.Time.Before(surgeWall):
		t.Fatalf("first scale-up of the last morning at %+.2fs wall (sim %s), after the surge at 07:40",
			first.Time.Sub(surgeWall).Seconds(), clock.ToSim(first.Time).Format("15:04:05"))
	case first.Term != autoscale.TermForecast:
		t.Fatalf("first scale-up of the last morning was decided by %q, want %q", first.Term, autoscale.TermForecast)
	}
	lead := surgeWall.Sub(first.Time)
	t.Logf("scaled up %.2fs wall (%s simulated) before 07:40 by the forecast (%s); desired/ready at 07:40: %d/%d",
		lead.Seconds(), clock.SimDuration(lead).Round(time.Minute), first.expl.Forecast.Model, desiredAtSurge, readyAtSurge)
	if readyAtSurge < 2 {
		t.Errorf("%d replicas ready at 07:40, want the forecast's extra replicas ready", readyAtSurge)
	}
	if v, n := violations(asHistoryDays); v != 0 {
		t.Errorf("last day: %d of %d wall seconds from 07:30 to 09:30 violate the SLO, want 0", v, n)
	}
	if v, _ := violations(0); v == 0 {
		t.Errorf("day 1 (no seasonal history, reactive only) held the SLO through the surge: the surge is too weak to show anything")
	}
}

// auditAction is an action event of the autoscaler's audit API.
type auditAction struct {
	Time         time.Time `json:"time"`
	Term         string    `json:"term"`
	Current      int       `json:"current_replicas"`
	Replicas     int       `json:"replicas"`
	Outcome      string    `json:"outcome"`
	ObservedRate any       `json:"observed_rate"`
	Explanation  string    `json:"explanation"`
	expl         struct {
		Forecast *forecastExpl `json:"forecast"`
	}
}

type forecastExpl struct {
	Model string `json:"model"`
	Bound string `json:"bound"`
	Peak  any    `json:"peak"`
	Used  any    `json:"used"`
}

func (f *forecastExpl) peak() any {
	if f == nil {
		return "none"
	}
	return f.Peak
}

// autoscaleActions reads the healthcode target's action events in
// [from, to] from the audit API, as the health bureau.
func (e *env) autoscaleActions(t *testing.T, from, to time.Time) []auditAction {
	t.Helper()
	q := url.Values{"target": {"healthcode"}, "event": {"action"}, "limit": {"10000"},
		"start": {strconv.FormatFloat(float64(from.UnixMilli())/1000, 'f', 3, 64)},
		"end":   {strconv.FormatFloat(float64(to.UnixMilli())/1000, 'f', 3, 64)}}
	var out []auditAction
	// The audit trail is flushed every 500 ms.
	waitFor(t, 10*time.Second, func() (bool, string) {
		code, body := e.apiDo(t, "health", "GET", "/api/v1/autoscale/actions?"+q.Encode(), "")
		var r struct {
			Data []auditAction `json:"data"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &r) != nil {
			return false, fmt.Sprintf("%d %s", code, body)
		}
		out = r.Data
		return len(out) > 0, "no action events yet"
	})
	for i := range out {
		_ = json.Unmarshal([]byte(out[i].Explanation), &out[i].expl)
	}
	return out
}
