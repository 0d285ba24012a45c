package forecast

import (
	"encoding/json"
	"math"
	"net/http"
	"time"
)

// ForecastJSON is one forecast as GET /api/v1/forecasts serves it: the
// Forecast with the step as a duration string and in seconds, errors that
// cannot be computed as null (JSON has no NaN), and the realised accuracy
// of the signal's past forecasts.
type ForecastJSON struct {
	Signal            string    `json:"signal"`
	Tenant            string    `json:"tenant"`
	Made              time.Time `json:"made"`
	Start             time.Time `json:"start"`
	Step              string    `json:"step"`
	StepSeconds       float64   `json:"step_seconds"`
	Values            []float64 `json:"values"`
	Lower             []float64 `json:"lower"`
	Upper             []float64 `json:"upper"`
	Model             string    `json:"model"`
	Reason            string    `json:"reason"`
	MAPE              *float64  `json:"mape"`
	PeakError         *float64  `json:"peak_error"`
	HistoryPoints     int       `json:"history_points"`
	RealisedMAPE      *float64  `json:"realised_mape"`
	RealisedPeakError *float64  `json:"realised_peak_error"`
	RealisedScored    int       `json:"realised_scored"`
}

// ForecastsResponse is the body of a successful GET /api/v1/forecasts, in
// the Prometheus API's envelope.
type ForecastsResponse struct {
	Status string         `json:"status"`
	Data   []ForecastJSON `json:"data"`
}

// Handler serves GET /api/v1/forecasts[?signal=NAME]: the newest forecast
// of every signal (or of the named one) whose tenant allowed accepts for
// the request; nil allowed accepts all, for tests and single-tenant use.
// The hub mounts it behind its authentication and passes a check that the
// caller's token belongs to the tenant (or is an admin). A named signal
// that is unknown, not allowed or not fitted yet is a 404, so callers
// cannot probe other tenants' signal names.
func (f *Forecaster) Handler(allowed func(r *http.Request, tenant string) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		name := r.URL.Query().Get("signal")
		var fcs []Forecast
		if name != "" {
			if fc, ok := f.Latest(name); ok {
				fcs = append(fcs, fc)
			}
		} else {
			fcs = f.All()
		}
		out := ForecastsResponse{Status: "success", Data: []ForecastJSON{}}
		for _, fc := range fcs {
			if allowed != nil && !allowed(r, fc.Tenant) {
				continue
			}
			acc, _ := f.Accuracy(fc.Signal)
			out.Data = append(out.Data, toJSON(fc, acc))
		}
		if name != "" && len(out.Data) == 0 {
			writeError(w, http.StatusNotFound, "no forecast for signal "+name)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
}

func toJSON(fc Forecast, acc Accuracy) ForecastJSON {
	return ForecastJSON{
		Signal: fc.Signal, Tenant: fc.Tenant, Made: fc.Made, Start: fc.Start,
		Step: fc.Step.String(), StepSeconds: fc.Step.Seconds(),
		Values: finite(fc.Values), Lower: finite(fc.Lower), Upper: finite(fc.Upper),
		Model: fc.Model, Reason: fc.Reason,
		MAPE: optional(fc.MAPE), PeakError: optional(fc.PeakError), HistoryPoints: fc.HistoryPoints,
		RealisedMAPE: optional(acc.MAPE), RealisedPeakError: optional(acc.PeakError), RealisedScored: acc.Scored,
	}
}

// finite copies v with non-finite values (which Fit does not produce)
// replaced by 0, since encoding/json refuses NaN.
func finite(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			out[i] = x
		}
	}
	return out
}

func optional(x float64) *float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return &x
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "error", "error": msg})
}
