// Package forecast predicts workload signals (request rates of the hosted
// services, or any PromQL expression) over the next horizon from their
// history in ClickHouse, so the autoscaler can have capacity ready before a
// predictable surge. Models are chosen per signal by rolling backtest and
// their accuracy is exported, so users see how far to trust each forecast.
package forecast
