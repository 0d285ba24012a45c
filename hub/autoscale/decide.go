package autoscale

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/bureauhub/bureauhub/hub/forecast"
)

// Mode is how far a target's decisions go.
type Mode string

// Modes.
const (
	// ModeOff makes no decision and takes no action.
	ModeOff Mode = "off"
	// ModeDryRun decides and records, but never calls the actuator.
	ModeDryRun Mode = "dry-run"
	// ModeOn decides, records and acts.
	ModeOn Mode = "on"
)

// Terms name what decided a recommendation or held it back.
const (
	TermForecast      = "forecast"
	TermReactive      = "reactive"
	TermMin           = "min"
	TermMax           = "max"
	TermStabilization = "stabilization"
	// TermForecastHold: a scale-down held by stabilization was shortened
	// by the forecast of the stabilization window, and the forecast's
	// peak over that window decided the count.
	TermForecastHold = "forecast_hold"
	TermCooldown     = "cooldown"
	TermMaxStep      = "max_step"
	TermRateLimit    = "rate_limit"
	TermOff          = "off"
)

// Directions of a scaling step.
const (
	DirectionUp   = "up"
	DirectionDown = "down"
	DirectionNone = "none"
)

// Number is a float64 that encodes NaN and infinities as JSON null (and
// decodes null as NaN), so an explanation with a missing value still
// encodes.
type Number float64

// MarshalJSON encodes non-finite values as null.
func (n Number) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
}

// UnmarshalJSON decodes null as NaN.
func (n *Number) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = Number(math.NaN())
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*n = Number(f)
	return nil
}

// Recommendation is one sync's bounded recommendation, kept for the
// scale-down stabilization window.
type Recommendation struct {
	At       time.Time `json:"at"`
	Replicas int       `json:"replicas"`
}

// State is what Decide needs to know about the target and its past.
type State struct {
	// Desired and Ready are the actuator's current replica counts.
	Desired int
	Ready   int
	// LastScale is when the last action was taken (zero: never) and
	// LastDirection which way it went.
	LastScale     time.Time
	LastDirection string
	// Recommendations are the recent recommendations, oldest first; Decide
	// reads those inside the stabilization window. HistoryStart is when
	// the history began (the autoscaler's start): until a whole window has
	// been seen, the current count counts as a recommendation too, so a
	// restart never scales down on a partial window.
	Recommendations []Recommendation
	HistoryStart    time.Time
	// Actions are the times of recent actions, for the hourly rate limit.
	Actions []time.Time
}

// Signals are the observations and predictions of one sync.
type Signals struct {
	// Now is the decision time.
	Now time.Time
	// Rate is the observed request rate (requests per second); NaN when
	// unknown, in which case the reactive floor holds the current count.
	Rate float64
	// Forecast is the signal's latest forecast; nil when there is none.
	Forecast *forecast.Forecast
	// CapacityPerReplica is the rate one replica sustains within its SLO;
	// CapacityLearned says whether it was learned or is the default.
	CapacityPerReplica float64
	CapacityLearned    bool
	// WarmUp is how long a new replica takes to become ready.
	WarmUp time.Duration
}

// Policy bounds the decision.
type Policy struct {
	Mode Mode
	// Min and Max bound the recommendation.
	Min, Max int
	// TargetUtilization is the fraction of capacity a replica should run
	// at (0 < u <= 1).
	TargetUtilization float64
	// SyncInterval is the time between decisions.
	SyncInterval time.Duration
	// ScaleDownStabilization: a scale-down goes only to the highest
	// recommendation of this window.
	ScaleDownStabilization time.Duration
	// CooldownUp and CooldownDown are the least time after the last action
	// before a scale-up, respectively a scale-down.
	CooldownUp, CooldownDown time.Duration
	// MaxStep bounds one action's change in replicas (0: unbounded).
	MaxStep int
	// MaxActionsPerHour bounds actions in any hour (0: unbounded).
	MaxActionsPerHour int
	// TrustedMAPE is the backtest error up to which the forecast's value
	// is used; above it (or with no backtest) the upper bound is used when
	// UseUpperWhenUntrusted is set.
	TrustedMAPE           float64
	UseUpperWhenUntrusted bool
	// IgnoreForecastAboveMAPE drops a forecast whose backtest error is
	// higher (0: never drop).
	IgnoreForecastAboveMAPE float64
	// Tolerance: while the observed rate is within this fraction of what
	// the current count is sized for, the reactive floor is the current
	// count (the HPA's tolerance; 0: none).
	Tolerance float64
	// ForecastShortensHold lets a usable forecast that covers the whole
	// stabilization window cap the scale-down hold at what the forecast's
	// peak over that window needs (with the same bound, value or upper,
	// as the forecast term): the hold guards against the load coming back
	// within the window, which such a forecast already answers.
	ForecastShortensHold bool
}

// ForecastUsed tells which forecast values a decision used.
type ForecastUsed struct {
	Model string    `json:"model"`
	Made  time.Time `json:"made"`
	// From and To are the window searched for the peak.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Peak and PeakUpper are the forecast's highest value in the window
	// and its highest upper bound.
	Peak      Number `json:"peak"`
	PeakUpper Number `json:"peak_upper"`
	// Bound is "value" or "upper": which of them was sized for.
	Bound string `json:"bound"`
	// Used is the rate sized for.
	Used Number `json:"used"`
	// MAPE is the backtest error; Trusted is MAPE <= trusted_mape.
	MAPE    Number `json:"mape"`
	Trusted bool   `json:"trusted"`
	// Ignored says the forecast was not used, and why.
	Ignored string `json:"ignored,omitempty"`
}

// Explanation is why a decision came out as it did.
type Explanation struct {
	Signal       string `json:"signal"`
	ObservedRate Number `json:"observed_rate"`
	// CapacityPerReplica is the learned or default sustainable rate of one
	// replica; ReplicaThroughput is that times the target utilization,
	// what each replica is sized for.
	CapacityPerReplica Number  `json:"capacity_per_replica"`
	CapacityLearned    bool    `json:"capacity_learned"`
	TargetUtilization  Number  `json:"target_utilization"`
	ReplicaThroughput  Number  `json:"replica_throughput"`
	WarmUpSeconds      float64 `json:"warm_up_seconds"`
	SyncSeconds        float64 `json:"sync_seconds"`
	// Forecast is nil when the target had no forecast.
	Forecast *ForecastUsed `json:"forecast,omitempty"`
	// ForecastReplicas is ceil(forecast rate / replica throughput); -1
	// when no forecast was used.
	ForecastReplicas int `json:"forecast_replicas"`
	// ReactiveFloor is ceil(observed rate / replica throughput), what the
	// current load needs.
	ReactiveFloor int `json:"reactive_floor"`
	// Unbounded is max(ForecastReplicas, ReactiveFloor).
	Unbounded int `json:"unbounded"`
	// StabilizedMax is the highest recommendation over the stabilization
	// window (scale-downs only, else 0).
	StabilizedMax int `json:"stabilized_max,omitempty"`
	// HoldForecastReplicas is what the forecast's peak over the whole
	// stabilization window needs, when it capped StabilizedMax
	// (scale-downs with ForecastShortensHold only, else 0).
	HoldForecastReplicas int `json:"hold_forecast_replicas,omitempty"`
	// Bounds lists the limits applied, in order, e.g. "min=2".
	Bounds []string `json:"bounds"`
	// Term is what decided the final count.
	Term string `json:"term"`
	// Notes are anything else worth knowing ("rate unknown: holding").
	Notes []string `json:"notes,omitempty"`
}

// Decision is the outcome of Decide.
type Decision struct {
	Time time.Time `json:"time"`
	Mode Mode      `json:"mode"`
	// Current and Ready are the counts the decision started from.
	Current int `json:"current"`
	Ready   int `json:"ready"`
	// Recommended is the bounded, stabilized recommendation, before
	// cooldowns, max step and the rate limit: what the metrics publish.
	Recommended int `json:"recommended"`
	// Replicas is what to scale to now (Current when holding).
	Replicas int `json:"replicas"`
	// Direction is up, down or none (Replicas against Current).
	Direction string `json:"direction"`
	// Act says the actuator should be called (mode on and a change).
	Act bool `json:"act"`
	// Record is the recommendation to append to State.Recommendations.
	Record      Recommendation `json:"-"`
	Explanation Explanation    `json:"explanation"`
}

// replicasFor is the replicas needed to serve rate at perReplica each; a
// hair of slack keeps float noise (9.0000001) from adding a replica.
func replicasFor(rate, perReplica float64) int {
	if rate <= 0 || perReplica <= 0 {
		return 0
	}
	return int(math.Ceil(rate/perReplica - 1e-9))
}

// ForecastWindow is the window whose forecast peak a decision at now must
// cover: replicas started now are ready after warmUp, and the next
// decision's replicas only after sync+warmUp, so until then the load is
// this decision's to carry.
func ForecastWindow(now time.Time, warmUp, sync time.Duration) (from, to time.Time) {
	return now, now.Add(warmUp + sync + time.Nanosecond)
}

// forecastPeak returns the highest forecast value over [from, to) and the
// highest upper bound; ok is false when no point covers any of it.
//
// A point is the mean of its step, so a surge that starts inside a step
// shows there only in part, and in full one step later. Reading the point
// at its step's start would provision a partial surge too early and the
// full one too late (or, with the warm-up padded by a step, the full one a
// step too early). So a point strictly between its neighbours is read as
// the change from the previous level to the next one inside its step: the
// next level holds for the share f = (v[i] − v[i−1]) / (v[i+1] − v[i−1])
// at the step's end, the previous level before it. That is exact for a
// step change and on the safe side for a smooth rise (each level is taken
// from the point after it), and the same reading times a decline.
func forecastPeak(f forecast.Forecast, from, to time.Time) (value, upper float64, ok bool) {
	if f.Step <= 0 {
		return f.Peak(from, to)
	}
	value, upper = math.Inf(-1), math.Inf(-1)
	span := func(a, b time.Time, i int) {
		if !a.Before(b) || !a.Before(to) || !b.After(from) {
			return
		}
		ok = true
		value = math.Max(value, f.Values[i])
		if i < len(f.Upper) && !math.IsNaN(f.Upper[i]) {
			upper = math.Max(upper, f.Upper[i])
		}
	}
	n := len(f.Values)
	for i, v := range f.Values {
		if math.IsNaN(v) {
			continue
		}
		start := f.Start.Add(time.Duration(i) * f.Step)
		end := start.Add(f.Step)
		if i > 0 && i < n-1 {
			prev, next := f.Values[i-1], f.Values[i+1]
			if (prev < v && v < next) || (prev > v && v > next) {
				share := (v - prev) / (next - prev)
				change := end.Add(-time.Duration(share * float64(f.Step)))
				span(start, change, i-1)
				span(change, end, i+1)
				continue
			}
		}
		span(start, end, i)
	}
	return value, upper, ok
}

// Decide computes one target's decision. It is pure: everything it reads
// is in its arguments.
//
// recommendation = clamp(max(ceil(forecast peak over [now, now+warm-up+sync]
// / (capacity × target utilization)), ceil(observed rate / (capacity ×
// target utilization))), min, max); a scale-down goes only to the highest
// recommendation over the stabilization window, or, with
// ForecastShortensHold and a forecast reaching past the window, only to
// what the forecast's peak over the window needs when that is less; then
// cooldowns, max step and the hourly action limit may hold or shorten the
// step.
func Decide(st State, sig Signals, p Policy) Decision {
	d := Decision{Time: sig.Now, Mode: p.Mode, Current: st.Desired, Ready: st.Ready, Replicas: st.Desired, Direction: DirectionNone}
	ex := &d.Explanation
	ex.ObservedRate = Number(sig.Rate)
	ex.CapacityPerReplica = Number(sig.CapacityPerReplica)
	ex.CapacityLearned = sig.CapacityLearned
	ex.TargetUtilization = Number(p.TargetUtilization)
	ex.WarmUpSeconds = sig.WarmUp.Seconds()
	ex.SyncSeconds = p.SyncInterval.Seconds()
	ex.ForecastReplicas = -1
	ex.Bounds = []string{}
	if sig.Forecast != nil {
		ex.Signal = sig.Forecast.Signal
	}
	if p.Mode == ModeOff {
		ex.Term = TermOff
		d.Recommended = st.Desired
		return d
	}
	perReplica := sig.CapacityPerReplica * p.TargetUtilization
	ex.ReplicaThroughput = Number(perReplica)

	// The reactive floor: what the load of now needs. need is that count
	// before the tolerance, what the stabilization window remembers.
	need := st.Desired
	if math.IsNaN(sig.Rate) || perReplica <= 0 {
		ex.ReactiveFloor = st.Desired
		ex.Notes = append(ex.Notes, "observed rate or capacity unknown: the reactive floor holds the current count")
	} else {
		need = replicasFor(sig.Rate, perReplica)
		ex.ReactiveFloor = need
		// As the HPA: a load within the tolerance of what the current
		// count is sized for changes nothing, so noise in the observed
		// rate does not move the count up and back down.
		if ratio := sig.Rate / (float64(st.Desired) * perReplica); p.Tolerance > 0 && st.Desired > 0 && need != st.Desired &&
			math.Abs(ratio-1) <= p.Tolerance {
			ex.ReactiveFloor = st.Desired
			ex.Notes = append(ex.Notes, fmt.Sprintf("observed load %.0f%% of what %d replicas are sized for, within the tolerance: the reactive floor holds the current count",
				100*ratio, st.Desired))
		}
	}
	rec, term := ex.ReactiveFloor, TermReactive

	// The forecast term: the peak the replicas decided now must carry.
	// holdNeed is what the forecast's peak over the whole stabilization
	// window needs (-1: not known), for shortening a scale-down hold.
	holdNeed := -1
	if f := sig.Forecast; f != nil && perReplica > 0 {
		from, to := ForecastWindow(sig.Now, sig.WarmUp, p.SyncInterval)
		fu := &ForecastUsed{Model: f.Model, Made: f.Made, From: from, To: to, MAPE: Number(f.MAPE),
			Peak: Number(math.NaN()), PeakUpper: Number(math.NaN()), Used: Number(math.NaN())}
		ex.Forecast = fu
		fu.Trusted = !math.IsNaN(f.MAPE) && f.MAPE <= p.TrustedMAPE
		useUpper := func(value, upper float64) bool {
			return !fu.Trusted && p.UseUpperWhenUntrusted && !math.IsInf(upper, 0) && !math.IsNaN(upper) && upper > value
		}
		value, upper, ok := forecastPeak(*f, from, to)
		switch {
		case !ok:
			fu.Ignored = "no forecast point in the window"
		case p.IgnoreForecastAboveMAPE > 0 && !math.IsNaN(f.MAPE) && f.MAPE > p.IgnoreForecastAboveMAPE:
			fu.Peak, fu.PeakUpper = Number(value), Number(upper)
			fu.Ignored = fmt.Sprintf("backtest MAPE %.3f above ignore_forecast_above_mape %.3f", f.MAPE, p.IgnoreForecastAboveMAPE)
		default:
			fu.Peak, fu.PeakUpper = Number(value), Number(upper)
			fu.Bound, fu.Used = "value", Number(value)
			if useUpper(value, upper) {
				fu.Bound, fu.Used = "upper", Number(upper)
			}
			ex.ForecastReplicas = replicasFor(float64(fu.Used), perReplica)
			if ex.ForecastReplicas > rec {
				rec, term = ex.ForecastReplicas, TermForecast
			}
			// The hold can be shortened only by a forecast that reaches
			// the end of the stabilization window.
			holdTo := sig.Now.Add(p.ScaleDownStabilization)
			if p.ForecastShortensHold && p.ScaleDownStabilization > 0 && !f.Start.Add(time.Duration(len(f.Values))*f.Step).Before(holdTo) {
				if hv, hu, ok := forecastPeak(*f, sig.Now, holdTo); ok {
					if useUpper(hv, hu) {
						hv = hu
					}
					holdNeed = replicasFor(hv, perReplica)
				}
			}
		}
	}
	ex.Unbounded = rec

	if rec < p.Min {
		rec, term = p.Min, TermMin
		ex.Bounds = append(ex.Bounds, fmt.Sprintf("min=%d", p.Min))
	}
	if p.Max > 0 && rec > p.Max {
		rec, term = p.Max, TermMax
		ex.Bounds = append(ex.Bounds, fmt.Sprintf("max=%d", p.Max))
	}
	// What the stabilization window remembers of this sync is the need of
	// its observed load (bounded), not the forecast's look-ahead: a past
	// sync's forecast peak is either over by now or still ahead, and then
	// the current forecast carries it. So a forecast surge is not held for
	// a whole window after it passed, while scale-downs on observed load
	// are damped exactly as the HPA damps them.
	basis := max(need, p.Min)
	if p.Max > 0 {
		basis = min(basis, p.Max)
	}
	d.Record = Recommendation{At: sig.Now, Replicas: basis}

	// Scale-down stabilization, as the HPA does it: go down only to the
	// highest recommendation of the window.
	if rec < st.Desired {
		cutoff := sig.Now.Add(-p.ScaleDownStabilization)
		hi := rec
		for _, r := range st.Recommendations {
			if r.At.After(cutoff) && !r.At.After(sig.Now) && r.Replicas > hi {
				hi = r.Replicas
			}
		}
		restart := false
		if p.ScaleDownStabilization > 0 && st.HistoryStart.After(cutoff) && st.Desired > hi {
			hi, restart = st.Desired, true
			ex.Notes = append(ex.Notes, "history shorter than the stabilization window: the current count counts as a recommendation")
		}
		ex.StabilizedMax = hi
		if hi > rec {
			ex.Bounds = append(ex.Bounds, fmt.Sprintf("stabilization=%s:%d", p.ScaleDownStabilization, hi))
			// A forecast that the load stays lower for the whole window
			// answers what the hold guards against (the load coming
			// back): hold only for the forecast's peak of the window.
			if holdNeed >= 0 && holdNeed < hi && !restart {
				ex.HoldForecastReplicas = holdNeed
				ex.Bounds = append(ex.Bounds, fmt.Sprintf("forecast_hold=%d", holdNeed))
				hi = max(rec, holdNeed)
			}
			switch {
			case hi == rec:
			case hi == ex.HoldForecastReplicas:
				rec, term = hi, TermForecastHold
			default:
				rec, term = hi, TermStabilization
			}
		}
	}
	d.Recommended = rec

	target := rec
	if p.MaxStep > 0 {
		if target > st.Desired+p.MaxStep {
			target, term = st.Desired+p.MaxStep, TermMaxStep
			ex.Bounds = append(ex.Bounds, fmt.Sprintf("max_step=%d", p.MaxStep))
		} else if target < st.Desired-p.MaxStep {
			target, term = st.Desired-p.MaxStep, TermMaxStep
			ex.Bounds = append(ex.Bounds, fmt.Sprintf("max_step=%d", p.MaxStep))
		}
	}
	if target != st.Desired && p.Mode == ModeOn {
		cooldown := p.CooldownUp
		if target < st.Desired {
			cooldown = p.CooldownDown
		}
		if !st.LastScale.IsZero() && sig.Now.Sub(st.LastScale) < cooldown {
			ex.Bounds = append(ex.Bounds, fmt.Sprintf("cooldown until %s", st.LastScale.Add(cooldown).UTC().Format(time.RFC3339)))
			target, term = st.Desired, TermCooldown
		} else if p.MaxActionsPerHour > 0 {
			n := 0
			for _, a := range st.Actions {
				if sig.Now.Sub(a) < time.Hour {
					n++
				}
			}
			if n >= p.MaxActionsPerHour {
				ex.Bounds = append(ex.Bounds, fmt.Sprintf("max_actions_per_hour=%d", p.MaxActionsPerHour))
				target, term = st.Desired, TermRateLimit
			}
		}
	}
	d.Replicas = target
	switch {
	case target > st.Desired:
		d.Direction = DirectionUp
	case target < st.Desired:
		d.Direction = DirectionDown
	}
	d.Act = p.Mode == ModeOn && target != st.Desired
	ex.Term = term
	return d
}

// HPAPolicy is the reactive Horizontal Pod Autoscaler's configuration,
// with Kubernetes' defaults from DefaultHPAPolicy.
type HPAPolicy struct {
	Min, Max int
	// Tolerance: no change while |metric/target − 1| <= Tolerance.
	Tolerance float64
	// ScaleDownStabilization: a scale-down goes only to the highest
	// recommendation of this window.
	ScaleDownStabilization time.Duration
	// SyncInterval is how often the controller runs (the caller's loop).
	SyncInterval time.Duration
}

// DefaultHPAPolicy is Kubernetes' HPA with its defaults: 10% tolerance,
// 5 min scale-down stabilization, 15 s sync period.
func DefaultHPAPolicy(minReplicas, maxReplicas int) HPAPolicy {
	return HPAPolicy{Min: minReplicas, Max: maxReplicas, Tolerance: 0.1,
		ScaleDownStabilization: 5 * time.Minute, SyncInterval: 15 * time.Second}
}

// HPAResult is one reactive HPA step.
type HPAResult struct {
	// Replicas is the count to scale to.
	Replicas int
	// Raw is ceil(current × metric / target) (current within tolerance).
	Raw int
	// Record is what to append to the history for later steps.
	Record Recommendation
	// WithinTolerance says the ratio was inside the tolerance band.
	WithinTolerance bool
	// Stabilized says the stabilization window held a scale-down back.
	Stabilized bool
}

// HPA is the Kubernetes HPA's reactive rule, the baseline controller:
// desired = ceil(current × metric / target), unchanged while the ratio is
// within the tolerance; a scale-down goes only to the highest raw
// recommendation of the stabilization window (history holds earlier
// Records); the result is clamped to [Min, Max]. metric is the per-replica
// average of the scaling metric (e.g. rate per ready replica) and target
// its target value. Scale-ups follow the default HPA behavior (at most
// double or +4 replicas per sync). A NaN metric or a non-positive target or current
// holds the current count (the HPA skips a sync it cannot compute).
func HPA(now time.Time, current int, metric, target float64, history []Recommendation, p HPAPolicy) HPAResult {
	res := HPAResult{Raw: current}
	if !math.IsNaN(metric) && target > 0 && current > 0 {
		ratio := metric / target
		if math.Abs(ratio-1) <= p.Tolerance {
			res.WithinTolerance = true
		} else {
			res.Raw = int(math.Ceil(float64(current)*ratio - 1e-9))
		}
	}
	res.Record = Recommendation{At: now, Replicas: res.Raw}
	// As the HPA's default behavior: up to the raw recommendation (scale-up
	// window 0), down only to the highest of the scale-down window, and
	// never past the current count on the way down.
	down := res.Raw
	cutoff := now.Add(-p.ScaleDownStabilization)
	for _, r := range history {
		if r.At.After(cutoff) && !r.At.After(now) && r.Replicas > down {
			down = r.Replicas
		}
	}
	n := current
	if n < res.Raw {
		n = res.Raw
	}
	if n > down {
		n = down
	}
	if res.Raw < current && n > res.Raw {
		res.Stabilized = true
	}
	// The default scale-up policy: at most double or +4 per period.
	if limit := max(2*current, current+4); current > 0 && n > limit {
		n = limit
	}
	n = max(n, p.Min)
	if p.Max > 0 {
		n = min(n, p.Max)
	}
	res.Replicas = n
	return res
}
