package plugin

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/prometheus/common/model"

	"github.com/bureauhub/bureauhub/alerting/history"
	"github.com/bureauhub/bureauhub/plugin/pkg/hubclient"
)

// alertRows reads the history for the query's range and bureaus. The
// hub's tenant parameter takes one bureau, so several are filtered here.
func (d *Datasource) alertRows(ctx context.Context, dq backend.DataQuery, q Query) ([]history.Record, error) {
	hq := hubclient.HistoryQuery{Match: q.Matchers, Start: dq.TimeRange.From, End: dq.TimeRange.To}
	if len(q.Bureaus) == 1 {
		hq.Tenant = q.Bureaus[0]
	}
	rows, err := d.hub.AlertHistory(ctx, hq)
	if err != nil {
		return nil, err
	}
	return filterTenants(rows, q.Bureaus, func(r history.Record) string { return r.Tenant }), nil
}

func filterTenants[T any](rows []T, bureaus []string, tenant func(T) string) []T {
	if len(bureaus) < 2 {
		return rows
	}
	keep := map[string]bool{}
	for _, b := range bureaus {
		keep[b] = true
	}
	out := rows[:0]
	for _, r := range rows {
		if keep[tenant(r)] {
			out = append(out, r)
		}
	}
	return out
}

// alertHistory is the history as one table, newest first.
func (d *Datasource) alertHistory(ctx context.Context, dq backend.DataQuery, q Query) (data.Frames, error) {
	rows, err := d.alertRows(ctx, dq, q)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Time.After(rows[j].Time) })
	n := len(rows)
	var (
		ts, starts             = make([]time.Time, n), make([]time.Time, n)
		ends                   = make([]*time.Time, n)
		tenant, event, name    = make([]string, n), make([]string, n), make([]string, n)
		status, severity, summ = make([]string, n), make([]string, n), make([]string, n)
		lbls, fp, recv, integ  = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		success                = make([]*bool, n)
		errs, suppressed       = make([]string, n), make([]string, n)
	)
	for i, r := range rows {
		ts[i], starts[i] = r.Time, r.StartsAt
		if !r.EndsAt.IsZero() && r.Status == "resolved" {
			e := r.EndsAt
			ends[i] = &e
		}
		tenant[i], event[i], name[i] = r.Tenant, string(r.Event), string(r.Labels[model.AlertNameLabel])
		status[i], severity[i], summ[i] = r.Status, string(r.Labels["severity"]), summary(r.Annotations)
		lbls[i], fp[i], recv[i], integ[i] = r.Labels.String(), r.Fingerprint, r.Receiver, r.Integration
		if r.Event == history.EventNotification {
			s := r.Success
			success[i] = &s
		}
		errs[i], suppressed[i] = r.Error, strings.Join(r.SuppressedBy, ", ")
	}
	f := data.NewFrame("alert history",
		data.NewField("time", nil, ts),
		data.NewField("bureau", nil, tenant),
		data.NewField("event", nil, event),
		data.NewField("alertname", nil, name),
		data.NewField("status", nil, status),
		data.NewField("severity", nil, severity),
		data.NewField("summary", nil, summ),
		data.NewField("labels", nil, lbls),
		data.NewField("startsAt", nil, starts),
		data.NewField("endsAt", nil, ends),
		data.NewField("receiver", nil, recv),
		data.NewField("integration", nil, integ),
		data.NewField("success", nil, success),
		data.NewField("error", nil, errs),
		data.NewField("suppressedBy", nil, suppressed),
		data.NewField("fingerprint", nil, fp),
	).SetMeta(&data.FrameMeta{Type: data.FrameTypeTable, PreferredVisualization: data.VisTypeTable})
	return data.Frames{f}, nil
}

// summary is the annotation a human reads first.
func summary(a model.LabelSet) string {
	for _, k := range []model.LabelName{"summary", "description", "message"} {
		if v := a[k]; v != "" {
			return string(v)
		}
	}
	return ""
}

// episode is one alert from firing to resolved, as one annotation.
type episode struct {
	first, last history.Record
	resolved    *time.Time
	changes     []string
}

// alertAnnotations turns the state changes into one region annotation
// per alert episode: from when it started firing to when it resolved (a
// point while it still fires), with the changes in between in the text.
// Notification rows are left out: they are deliveries, not states.
func (d *Datasource) alertAnnotations(ctx context.Context, dq backend.DataQuery, q Query) (data.Frames, error) {
	rows, err := d.alertRows(ctx, dq, q)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Time.Before(rows[j].Time) })
	byKey := map[string]*episode{}
	var order []string
	for _, r := range rows {
		if r.Event == history.EventNotification {
			continue
		}
		key := r.Tenant + "/" + r.Fingerprint + "/" + r.StartsAt.Format(time.RFC3339Nano)
		ep, ok := byKey[key]
		if !ok {
			ep = &episode{first: r}
			byKey[key] = ep
			order = append(order, key)
		}
		ep.last = r
		ep.changes = append(ep.changes, fmt.Sprintf("%s %s", r.Time.UTC().Format("15:04:05"), r.Event))
		if r.Event == history.EventResolved {
			end := r.EndsAt
			if end.IsZero() || end.Before(r.StartsAt) {
				end = r.Time
			}
			ep.resolved = &end
		}
	}
	var (
		ts, te            []time.Time
		title, text, tags []string
	)
	for _, k := range order {
		ep := byKey[k]
		start := ep.first.StartsAt
		if start.IsZero() {
			start = ep.first.Time
		}
		end := start
		state := "firing"
		if ep.resolved != nil {
			end, state = *ep.resolved, "resolved"
		}
		name := string(ep.last.Labels[model.AlertNameLabel])
		ts, te = append(ts, start), append(te, end)
		title = append(title, fmt.Sprintf("%s %s (%s)", name, state, ep.last.Tenant))
		body := []string{}
		if s := summary(ep.last.Annotations); s != "" {
			body = append(body, s)
		}
		body = append(body, ep.last.Labels.String(), strings.Join(ep.changes, "; "))
		text = append(text, strings.Join(body, "\n"))
		tg := []string{ep.last.Tenant, name, state}
		if sev := ep.last.Labels["severity"]; sev != "" {
			tg = append(tg, string(sev))
		}
		tags = append(tags, strings.Join(tg, ","))
	}
	return data.Frames{annotationFrame("alert annotations", ts, te, title, text, tags)}, nil
}

// annotationFrame has the fields Grafana maps to annotations from a data
// source query: time, timeEnd, title, text and tags (comma-separated).
func annotationFrame(name string, ts, te []time.Time, title, text, tags []string) *data.Frame {
	if ts == nil {
		ts, te, title, text, tags = []time.Time{}, []time.Time{}, []string{}, []string{}, []string{}
	}
	return data.NewFrame(name,
		data.NewField("time", nil, ts),
		data.NewField("timeEnd", nil, te),
		data.NewField("title", nil, title),
		data.NewField("text", nil, text),
		data.NewField("tags", nil, tags),
	).SetMeta(&data.FrameMeta{Type: data.FrameTypeTable})
}
