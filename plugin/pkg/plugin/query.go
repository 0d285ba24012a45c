package plugin

import (
	"encoding/json"
	"fmt"
)

// Query types, the queryType of a query as the editor sets it.
const (
	// QueryTypePromQL runs a PromQL range (or instant) query, optionally
	// restricted to some bureaus.
	QueryTypePromQL = "promql"
	// QueryTypeCapacity returns a service's request rate, forecast,
	// recommended and actual replicas.
	QueryTypeCapacity = "capacity"
	// QueryTypeAlertHistory returns the alert history as a table.
	QueryTypeAlertHistory = "alertHistory"
	// QueryTypeAutoscaleActions returns autoscale audit events, with
	// their explanations, as a table.
	QueryTypeAutoscaleActions = "autoscaleActions"
	// QueryTypeAlertAnnotations returns alert episodes as annotations.
	QueryTypeAlertAnnotations = "alertAnnotations"
	// QueryTypeAutoscaleAnnotations returns scaling actions as
	// annotations.
	QueryTypeAutoscaleAnnotations = "autoscaleAnnotations"
)

// Query is the JSON model of one query, written by the query editor.
// Fields not used by a query type are ignored.
type Query struct {
	// Expr is the PromQL expression (promql).
	Expr string `json:"expr"`
	// Instant runs the expression once at the range's end (promql).
	Instant bool `json:"instant"`
	// LegendFormat names series, e.g. "{{bureau}} {{job}}" (promql).
	LegendFormat string `json:"legendFormat"`
	// Bureaus restricts the query to these bureaus (promql, alerts,
	// autoscale); empty means everything the token sees.
	Bureaus []string `json:"bureaus"`
	// Service is the hosted service (capacity; filter for autoscale).
	Service string `json:"service"`
	// Target is the autoscale target (capacity, autoscale); default the
	// service's name.
	Target string `json:"target"`
	// Signal is the forecast signal (capacity); default the target's
	// signal in the recommendations, else the service's name.
	Signal string `json:"signal"`
	// RateExpr overrides the request rate expression (capacity).
	RateExpr string `json:"rateExpr"`
	// Matchers are alert label selectors, ORed (alerts), e.g.
	// {alertname="ScanLatencyAboveObjective"}.
	Matchers []string `json:"matchers"`
	// Events selects autoscale events: "" (actions and outcomes), "all"
	// or a comma list of decision, action, outcome (autoscale table).
	Events string `json:"events"`
}

func parseQuery(raw json.RawMessage) (Query, error) {
	var q Query
	if len(raw) == 0 {
		return q, nil
	}
	if err := json.Unmarshal(raw, &q); err != nil {
		return q, fmt.Errorf("query JSON: %w", err)
	}
	return q, nil
}
