// Package forecast predicts workload signals (request rates of the hosted
// services, or any PromQL expression) over the next horizon from their
// history in ClickHouse, so the autoscaler can have capacity ready before a
// predictable surge. Models are chosen per signal by rolling backtest and
// their accuracy is exported, so users see how far to trust each forecast.
//
// Models (all pure functions on a regular Series, stdlib only): the
// seasonal mean of the last periods with level adjustment, Holt-Winters
// (additive, and multiplicative for positive data) with weights from a
// grid search on h-step error, a Fourier model (linear trend plus the
// significant harmonics of the period) and a Theil-Sen recent-trend
// fallback; weekly variants compete once the history covers two weekly
// periods. Fit chooses among them by rolling backtest; Forecaster refits
// configured PromQL signals periodically, scores its past forecasts
// against the actuals and exports both (see metrics.go for the names).
// Everything is in the data's own (wall) time: with a compressed clock the
// configured period is the compressed day.
package forecast
