package clusterbench

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// probeMetric is the failover group's recording rule: one sample per
// evaluation, whatever the data.
const probeMetric = "clusterbench:node_time_seconds:count"

const failoverRules = `groups:
  - name: failover
    rules:
      - record: ` + probeMetric + `
        expr: count(node_time_seconds{job="node"}) or vector(0)
`

// FailoverResults are the failover trials: each SIGKILLs the hub owning
// one bureau's failover group at a chosen phase of the group's
// evaluation schedule and waits for another hub to evaluate it.
type FailoverResults struct {
	Interval string `json:"interval"`
	// GoalSeconds is one evaluation interval plus 5 s.
	GoalSeconds float64  `json:"goal_s"`
	Trials      []*Trial `json:"trials"`
	// Duplicates are rule results (recording rules, ALERTS,
	// ALERTS_FOR_STATE) stored twice for one series and timestamp in the
	// phase: a group evaluated by two hubs at once.
	Duplicates int64 `json:"duplicate_rule_samples"`
	// Missed are the failover groups' scheduled evaluations with no
	// sample, over the phase, and Expected how many were scheduled.
	Missed   int64 `json:"missed_evaluations"`
	Expected int64 `json:"scheduled_evaluations"`
	// RejoinFirstEval lists, for every rule group a restarted hub
	// evaluated before it was killed again or an interval plus settle
	// passed, seconds from its readiness (it joined just before) to its
	// first evaluation of the group; EarlyRejoins counts those sooner
	// than settle.
	RejoinFirstEval []float64 `json:"rejoin_first_eval_s"`
	EarlyRejoins    int       `json:"early_rejoin_evaluations"`
}

// Trial is one SIGKILL of a group's owner; times are seconds after the
// kill (NaN when not observed).
type Trial struct {
	N        int    `json:"n"`
	Bureau   string `json:"bureau"`
	Victim   string `json:"victim"`
	NewOwner string `json:"new_owner"`
	// Phase is when, after the group's last scheduled evaluation, the
	// kill came.
	Phase Float `json:"phase_s"`
	// Dropped is when a survivor's member list first lost the victim
	// (memberlist declared it dead; hub/cluster cannot show the suspect
	// state before that); Ring when the new owner's ring dropped it (its
	// view of the owner changed).
	Dropped Float `json:"dropped_s"`
	Ring    Float `json:"ring_s"`
	// Eval is the wall-clock start of the new owner's first evaluation
	// (its prometheus_rule_group_last_evaluation_timestamp_seconds);
	// Sample the timestamp of the first recording-rule sample after the
	// kill; Visible when that sample was first read from ClickHouse.
	Eval    Float `json:"eval_s"`
	Sample  Float `json:"sample_s"`
	Visible Float `json:"visible_s"`
	// Restart is how long the killed hub took to serve again.
	Restart Float `json:"restart_s"`
}

var nan = Float(math.NaN())

// target is one bureau's failover group.
type target struct {
	bureau string
	item   string // the ring key: rules/<tenant>/<file>/<group>
	gauge  string // the gauges' groupKey
	offset time.Duration
	kills  int // trials that killed this group's owner
}

func (r *runner) failoverPhase(ctx context.Context) error {
	cfg := r.cfg
	res := &FailoverResults{Interval: cfg.Interval.String(), GoalSeconds: (cfg.Interval + 5*time.Second).Seconds()}
	r.res.Failover = res
	file := filepath.Join(r.work, "rules-failover", "failover.rules.yml")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(file, []byte(failoverRules), 0o644); err != nil {
		return err
	}
	hubs, err := newHubs(3)
	if err != nil {
		return err
	}
	rules := r.rulesYAML(cfg.Interval, file)
	var names []string
	for _, h := range hubs {
		if err := r.writeConfig(h, rules, hubs); err != nil {
			return err
		}
		names = append(names, h.name)
	}
	defer func() {
		for i := len(hubs) - 1; i >= 0; i-- {
			r.stop(hubs[i])
		}
	}()
	r.logf("failover: starting 3 hubs, evaluation interval %s", cfg.Interval)
	began := time.Now()
	for _, h := range hubs {
		r.hubs = append(r.hubs, h)
		if err := r.start(ctx, h); err != nil {
			return err
		}
	}
	if err := waitMembers(ctx, hubs, names, time.Minute); err != nil {
		return err
	}
	// The bureaus' data goes to the live hubs, a killed one last.
	feedCtx, stopFeed := context.WithCancel(ctx)
	defer stopFeed()
	go r.feeder.run(feedCtx, func() []string {
		var live, dead []string
		for _, h := range hubs {
			if h.running() {
				live = append(live, h.addr())
			} else {
				dead = append(dead, h.addr())
			}
		}
		return append(live, dead...)
	})

	var targets []*target
	for _, b := range r.bureaus {
		targets = append(targets, &target{bureau: b, item: "rules/" + b + "/" + file + "/failover", gauge: groupKey(b, file, "failover")})
	}
	// Each group's schedule: its samples' timestamps modulo the interval.
	for _, t := range targets {
		if err := r.waitFor(ctx, 2*cfg.Interval+30*time.Second, func() (bool, string, error) {
			ts, err := r.probeTimestamps(ctx, t.bureau, began)
			if err != nil || len(ts) == 0 {
				return false, "no evaluation of " + t.item + " yet", err
			}
			t.offset = time.Duration(ts[len(ts)-1]%cfg.Interval.Milliseconds()) * time.Millisecond
			return true, "", nil
		}); err != nil {
			return err
		}
	}

	seed := cfg.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(seed, 0x636c7573746572))
	// Kill phases: one in each of Trials equal strata of the interval,
	// at a random point within it, so that the trials cover the schedule
	// evenly; each trial takes the remaining stratum it reaches first.
	phases := make([]time.Duration, cfg.Trials)
	for i := range phases {
		phases[i] = time.Duration((float64(i) + rng.Float64()) / float64(cfg.Trials) * float64(cfg.Interval))
	}
	for n := 1; n <= cfg.Trials; n++ {
		trial, err := r.trial(ctx, res, hubs, names, targets, &phases, n)
		if err != nil {
			return fmt.Errorf("trial %d: %w", n, err)
		}
		res.Trials = append(res.Trials, trial)
		r.logf("failover trial %d/%d: killed %s (owner of %s's group) %.1f s after an evaluation; %s evaluated it %.2f s after the kill (ring changed at %.2f s)",
			n, cfg.Trials, trial.Victim, trial.Bureau, trial.Phase, trial.NewOwner, trial.Eval, trial.Ring)
	}
	r.bg.Wait()
	// Let the last restarted hub take its groups back before counting.
	if err := waitMembers(ctx, hubs, names, time.Minute); err != nil {
		return err
	}
	if err := sleep(ctx, clusterDefaults().Settle+time.Second); err != nil {
		return err
	}
	ended := time.Now()
	if res.Duplicates, err = r.duplicateRuleSamples(ctx, began); err != nil {
		return err
	}
	for _, t := range targets {
		ts, err := r.probeTimestamps(ctx, t.bureau, began)
		if err != nil {
			return err
		}
		if len(ts) > 1 {
			step := cfg.Interval.Milliseconds()
			res.Expected += (ts[len(ts)-1]-ts[0])/step + 1
			res.Missed += (ts[len(ts)-1]-ts[0])/step + 1 - int64(len(dedupe(ts)))
		}
	}
	r.logf("failover: %d duplicate rule samples, %d of %d scheduled evaluations of the failover groups missed (%s)",
		res.Duplicates, res.Missed, res.Expected, ended.Sub(began).Round(time.Second))
	return nil
}

// trial kills the owner of t's group at the next free phase and measures
// the takeover, then restarts the killed hub.
func (r *runner) trial(ctx context.Context, res *FailoverResults, hubs []*hub, names []string, targets []*target, phases *[]time.Duration, n int) (*Trial, error) {
	cfg := r.cfg
	settle := clusterDefaults().Settle
	// Ready: everyone sees everyone, agrees on every group's owner, and
	// the last ring change is older than settle, so the owners act.
	if err := waitMembers(ctx, hubs, names, 2*time.Minute); err != nil {
		return nil, err
	}
	owner := map[*target]*hub{}
	if err := r.waitFor(ctx, time.Minute, func() (bool, string, error) {
		for _, t := range targets {
			owners := map[string]bool{}
			for _, h := range hubs {
				v, err := view(ctx, h, t.item)
				if err != nil {
					return false, "", err
				}
				owners[v.Owners[t.item]] = true
			}
			if len(owners) != 1 {
				return false, fmt.Sprintf("hubs disagree on the owner of %s: %v", t.item, owners), nil
			}
			owner[t] = nil
			for _, h := range hubs {
				if owners[h.name] {
					owner[t] = h
				}
			}
			if owner[t] == nil {
				return false, "no owner of " + t.item, nil
			}
		}
		return true, "", nil
	}); err != nil {
		return nil, err
	}
	if err := sleep(ctx, settle+500*time.Millisecond); err != nil {
		return nil, err
	}
	// The group and remaining phase reached first from now, a group
	// killed for before counting a third of an interval later per kill,
	// so that the trials spread over the groups (and their owners).
	now := time.Now()
	var t *target
	best, wait, cost := -1, time.Duration(0), time.Duration(math.MaxInt64)
	for _, tg := range targets {
		for i, p := range *phases {
			d := scheduleAfter(now, tg.offset, p, cfg.Interval).Sub(now)
			if c := d + time.Duration(tg.kills)*cfg.Interval/3; c < cost {
				t, best, wait, cost = tg, i, d, c
			}
		}
	}
	t.kills++
	phase := (*phases)[best]
	*phases = append((*phases)[:best], (*phases)[best+1:]...)
	victim := owner[t]
	if err := sleep(ctx, wait); err != nil {
		return nil, err
	}

	var survivors []*hub
	for _, h := range hubs {
		if h != victim {
			survivors = append(survivors, h)
		}
	}
	tr := &Trial{N: n, Bureau: t.bureau, Victim: victim.name, Phase: Float(phase.Seconds()),
		Dropped: nan, Ring: nan, Eval: nan, Sample: nan, Visible: nan}
	killed := time.Now()
	victim.proc.Kill() // SIGKILL
	since := func(at time.Time) Float { return Float(at.Sub(killed).Seconds()) }

	ringSeen := map[string]time.Time{}
	var newOwner *hub
	lastScrape := time.Time{}
	deadline := killed.Add(cfg.TrialTimeout)
	for newOwner == nil {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no hub evaluated %s within %s of killing %s", t.item, cfg.TrialTimeout, victim.name)
		}
		for _, s := range survivors {
			if _, ok := ringSeen[s.name]; ok {
				continue
			}
			v, err := view(ctx, s, t.item)
			if err != nil {
				continue
			}
			if math.IsNaN(float64(tr.Dropped)) && v.state(victim.name) != "alive" {
				tr.Dropped = since(time.Now())
			}
			if o := v.Owners[t.item]; o != "" && o != victim.name {
				ringSeen[s.name] = time.Now()
			}
		}
		if time.Since(lastScrape) >= 250*time.Millisecond {
			lastScrape = time.Now()
			for _, s := range survivors {
				gs, err := scrapeGroups(ctx, s)
				if err != nil {
					continue
				}
				if st := gs[t.gauge]; st.LastEval.After(killed) {
					newOwner = s
					tr.NewOwner, tr.Eval = s.name, since(st.LastEval)
					break
				}
			}
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
	if at, ok := ringSeen[newOwner.name]; ok {
		tr.Ring = since(at)
	}
	// The sample the new owner stored.
	if err := r.waitFor(ctx, 30*time.Second, func() (bool, string, error) {
		ts, err := r.probeTimestamps(ctx, t.bureau, killed)
		if err != nil || len(ts) == 0 {
			return false, "no recording-rule sample after the kill", err
		}
		tr.Sample = Float(float64(ts[0]-killed.UnixMilli()) / 1000)
		tr.Visible = since(time.Now())
		return true, "", nil
	}); err != nil {
		r.note("trial %d: %v", n, err)
	}

	// The killed hub comes back and rejoins.
	restarted := time.Now()
	if err := r.start(ctx, victim); err != nil {
		return nil, err
	}
	tr.Restart = Float(time.Since(restarted).Seconds())
	ready := time.Now()
	r.bg.Go(func() { r.watchRejoin(ctx, res, victim, ready, settle) })
	return tr, nil
}

// watchRejoin watches a restarted hub's rule groups for an interval plus
// settle after it was ready (it joined the cluster just before) and
// records when it first evaluated each; one sooner than settle after the
// join is an early evaluation: the hub acted on a group it regained
// without waiting settle.
func (r *runner) watchRejoin(ctx context.Context, res *FailoverResults, h *hub, ready time.Time, settle time.Duration) {
	proc := h.proc
	seen := map[string]bool{}
	deadline := ready.Add(r.cfg.Interval + settle + time.Second)
	for time.Now().Before(deadline) && !proc.Exited() {
		gs, err := scrapeGroups(ctx, h)
		if err == nil {
			for k, st := range gs {
				if seen[k] || st.LastEval.IsZero() {
					continue
				}
				seen[k] = true
				d := st.LastEval.Sub(ready)
				r.rejoinMu.Lock()
				res.RejoinFirstEval = append(res.RejoinFirstEval, d.Seconds())
				// The join precedes readiness by a few milliseconds.
				if d < settle-100*time.Millisecond {
					res.EarlyRejoins++
				}
				r.rejoinMu.Unlock()
			}
		}
		if sleep(ctx, 100*time.Millisecond) != nil {
			return
		}
	}
}

// scheduleAfter is the first time after now that lies phase after one of
// the group's scheduled evaluations (offset + k × interval).
func scheduleAfter(now time.Time, offset, phase, interval time.Duration) time.Time {
	ms := now.UnixMilli()
	step := interval.Milliseconds()
	target := (offset + phase).Milliseconds() % step
	k := (ms - target) / step
	at := k*step + target
	for at <= ms {
		at += step
	}
	return time.UnixMilli(at)
}

// waitFor polls cond every 200 ms until it holds, fails, or timeout.
func (r *runner) waitFor(ctx context.Context, timeout time.Duration, cond func() (bool, string, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, why, err := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				why += ": " + err.Error()
			}
			return fmt.Errorf("after %s: %s", timeout, why)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// probeTimestamps lists the failover group's sample timestamps of bureau
// after since, in order (with repeats, if any).
func (r *runner) probeTimestamps(ctx context.Context, bureau string, since time.Time) ([]int64, error) {
	q := fmt.Sprintf(`SELECT ts FROM %[1]s.samples WHERE tenant = '%[2]s' AND ts > %[3]d AND fingerprint IN
		(SELECT fingerprint FROM %[1]s.series WHERE tenant = '%[2]s' AND metric_name = '%[4]s') ORDER BY ts`,
		database, bureau, since.UnixMilli(), probeMetric)
	out, err := r.ch.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	var ts []int64
	for _, line := range strings.Fields(out) {
		v, err := strconv.ParseInt(line, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("probe timestamps: %q: %w", line, err)
		}
		ts = append(ts, v)
	}
	return ts, nil
}

// duplicateRuleSamples counts rule results stored more than once for one
// series and timestamp since since.
func (r *runner) duplicateRuleSamples(ctx context.Context, since time.Time) (int64, error) {
	q := fmt.Sprintf(`SELECT count() - uniqExact(tenant, fingerprint, ts) FROM %[1]s.samples
		WHERE ts > %[2]d AND (tenant, fingerprint) IN (SELECT tenant, fingerprint FROM %[1]s.series
			WHERE position(metric_name, ':') > 0 OR metric_name IN ('ALERTS', 'ALERTS_FOR_STATE'))`, database, since.UnixMilli())
	out, err := r.ch.Query(ctx, q)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(out), 10, 64)
}

func dedupe(ts []int64) []int64 {
	var out []int64
	for i, v := range ts {
		if i == 0 || v != ts[i-1] {
			out = append(out, v)
		}
	}
	return out
}
