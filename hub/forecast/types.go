package forecast

import (
	"math"
	"time"
)

// Series is a regularly spaced series: Values[i] is the value at
// Start + i*Step; NaN marks a missing point.
type Series struct {
	Start  time.Time
	Step   time.Duration
	Values []float64
}

// End is the time of the point after the last one.
func (s Series) End() time.Time { return s.Start.Add(time.Duration(len(s.Values)) * s.Step) }

// At returns the value at t (NaN when t is outside the series or missing).
func (s Series) At(t time.Time) float64 {
	if s.Step <= 0 || t.Before(s.Start) {
		return math.NaN()
	}
	i := int(t.Sub(s.Start) / s.Step)
	if i >= len(s.Values) {
		return math.NaN()
	}
	return s.Values[i]
}

// Forecast is a prediction of one signal over the next horizon, with the
// evidence of how far to trust it.
type Forecast struct {
	// Signal is the configured signal's name.
	Signal string `json:"signal"`
	// Tenant is the bureau whose data it was computed from.
	Tenant string `json:"tenant"`
	// Made is when the forecast was computed.
	Made time.Time `json:"made"`
	// Points are the predicted values: Values[i] at Start + i*Step, with a
	// prediction interval [Lower[i], Upper[i]].
	Start  time.Time     `json:"start"`
	Step   time.Duration `json:"step"`
	Values []float64     `json:"values"`
	Lower  []float64     `json:"lower"`
	Upper  []float64     `json:"upper"`
	// Model is the model chosen by backtest ("holt_winters", "fourier",
	// "trend", ...).
	Model string `json:"model"`
	// Reason explains the choice, e.g. "history covers 0.4 periods: recent
	// trend fallback".
	Reason string `json:"reason"`
	// MAPE is the chosen model's mean absolute percentage error over the
	// rolling backtest (0.12 = 12%); NaN when no backtest was possible.
	MAPE float64 `json:"mape"`
	// PeakError is the relative error at the backtest window's peak.
	PeakError float64 `json:"peak_error"`
	// HistoryPoints is how many points of history the fit used.
	HistoryPoints int `json:"history_points"`
}

// Peak returns the highest predicted value in [from, to) and its upper
// bound; ok is false when the forecast has no point in the window.
func (f Forecast) Peak(from, to time.Time) (value, upper float64, ok bool) {
	value, upper = math.Inf(-1), math.Inf(-1)
	for i, v := range f.Values {
		t := f.Start.Add(time.Duration(i) * f.Step)
		if t.Before(from) || !t.Before(to) || math.IsNaN(v) {
			continue
		}
		ok = true
		value = math.Max(value, v)
		if i < len(f.Upper) {
			upper = math.Max(upper, f.Upper[i])
		}
	}
	return value, upper, ok
}
