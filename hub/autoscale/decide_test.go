package autoscale

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bureauhub/bureauhub/hub/forecast"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// fc is a forecast from t0 in 15 s steps, upper bound 1.5× the value.
func fc(mape float64, values ...float64) *forecast.Forecast {
	f := &forecast.Forecast{Signal: "booking_rate", Tenant: "visa", Made: t0, Start: t0, Step: 15 * time.Second,
		Model: "holt_winters", MAPE: mape}
	for _, v := range values {
		f.Values = append(f.Values, v)
		f.Lower = append(f.Lower, v*0.5)
		f.Upper = append(f.Upper, v*1.5)
	}
	return f
}

// basePolicy sizes replicas for 5 req/s each (capacity 10 at 50%).
func basePolicy() Policy {
	return Policy{Mode: ModeOn, Min: 1, Max: 20, TargetUtilization: 0.5, SyncInterval: 15 * time.Second,
		ScaleDownStabilization: 5 * time.Minute, TrustedMAPE: 0.15, UseUpperWhenUntrusted: true, IgnoreForecastAboveMAPE: 1,
		ForecastShortensHold: true}
}

func baseSignals(rate float64, f *forecast.Forecast) Signals {
	return Signals{Now: t0, Rate: rate, Forecast: f, CapacityPerReplica: 10, WarmUp: 30 * time.Second}
}

func TestDecide(t *testing.T) {
	longHistory := t0.Add(-time.Hour)
	tests := []struct {
		name   string
		state  State
		sig    Signals
		policy func(p *Policy)

		replicas, recommended int
		act                   bool
		term                  string
		floor, forecastRepl   int
		check                 func(t *testing.T, d Decision)
	}{
		{
			name: "scale up ahead of a forecast surge inside warm-up+sync",
			// Now 8 req/s needs 2; 30 req/s at t0+30s (ready by then only
			// if started now) needs 6; 100 at t0+60s is beyond the window.
			state:    State{Desired: 2, Ready: 2, HistoryStart: longHistory},
			sig:      baseSignals(8, fc(0.05, 8, 9, 30, 12, 100)),
			replicas: 6, recommended: 6, act: true, term: TermForecast, floor: 2, forecastRepl: 6,
			check: func(t *testing.T, d Decision) {
				f := d.Explanation.Forecast
				if f == nil || f.Bound != "value" || !f.Trusted || float64(f.Peak) != 30 || float64(f.Used) != 30 {
					t.Errorf("forecast used = %+v, want trusted value peak 30", f)
				}
				if d.Direction != DirectionUp {
					t.Errorf("direction = %s", d.Direction)
				}
			},
		},
		{
			name:     "a surge beyond the window is not yet provisioned",
			state:    State{Desired: 2, Ready: 2, HistoryStart: longHistory},
			sig:      baseSignals(8, fc(0.05, 8, 8, 8, 8, 100)),
			replicas: 2, recommended: 2, term: TermReactive, floor: 2, forecastRepl: 2,
		},
		{
			name:     "reactive floor wins over a forecast that is too low",
			state:    State{Desired: 2, Ready: 2, HistoryStart: longHistory},
			sig:      baseSignals(40, fc(0.05, 5, 5, 5, 5)),
			replicas: 8, recommended: 8, act: true, term: TermReactive, floor: 8, forecastRepl: 1,
		},
		{
			name:     "untrusted forecast is sized for its upper bound",
			state:    State{Desired: 2, Ready: 2, HistoryStart: longHistory},
			sig:      baseSignals(8, fc(0.4, 20, 20, 20)), // upper 30
			replicas: 6, recommended: 6, act: true, term: TermForecast, floor: 2, forecastRepl: 6,
			check: func(t *testing.T, d Decision) {
				if f := d.Explanation.Forecast; f.Bound != "upper" || f.Trusted {
					t.Errorf("forecast used = %+v, want untrusted upper", f)
				}
			},
		},
		{
			name:     "untrusted forecast with the upper bound off uses its value",
			state:    State{Desired: 2, Ready: 2, HistoryStart: longHistory},
			sig:      baseSignals(8, fc(0.4, 20, 20, 20)),
			policy:   func(p *Policy) { p.UseUpperWhenUntrusted = false },
			replicas: 4, recommended: 4, act: true, term: TermForecast, floor: 2, forecastRepl: 4,
		},
		{
			name:     "forecast far too wrong is ignored",
			state:    State{Desired: 2, Ready: 2, HistoryStart: longHistory},
			sig:      baseSignals(8, fc(1.5, 50, 50, 50)),
			replicas: 2, recommended: 2, term: TermReactive, floor: 2, forecastRepl: -1,
			check: func(t *testing.T, d Decision) {
				if !strings.Contains(d.Explanation.Forecast.Ignored, "MAPE") {
					t.Errorf("ignored = %q", d.Explanation.Forecast.Ignored)
				}
			},
		},
		{
			name:  "stale forecast has no point in the window",
			state: State{Desired: 2, Ready: 2, HistoryStart: longHistory},
			sig: func() Signals {
				s := baseSignals(8, fc(0.05, 50, 50))
				s.Now = t0.Add(time.Hour)
				return s
			}(),
			replicas: 2, recommended: 2, term: TermReactive, floor: 2, forecastRepl: -1,
		},
		{
			name: "no scale-down inside the stabilization window",
			state: State{Desired: 8, Ready: 8, HistoryStart: longHistory,
				Recommendations: []Recommendation{{t0.Add(-2 * time.Minute), 8}, {t0.Add(-time.Minute), 3}}},
			sig:      baseSignals(8, nil),
			replicas: 8, recommended: 8, term: TermStabilization, floor: 2, forecastRepl: -1,
		},
		{
			name: "after the window passes, down to the max over the window",
			state: State{Desired: 8, Ready: 8, HistoryStart: longHistory,
				Recommendations: []Recommendation{{t0.Add(-6 * time.Minute), 8}, {t0.Add(-4 * time.Minute), 5}, {t0.Add(-time.Minute), 3}}},
			sig:      baseSignals(8, nil),
			replicas: 5, recommended: 5, act: true, term: TermStabilization, floor: 2, forecastRepl: -1,
			check: func(t *testing.T, d Decision) {
				if d.Explanation.StabilizedMax != 5 || d.Direction != DirectionDown {
					t.Errorf("stabilized max %d direction %s", d.Explanation.StabilizedMax, d.Direction)
				}
			},
		},
		{
			name: "whole window low: down to the recommendation",
			state: State{Desired: 8, Ready: 8, HistoryStart: longHistory,
				Recommendations: []Recommendation{{t0.Add(-6 * time.Minute), 8}, {t0.Add(-time.Minute), 2}}},
			sig:      baseSignals(8, nil),
			replicas: 2, recommended: 2, act: true, term: TermReactive, floor: 2, forecastRepl: -1,
		},
		{
			name:     "history shorter than the window holds the current count",
			state:    State{Desired: 8, Ready: 8, HistoryStart: t0.Add(-time.Minute)},
			sig:      baseSignals(8, nil),
			replicas: 8, recommended: 8, term: TermStabilization, floor: 2, forecastRepl: -1,
		},
		{
			name:     "min bound",
			state:    State{Desired: 3, Ready: 3, HistoryStart: longHistory},
			sig:      baseSignals(1, nil),
			policy:   func(p *Policy) { p.Min = 3 },
			replicas: 3, recommended: 3, term: TermMin, floor: 1, forecastRepl: -1,
		},
		{
			name:     "max bound",
			state:    State{Desired: 3, Ready: 3, HistoryStart: longHistory},
			sig:      baseSignals(8, fc(0.05, 500, 500)),
			policy:   func(p *Policy) { p.Max = 12 },
			replicas: 12, recommended: 12, act: true, term: TermMax, floor: 2, forecastRepl: 100,
			check: func(t *testing.T, d Decision) {
				if !slices.Contains(d.Explanation.Bounds, "max=12") {
					t.Errorf("bounds = %v", d.Explanation.Bounds)
				}
			},
		},
		{
			name:     "cooldown up holds a scale-up",
			state:    State{Desired: 2, Ready: 2, HistoryStart: longHistory, LastScale: t0.Add(-10 * time.Second), LastDirection: DirectionUp},
			sig:      baseSignals(40, nil),
			policy:   func(p *Policy) { p.CooldownUp = 30 * time.Second },
			replicas: 2, recommended: 8, term: TermCooldown, floor: 8, forecastRepl: -1,
		},
		{
			name:     "cooldown up passed",
			state:    State{Desired: 2, Ready: 2, HistoryStart: longHistory, LastScale: t0.Add(-31 * time.Second), LastDirection: DirectionUp},
			sig:      baseSignals(40, nil),
			policy:   func(p *Policy) { p.CooldownUp = 30 * time.Second },
			replicas: 8, recommended: 8, act: true, term: TermReactive, floor: 8, forecastRepl: -1,
		},
		{
			name: "cooldown down holds a scale-down",
			state: State{Desired: 8, Ready: 8, HistoryStart: longHistory, LastScale: t0.Add(-9 * time.Minute), LastDirection: DirectionUp,
				Recommendations: []Recommendation{{t0.Add(-time.Minute), 2}}},
			sig:      baseSignals(8, nil),
			policy:   func(p *Policy) { p.CooldownDown = 10 * time.Minute },
			replicas: 8, recommended: 2, term: TermCooldown, floor: 2, forecastRepl: -1,
		},
		{
			name:     "max step limits a scale-up",
			state:    State{Desired: 2, Ready: 2, HistoryStart: longHistory},
			sig:      baseSignals(8, fc(0.05, 50, 50)),
			policy:   func(p *Policy) { p.MaxStep = 3 },
			replicas: 5, recommended: 10, act: true, term: TermMaxStep, floor: 2, forecastRepl: 10,
		},
		{
			name: "max step limits a scale-down",
			state: State{Desired: 10, Ready: 10, HistoryStart: longHistory,
				Recommendations: []Recommendation{{t0.Add(-6 * time.Minute), 10}}},
			sig:      baseSignals(4, nil),
			policy:   func(p *Policy) { p.MaxStep = 3 },
			replicas: 7, recommended: 1, act: true, term: TermMaxStep, floor: 1, forecastRepl: -1,
		},
		{
			name: "hourly action limit",
			state: State{Desired: 2, Ready: 2, HistoryStart: longHistory,
				Actions: []time.Time{t0.Add(-70 * time.Minute), t0.Add(-50 * time.Minute), t0.Add(-10 * time.Minute)}},
			sig:      baseSignals(40, nil),
			policy:   func(p *Policy) { p.MaxActionsPerHour = 2 },
			replicas: 2, recommended: 8, term: TermRateLimit, floor: 8, forecastRepl: -1,
		},
		{
			name:     "dry-run decides without acting",
			state:    State{Desired: 2, Ready: 2, HistoryStart: longHistory, LastScale: t0.Add(-time.Second)},
			sig:      baseSignals(8, fc(0.05, 8, 9, 30)),
			policy:   func(p *Policy) { p.Mode = ModeDryRun; p.CooldownUp = time.Hour },
			replicas: 6, recommended: 6, term: TermForecast, floor: 2, forecastRepl: 6,
			check: func(t *testing.T, d Decision) {
				if d.Direction != DirectionUp {
					t.Errorf("direction = %s, want up (what on would do)", d.Direction)
				}
			},
		},
		{
			name:     "mode off does nothing",
			state:    State{Desired: 2, Ready: 2, HistoryStart: longHistory},
			sig:      baseSignals(80, fc(0.05, 100, 100)),
			policy:   func(p *Policy) { p.Mode = ModeOff },
			replicas: 2, recommended: 2, term: TermOff, floor: 0, forecastRepl: -1,
		},
		{
			name:     "unknown rate holds the floor at the current count",
			state:    State{Desired: 4, Ready: 4, HistoryStart: longHistory},
			sig:      baseSignals(math.NaN(), nil),
			replicas: 4, recommended: 4, term: TermReactive, floor: 4, forecastRepl: -1,
		},
		{
			name:     "load within the tolerance above the current count holds it",
			state:    State{Desired: 4, Ready: 4, HistoryStart: longHistory},
			sig:      baseSignals(21, nil), // 105% of 4 × 5
			policy:   func(p *Policy) { p.Tolerance = 0.1 },
			replicas: 4, recommended: 4, term: TermReactive, floor: 4, forecastRepl: -1,
			check: func(t *testing.T, d Decision) {
				if d.Record.Replicas != 5 {
					t.Errorf("recorded %d, want the observed need 5", d.Record.Replicas)
				}
			},
		},
		{
			name:     "load beyond the tolerance scales up",
			state:    State{Desired: 4, Ready: 4, HistoryStart: longHistory},
			sig:      baseSignals(23, nil), // 115%
			policy:   func(p *Policy) { p.Tolerance = 0.1 },
			replicas: 5, recommended: 5, act: true, term: TermReactive, floor: 5, forecastRepl: -1,
		},
		{
			name:     "load within the tolerance below the current count holds it",
			state:    State{Desired: 12, Ready: 12, HistoryStart: longHistory},
			sig:      baseSignals(55, nil), // 92% of 12 × 5, needs 11
			policy:   func(p *Policy) { p.Tolerance = 0.1 },
			replicas: 12, recommended: 12, term: TermReactive, floor: 12, forecastRepl: -1,
		},
		{
			name:     "a forecast above the tolerance band still scales up",
			state:    State{Desired: 4, Ready: 4, HistoryStart: longHistory},
			sig:      baseSignals(21, fc(0.05, 21, 21, 40)),
			policy:   func(p *Policy) { p.Tolerance = 0.1 },
			replicas: 8, recommended: 8, act: true, term: TermForecast, floor: 4, forecastRepl: 8,
		},
		{
			name:     "exact multiple needs no extra replica",
			state:    State{Desired: 3, Ready: 3, HistoryStart: longHistory},
			sig:      baseSignals(15, nil),
			replicas: 3, recommended: 3, term: TermReactive, floor: 3, forecastRepl: -1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := basePolicy()
			if tt.policy != nil {
				tt.policy(&p)
			}
			d := Decide(tt.state, tt.sig, p)
			ex := d.Explanation
			if d.Replicas != tt.replicas || d.Recommended != tt.recommended || d.Act != tt.act || ex.Term != tt.term {
				t.Errorf("got replicas %d recommended %d act %v term %q; want %d %d %v %q (explanation %+v)",
					d.Replicas, d.Recommended, d.Act, ex.Term, tt.replicas, tt.recommended, tt.act, tt.term, ex)
			}
			if ex.ReactiveFloor != tt.floor || ex.ForecastReplicas != tt.forecastRepl {
				t.Errorf("floor %d forecast %d; want %d %d", ex.ReactiveFloor, ex.ForecastReplicas, tt.floor, tt.forecastRepl)
			}
			if tt.check != nil {
				tt.check(t, d)
			}
			// The explanation must always encode (NaN included).
			if _, err := json.Marshal(d); err != nil {
				t.Errorf("marshal decision: %v", err)
			}
		})
	}
}

// TestDecideSurgeSequence drives Decide over a surge: the forecast-led
// controller reaches the needed count one warm-up before the load does.
func TestDecideSurgeSequence(t *testing.T) {
	p := basePolicy()
	// Load: 10 req/s until t0+3m, then 50 req/s (needs 10 replicas).
	load := func(at time.Time) float64 {
		if at.Before(t0.Add(3 * time.Minute)) {
			return 10
		}
		return 50
	}
	f := &forecast.Forecast{Start: t0, Step: 15 * time.Second, MAPE: 0.05}
	for i := range 40 {
		v := load(t0.Add(time.Duration(i) * 15 * time.Second))
		f.Values, f.Upper = append(f.Values, v), append(f.Upper, v)
	}
	st := State{Desired: 2, Ready: 2, HistoryStart: t0.Add(-time.Hour)}
	var reached time.Time
	for now := t0; now.Before(t0.Add(5 * time.Minute)); now = now.Add(p.SyncInterval) {
		d := Decide(st, Signals{Now: now, Rate: load(now), Forecast: f, CapacityPerReplica: 10, WarmUp: 30 * time.Second}, p)
		st.Recommendations = append(st.Recommendations, d.Record)
		if d.Act {
			st.Desired, st.LastScale = d.Replicas, now
		}
		if st.Desired >= 10 && reached.IsZero() {
			reached = now
			if d.Explanation.Term != TermForecast {
				t.Errorf("scale-up term = %s, want forecast", d.Explanation.Term)
			}
		}
	}
	// Replicas decided at t must be ready by t+30s, i.e. decided by 2m30s.
	if reached.IsZero() || reached.After(t0.Add(150*time.Second)) {
		t.Fatalf("reached 10 replicas at %v, want by t0+2m30s", reached.Sub(t0))
	}
}

func TestForecastWindow(t *testing.T) {
	now := t0.Add(90 * time.Second)
	from, to := ForecastWindow(now, 30*time.Second, 15*time.Second)
	if !from.Equal(now) || !to.After(now.Add(45*time.Second)) || to.After(now.Add(46*time.Second)) {
		t.Fatalf("window [%v, %v)", from.Sub(t0), to.Sub(t0))
	}
}

func TestForecastPeak(t *testing.T) {
	// Points at t0 + i minutes, each the mean of its minute; upper 1.5×.
	minutes := func(values ...float64) forecast.Forecast {
		f := forecast.Forecast{Start: t0, Step: time.Minute}
		for _, v := range values {
			f.Values = append(f.Values, v)
			f.Upper = append(f.Upper, 1.5*v)
		}
		return f
	}
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	tests := []struct {
		name     string
		f        forecast.Forecast
		from, to time.Duration
		value    float64
		ok       bool
	}{
		// 40 is a third of the way from 10 to 100: the surge holds the
		// last third of minute 2, from 2m40s.
		{name: "a surge inside a step counts from where it starts, not before",
			f: minutes(10, 10, 40, 100, 100), from: 0, to: 2*time.Minute + 39*time.Second, value: 10, ok: true},
		{name: "a surge inside a step counts in full from where it starts",
			f: minutes(10, 10, 40, 100, 100), from: 0, to: 2*time.Minute + 41*time.Second, value: 100, ok: true},
		{name: "a surge at a step's start counts from that step",
			f: minutes(10, 10, 100, 100), from: 0, to: 2 * time.Minute, value: 10, ok: true},
		{name: "a surge at a step's start, window reaching it",
			f: minutes(10, 10, 100, 100), from: 0, to: 2*time.Minute + time.Nanosecond, value: 100, ok: true},
		// 70 is a third of the way from 100 down to 10: the decline
		// starts at 2m40s.
		{name: "a decline inside a step is timed the same way (before it)",
			f: minutes(100, 100, 70, 10, 10), from: 2*time.Minute + 30*time.Second, to: 5 * time.Minute, value: 100, ok: true},
		{name: "a decline inside a step is timed the same way (after it)",
			f: minutes(100, 100, 70, 10, 10), from: 2*time.Minute + 50*time.Second, to: 5 * time.Minute, value: 10, ok: true},
		{name: "a peak point is its own level",
			f: minutes(10, 50, 10), from: 0, to: 3 * time.Minute, value: 50, ok: true},
		{name: "the step covering from counts",
			f: minutes(50, 10, 10), from: 30 * time.Second, to: 31 * time.Second, value: 50, ok: true},
		{name: "no point in the window",
			f: minutes(50, 10), from: 3 * time.Minute, to: 4 * time.Minute, ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, u, ok := forecastPeak(tt.f, at(tt.from), at(tt.to))
			if ok != tt.ok || (ok && (v != tt.value || u != 1.5*tt.value)) {
				t.Errorf("peak %v upper %v ok %v; want %v, %v, %v", v, u, ok, tt.value, 1.5*tt.value, tt.ok)
			}
		})
	}
}

// TestDecideForecastShortensHold: a scale-down held by stabilization goes
// down to what the forecast's peak over the whole stabilization window
// needs, when the forecast reaches that far.
func TestDecideForecastShortensHold(t *testing.T) {
	// The load was 40 req/s (8 replicas) a minute ago and is 10 (2) now.
	held := State{Desired: 8, Ready: 8, HistoryStart: t0.Add(-time.Hour),
		Recommendations: []Recommendation{{t0.Add(-time.Minute), 8}}}
	// flat is a forecast of rate 10 over the next n steps of 15 s; bump
	// puts rate r at 3 minutes ahead.
	flat := func(mape float64, n int) *forecast.Forecast {
		v := make([]float64, n)
		for i := range v {
			v[i] = 10
		}
		return fc(mape, v...)
	}
	bump := func(mape, r float64) *forecast.Forecast {
		f := flat(mape, 24)
		f.Values[12], f.Upper[12] = r, 1.5*r
		return f
	}
	tests := []struct {
		name     string
		state    State
		f        *forecast.Forecast
		policy   func(p *Policy)
		replicas int
		term     string
		hold     int
	}{
		{name: "a forecast of lower load for the whole window releases the hold",
			state: held, f: flat(0.05, 24), replicas: 2, term: TermReactive, hold: 2},
		{name: "the hold goes to the forecast's peak of the window",
			state: held, f: bump(0.05, 30), replicas: 6, term: TermForecastHold, hold: 6},
		{name: "an untrusted forecast holds for its upper bound",
			state: held, f: bump(0.4, 20), replicas: 6, term: TermForecastHold, hold: 6},
		{name: "a forecast peak above the hold changes nothing",
			state: held, f: bump(0.05, 60), replicas: 8, term: TermStabilization},
		{name: "a forecast shorter than the window does not shorten the hold",
			state: held, f: flat(0.05, 8), replicas: 8, term: TermStabilization},
		{name: "an ignored forecast does not shorten the hold",
			state: held, f: flat(1.5, 24), replicas: 8, term: TermStabilization},
		{name: "off by policy",
			state: held, f: flat(0.05, 24), policy: func(p *Policy) { p.ForecastShortensHold = false }, replicas: 8, term: TermStabilization},
		{name: "after a restart the current count is held",
			state: State{Desired: 8, Ready: 8, HistoryStart: t0.Add(-time.Minute)}, f: flat(0.05, 24), replicas: 8, term: TermStabilization},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := basePolicy()
			if tt.policy != nil {
				tt.policy(&p)
			}
			d := Decide(tt.state, baseSignals(10, tt.f), p)
			ex := d.Explanation
			if d.Replicas != tt.replicas || ex.Term != tt.term || ex.HoldForecastReplicas != tt.hold {
				t.Errorf("got %d replicas by %s, hold %d (bounds %v); want %d by %s, hold %d",
					d.Replicas, ex.Term, ex.HoldForecastReplicas, ex.Bounds, tt.replicas, tt.term, tt.hold)
			}
			if tt.hold > 0 && !slices.Contains(ex.Bounds, "forecast_hold="+strconv.Itoa(tt.hold)) {
				t.Errorf("bounds %v lack forecast_hold=%d", ex.Bounds, tt.hold)
			}
			if ex.StabilizedMax != 8 {
				t.Errorf("stabilized max %d, want 8 (the window's, before the forecast)", ex.StabilizedMax)
			}
		})
	}
}

func TestHPA(t *testing.T) {
	p := DefaultHPAPolicy(1, 20)
	tests := []struct {
		name       string
		current    int
		metric     float64
		history    []Recommendation
		policy     func(p *HPAPolicy)
		want, raw  int
		tolerance  bool
		stabilized bool
	}{
		{name: "within tolerance up", current: 4, metric: 1.09, want: 4, raw: 4, tolerance: true},
		{name: "within tolerance down", current: 4, metric: 0.91, want: 4, raw: 4, tolerance: true},
		{name: "just outside tolerance", current: 10, metric: 1.11, want: 12, raw: 12},
		{name: "scale up", current: 4, metric: 2, want: 8, raw: 8},
		{name: "scale up limited to double or +4", current: 2, metric: 10, want: 6, raw: 20},
		{name: "scale down held by the window", current: 8, metric: 0.25,
			history: []Recommendation{{t0.Add(-time.Minute), 8}}, want: 8, raw: 2, stabilized: true},
		{name: "scale down to the window's max", current: 8, metric: 0.25,
			history: []Recommendation{{t0.Add(-6 * time.Minute), 8}, {t0.Add(-2 * time.Minute), 5}}, want: 5, raw: 2, stabilized: true},
		{name: "scale down after a low window", current: 8, metric: 0.25,
			history: []Recommendation{{t0.Add(-6 * time.Minute), 8}, {t0.Add(-2 * time.Minute), 2}}, want: 2, raw: 2},
		{name: "history never lifts a scale-up", current: 4, metric: 1.5,
			history: []Recommendation{{t0.Add(-time.Minute), 12}}, want: 6, raw: 6},
		{name: "stabilization never goes above current", current: 4, metric: 0.5,
			history: []Recommendation{{t0.Add(-time.Minute), 12}}, want: 4, raw: 2, stabilized: true},
		{name: "min", current: 2, metric: 0.1, policy: func(p *HPAPolicy) { p.Min = 2 }, want: 2, raw: 1},
		{name: "max", current: 8, metric: 2, policy: func(p *HPAPolicy) { p.Max = 10 }, want: 10, raw: 16},
		{name: "unknown metric holds", current: 5, metric: math.NaN(), want: 5, raw: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pp := p
			if tt.policy != nil {
				tt.policy(&pp)
			}
			r := HPA(t0, tt.current, tt.metric, 1, tt.history, pp)
			if r.Replicas != tt.want || r.Raw != tt.raw || r.WithinTolerance != tt.tolerance || r.Stabilized != tt.stabilized {
				t.Errorf("got %+v; want replicas %d raw %d tolerance %v stabilized %v", r, tt.want, tt.raw, tt.tolerance, tt.stabilized)
			}
			if r.Record.Replicas != r.Raw || !r.Record.At.Equal(t0) {
				t.Errorf("record %+v", r.Record)
			}
		})
	}
	if p.Tolerance != 0.1 || p.ScaleDownStabilization != 5*time.Minute || p.SyncInterval != 15*time.Second {
		t.Errorf("default HPA policy %+v", p)
	}
}

// TestStabilizationRemembersObservedNeedNotForecastLookAhead: after a
// forecast surge has passed, the count comes down at once to what the
// observed load of the window needed (the forecast's look-ahead of past
// syncs is not held for a whole window), while a drop of the observed load
// itself is damped for the window, as the HPA damps it.
func TestStabilizationRemembersObservedNeedNotForecastLookAhead(t *testing.T) {
	p := basePolicy()
	st := State{Desired: 2, Ready: 2, HistoryStart: t0.Add(-time.Hour)}
	// A brief forecast surge 30 s ahead (needs 10), load of 10 req/s (2).
	surge := fc(0.05, 10, 10, 50, 10, 10)
	d := Decide(st, baseSignals(10, surge), p)
	if d.Replicas != 10 || d.Explanation.Term != TermForecast {
		t.Fatalf("ahead of the surge: %d replicas by %s, want 10 by forecast", d.Replicas, d.Explanation.Term)
	}
	st.Recommendations = append(st.Recommendations, d.Record)
	st.Desired, st.Ready = 10, 10
	// A minute later the forecast shows no more surge and the load is
	// still 10 req/s: down to 2, not held at 10 for the window.
	sig := baseSignals(10, fc(0.05, 10, 10, 10, 10))
	sig.Now = t0.Add(time.Minute)
	if d := Decide(st, sig, p); d.Replicas != 2 {
		t.Fatalf("after the forecast surge: %d replicas (%s), want 2", d.Replicas, d.Explanation.Term)
	}
	// An observed peak (40 req/s, needs 8) then a drop: held at 8 for the
	// window.
	st = State{Desired: 8, Ready: 8, HistoryStart: t0.Add(-time.Hour)}
	d = Decide(st, baseSignals(40, nil), p)
	st.Recommendations = append(st.Recommendations, d.Record)
	sig = baseSignals(10, nil)
	sig.Now = t0.Add(time.Minute)
	if d := Decide(st, sig, p); d.Replicas != 8 || d.Explanation.Term != TermStabilization {
		t.Fatalf("after an observed drop: %d replicas (%s), want 8 held by stabilization", d.Replicas, d.Explanation.Term)
	}
}
