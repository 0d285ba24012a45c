package forecast

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names the Forecaster exports, all labelled by signal and tenant:
//
//	bureauhub_forecast_value{point="next"|"peak"|"peak_upper"}
//	    the first forecast point, the highest over the horizon and its
//	    upper prediction bound (what the autoscaler provisions for).
//	bureauhub_forecast_error_mape{source="backtest"|"realised"}
//	    the chosen model's backtest MAPE at fit time, and the rolling mean
//	    MAPE of past forecasts against the actuals once their horizon
//	    passed (0.1 = 10%).
//	bureauhub_forecast_peak_error{source="backtest"|"realised"}
//	    the same for the relative error at the actual peak.
//	bureauhub_forecast_realised_scored
//	    how many past forecasts the realised errors average.
//	bureauhub_forecast_history_points
//	    points of history the last fit used.
//	bureauhub_forecast_model{model}
//	    1 for the model chosen at the last fit, 0 for the others.
//	bureauhub_forecast_last_fit_timestamp_seconds
//	    when the last successful fit was made.
//	bureauhub_forecast_fit_duration_seconds (histogram)
//	    query plus fit time, failures included.
//	bureauhub_forecast_fit_failures_total
//	    refits that failed (query or fit error).
const (
	metricValue     = "bureauhub_forecast_value"
	metricMAPE      = "bureauhub_forecast_error_mape"
	metricPeakError = "bureauhub_forecast_peak_error"
)

// modelNames are the models bureauhub_forecast_model reports on.
var modelNames = []string{
	ModelSeasonalMean, ModelHoltWinters, ModelHoltWintersMult, ModelFourier, ModelTrend,
	ModelSeasonalMean + WeeklySuffix, ModelHoltWinters + WeeklySuffix, ModelHoltWintersMult + WeeklySuffix,
}

type metrics struct {
	value, mape, peakError           *prometheus.GaugeVec
	scored, historyPoints, model, at *prometheus.GaugeVec
	fitDuration                      *prometheus.HistogramVec
	fitFailures                      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	sl := []string{"signal", "tenant"}
	m := &metrics{
		value: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metricValue,
			Help: "Forecast of the signal: the next point, the horizon's peak and the peak's upper prediction bound."}, append(sl, "point")),
		mape: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metricMAPE,
			Help: "Mean absolute percentage error of the chosen model (0.1 = 10%): in the backtest at fit time, and realised against actuals (rolling)."}, append(sl, "source")),
		peakError: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metricPeakError,
			Help: "Relative error at the actual peak of the window: in the backtest at fit time, and realised against actuals (rolling)."}, append(sl, "source")),
		scored: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "bureauhub_forecast_realised_scored",
			Help: "Past forecasts the realised error metrics average."}, sl),
		historyPoints: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "bureauhub_forecast_history_points",
			Help: "Points of history the last fit used."}, sl),
		model: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "bureauhub_forecast_model",
			Help: "1 for the model the last backtest chose, 0 for the others."}, append(sl, "model")),
		at: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "bureauhub_forecast_last_fit_timestamp_seconds",
			Help: "When the last successful fit was made."}, sl),
		fitDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "bureauhub_forecast_fit_duration_seconds",
			Help: "Time to query a signal's history and fit it.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 8)}, sl),
		fitFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bureauhub_forecast_fit_failures_total",
			Help: "Refits that failed."}, sl),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.value, m.mape, m.peakError, m.scored, m.historyPoints, m.model, m.at, m.fitDuration, m.fitFailures} {
			if err := reg.Register(c); err != nil {
				return nil, errors.Join(errors.New("register forecast metrics"), err)
			}
		}
	}
	return m, nil
}

// set exports a fit's results and the signal's realised accuracy.
func (m *metrics) set(sc SignalConfig, fc Forecast, acc Accuracy) {
	s, t := sc.Name, sc.Tenant
	if len(fc.Values) > 0 {
		m.value.WithLabelValues(s, t, "next").Set(fc.Values[0])
		peak, upper, _ := fc.Peak(fc.Start, fc.Start.Add(fc.Step*time.Duration(len(fc.Values))))
		m.value.WithLabelValues(s, t, "peak").Set(peak)
		m.value.WithLabelValues(s, t, "peak_upper").Set(upper)
	}
	m.mape.WithLabelValues(s, t, "backtest").Set(fc.MAPE)
	m.peakError.WithLabelValues(s, t, "backtest").Set(fc.PeakError)
	if acc.Scored > 0 {
		m.mape.WithLabelValues(s, t, "realised").Set(acc.MAPE)
		m.peakError.WithLabelValues(s, t, "realised").Set(acc.PeakError)
	}
	m.scored.WithLabelValues(s, t).Set(float64(acc.Scored))
	m.historyPoints.WithLabelValues(s, t).Set(float64(fc.HistoryPoints))
	for _, name := range modelNames {
		v := 0.0
		if name == fc.Model {
			v = 1
		}
		m.model.WithLabelValues(s, t, name).Set(v)
	}
	m.at.WithLabelValues(s, t).Set(float64(fc.Made.UnixNano()) / 1e9)
}
