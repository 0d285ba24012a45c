package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/bureauhub/bureauhub/hub/autoscale"
	"github.com/bureauhub/bureauhub/plugin/pkg/hubclient"
)

// autoscaleEvents reads the audit trail for the query's range, target
// (or service) and bureaus.
func (d *Datasource) autoscaleEvents(ctx context.Context, dq backend.DataQuery, q Query, events string) ([]autoscale.Event, error) {
	aq := hubclient.ActionsQuery{Target: q.Target, Events: events, Start: dq.TimeRange.From, End: dq.TimeRange.To, Limit: 100000}
	if aq.Target == "" {
		aq.Target = q.Service
	}
	if len(q.Bureaus) == 1 {
		aq.Tenant = q.Bureaus[0]
	}
	evs, err := d.hub.Actions(ctx, aq)
	if err != nil {
		return nil, err
	}
	return filterTenants(evs, q.Bureaus, func(e autoscale.Event) string { return e.Tenant }), nil
}

// autoscaleActions is the audit trail as one table, newest first, each
// row with its decision's explanation in words and as JSON.
func (d *Datasource) autoscaleActions(ctx context.Context, dq backend.DataQuery, q Query) (data.Frames, error) {
	evs, err := d.autoscaleEvents(ctx, dq, q, q.Events)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.After(evs[j].Time) })
	n := len(evs)
	var (
		ts                                       = make([]time.Time, n)
		tenant, target, event, id, mode, term    = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		current, ready, recommended, replicas    = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		outcome, errs, firing, explanation, expl = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		rate, latency                            = make([]*float64, n), make([]*float64, n)
		slo                                      = make([]string, n)
	)
	for i, e := range evs {
		ts[i] = e.Time
		tenant[i], target[i], event[i], id[i], mode[i], term[i] = e.Tenant, e.Target, e.Kind, e.ActionID, string(e.Mode), e.Term
		current[i], ready[i], recommended[i], replicas[i] = int64(e.Current), int64(e.Ready), int64(e.Recommended), int64(e.Replicas)
		outcome[i], errs[i], firing[i] = e.Outcome, e.Error, strings.Join(e.FiringAlerts, ", ")
		rate[i], latency[i] = finite(float64(e.ObservedRate)), finite(float64(e.ObservedLatency))
		slo[i] = map[int8]string{1: "met", 0: "missed"}[e.SLOMet]
		explanation[i], expl[i] = Explain(e), e.Explanation
	}
	f := data.NewFrame("autoscale actions",
		data.NewField("time", nil, ts),
		data.NewField("bureau", nil, tenant),
		data.NewField("target", nil, target),
		data.NewField("event", nil, event),
		data.NewField("mode", nil, mode),
		data.NewField("current", nil, current),
		data.NewField("ready", nil, ready),
		data.NewField("recommended", nil, recommended),
		data.NewField("replicas", nil, replicas),
		data.NewField("outcome", nil, outcome),
		data.NewField("error", nil, errs),
		data.NewField("term", nil, term),
		data.NewField("explanation", nil, explanation),
		data.NewField("observed rate", nil, rate),
		data.NewField("observed p99 latency", nil, latency),
		data.NewField("slo", nil, slo),
		data.NewField("firing alerts", nil, firing),
		data.NewField("action id", nil, id),
		data.NewField("explanation json", nil, expl),
	).SetMeta(&data.FrameMeta{Type: data.FrameTypeTable, PreferredVisualization: data.VisTypeTable})
	f.Fields[13].Config = &data.FieldConfig{Unit: "reqps"}
	f.Fields[14].Config = &data.FieldConfig{Unit: "s"}
	return data.Frames{f}, nil
}

// autoscaleAnnotations is one annotation per scaling action, spanning
// from the action to its outcome (warm-up plus a sync later), titled with
// the change and explained in the text.
func (d *Datasource) autoscaleAnnotations(ctx context.Context, dq backend.DataQuery, q Query) (data.Frames, error) {
	evs, err := d.autoscaleEvents(ctx, dq, q, "action,outcome")
	if err != nil {
		return nil, err
	}
	outcomes := map[string]autoscale.Event{}
	for _, e := range evs {
		if e.Kind == autoscale.EventOutcome && e.ActionID != "" {
			outcomes[e.ActionID] = e
		}
	}
	var (
		ts, te            []time.Time
		title, text, tags []string
	)
	for _, e := range evs {
		if e.Kind != autoscale.EventAction {
			continue
		}
		end, body := e.Time, []string{Explain(e)}
		if o, ok := outcomes[e.ActionID]; ok && e.ActionID != "" {
			end = o.Time
			body = append(body, fmt.Sprintf("outcome: %d ready, %s", o.Ready, strings.ReplaceAll(o.Outcome, "_", " ")))
		}
		if e.Error != "" {
			body = append(body, "error: "+e.Error)
		}
		res := e.Outcome
		if res == "" {
			res = "pending"
		}
		ts, te = append(ts, e.Time), append(te, end)
		title = append(title, fmt.Sprintf("%s: %d → %d replicas (%s)", e.Target, e.Current, e.Replicas, strings.ReplaceAll(res, "_", " ")))
		text = append(text, strings.Join(body, "\n"))
		tags = append(tags, strings.Join([]string{e.Tenant, e.Target, "autoscale", string(e.Mode), e.Term}, ","))
	}
	return data.Frames{annotationFrame("autoscale annotations", ts, te, title, text, tags)}, nil
}

// Explain renders an event's decision explanation in one line, e.g.
// "forecast decided 4 replicas: forecast peak 120 req/s (holt_winters,
// MAPE 8%, trusted) needs 4; observed 50 req/s needs 2; 40 req/s per
// replica (learned) at 70% utilization; bounds max=10". An event without
// an explanation (outcomes) gives "".
func Explain(e autoscale.Event) string {
	if e.Explanation == "" {
		return ""
	}
	var x autoscale.Explanation
	if err := json.Unmarshal([]byte(e.Explanation), &x); err != nil {
		return "explanation unreadable: " + err.Error()
	}
	parts := []string{fmt.Sprintf("%s decided %d replicas", orDash(x.Term), e.Recommended)}
	if f := x.Forecast; f != nil {
		switch {
		case f.Ignored != "":
			parts = append(parts, "forecast ignored: "+f.Ignored)
		default:
			trust := "untrusted"
			if f.Trusted {
				trust = "trusted"
			}
			s := fmt.Sprintf("forecast peak %s req/s (%s, MAPE %s, %s", num(float64(f.Peak)), f.Model, pct(float64(f.MAPE)), trust)
			if f.Bound == "upper" {
				s += fmt.Sprintf(", sized for upper bound %s", num(float64(f.PeakUpper)))
			}
			parts = append(parts, s+fmt.Sprintf(") needs %d", x.ForecastReplicas))
		}
	} else if x.Signal == "" {
		parts = append(parts, "no forecast signal")
	} else {
		parts = append(parts, fmt.Sprintf("no forecast of %s", x.Signal))
	}
	parts = append(parts, fmt.Sprintf("observed %s req/s needs %d", num(float64(x.ObservedRate)), x.ReactiveFloor))
	learned := "default"
	if x.CapacityLearned {
		learned = "learned"
	}
	parts = append(parts, fmt.Sprintf("%s req/s per replica (%s) at %s utilization", num(float64(x.CapacityPerReplica)), learned, pct(float64(x.TargetUtilization))))
	if len(x.Bounds) > 0 {
		parts = append(parts, "bounds "+strings.Join(x.Bounds, ", "))
	}
	if len(x.Notes) > 0 {
		parts = append(parts, strings.Join(x.Notes, "; "))
	}
	return strings.Join(parts, "; ")
}

func finite(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return &f
}

func num(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "unknown"
	}
	return fmt.Sprintf("%.3g", f)
}

func pct(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "unknown"
	}
	return fmt.Sprintf("%.0f%%", 100*f)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
