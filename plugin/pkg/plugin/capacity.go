package plugin

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/bureauhub/bureauhub/plugin/pkg/hubclient"
)

// Capacity series expressions. The replica gauges are the hub's own
// metrics (hub/autoscale, hub/refsvc/host): they reach ClickHouse when an
// agent scrapes the hub's /metrics; max() folds the copies of several
// scrapers. The default request rate is the service's load balancer's,
// from the same scrape, so it works for every hosted service.
const (
	defaultRateExpr       = `sum(rate(bureauhub_refsvc_lb_requests_total{service=%q,outcome="proxied"}[$__rate_interval]))`
	recommendedReplicasQL = `max(bureauhub_autoscale_recommended_replicas{target=%q})`
	actualReplicasQL      = `max(bureauhub_refsvc_desired_replicas{service=%q})`
)

// Frame names of the capacity query, also the series' display names.
const (
	CapacityActual      = "requests/s"
	CapacityForecast    = "forecast"
	CapacityRecommended = "recommended replicas"
	CapacityReplicas    = "replicas"
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]+$`)

// capacity returns, for one service, the frames a capacity panel plots:
// the observed request rate, the newest forecast of its signal (with the
// prediction interval; it lies in the future, so the panel's range should
// end after now), and the recommended and actual replica counts.
func (d *Datasource) capacity(ctx context.Context, dq backend.DataQuery, q Query) (data.Frames, error) {
	if !nameRE.MatchString(q.Service) {
		return nil, badQuery("capacity: choose a service (got %q)", q.Service)
	}
	target, signal := q.Target, q.Signal
	if target == "" || signal == "" {
		// The recommendations say which signal drives the target; a hub
		// without an autoscaler (404) leaves the defaults.
		recs, _ := d.hub.Recommendations(ctx)
		if target == "" {
			target = q.Service
		}
		for _, r := range recs {
			if r.Target == target && signal == "" {
				signal = r.Signal
			}
		}
		if signal == "" {
			signal = q.Service
		}
	}
	if !nameRE.MatchString(target) || !nameRE.MatchString(signal) {
		return nil, badQuery("capacity: target %q or signal %q is not a plain name", target, signal)
	}
	rateExpr := q.RateExpr
	if strings.TrimSpace(rateExpr) == "" {
		rateExpr = fmt.Sprintf(defaultRateExpr, q.Service)
	}

	from, to := dq.TimeRange.From, dq.TimeRange.To
	step := stepFor(from, to, dq.Interval, dq.MaxDataPoints)
	var frames data.Frames
	for _, s := range []struct{ name, expr, unit string }{
		{CapacityActual, rateExpr, "reqps"},
		{CapacityRecommended, fmt.Sprintf(recommendedReplicasQL, target), "none"},
		{CapacityReplicas, fmt.Sprintf(actualReplicasQL, q.Service), "none"},
	} {
		expr := interpolate(s.expr, step, to.Sub(from))
		series, err := d.hub.QueryRange(ctx, expr, from, to, step)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		if len(series) > 1 {
			return nil, badQuery("%s: %q returned %d series; aggregate it to one (e.g. sum(...))", s.name, expr, len(series))
		}
		frames = append(frames, singleSeriesFrame(s.name, s.unit, expr, series))
	}
	fc, err := d.forecastFrame(ctx, signal)
	if err != nil {
		return nil, err
	}
	return append(frames, fc), nil
}

// singleSeriesFrame is a named time series frame, empty when the query
// found nothing.
func singleSeriesFrame(name, unit, executed string, series []hubclient.Series) *data.Frame {
	var ts []time.Time
	var vs []float64
	if len(series) == 1 {
		for _, p := range series[0].Samples {
			ts = append(ts, p.T)
			vs = append(vs, p.V)
		}
	}
	if ts == nil {
		ts, vs = []time.Time{}, []float64{}
	}
	val := data.NewField(data.TimeSeriesValueFieldName, nil, vs)
	val.Config = &data.FieldConfig{DisplayNameFromDS: name, Unit: unit}
	return data.NewFrame(name, data.NewField(data.TimeSeriesTimeFieldName, nil, ts), val).
		SetMeta(&data.FrameMeta{Type: data.FrameTypeTimeSeriesMulti, TypeVersion: data.FrameTypeVersion{0, 1}, ExecutedQueryString: executed})
}

// forecastFrame is the newest forecast of signal as a wide frame: time,
// forecast, lower and upper bound. No forecast (none fitted yet, or the
// token may not read it) is an empty frame with a notice.
func (d *Datasource) forecastFrame(ctx context.Context, signal string) (*data.Frame, error) {
	fcs, err := d.hub.Forecasts(ctx, signal)
	if err != nil {
		return nil, fmt.Errorf("forecast: %w", err)
	}
	var ts []time.Time
	var vs, lo, hi []float64
	meta := &data.FrameMeta{Type: data.FrameTypeTimeSeriesWide, TypeVersion: data.FrameTypeVersion{0, 1},
		ExecutedQueryString: "GET /api/v1/forecasts?signal=" + signal}
	if len(fcs) == 0 {
		meta.Notices = []data.Notice{{Severity: data.NoticeSeverityInfo, Text: fmt.Sprintf("no forecast for signal %q (not fitted yet, or not readable with this token)", signal)}}
	} else {
		fc := fcs[0]
		step := time.Duration(fc.StepSeconds * float64(time.Second))
		for i, v := range fc.Values {
			ts = append(ts, fc.Start.Add(time.Duration(i)*step))
			vs = append(vs, v)
			lo = append(lo, at(fc.Lower, i, v))
			hi = append(hi, at(fc.Upper, i, v))
		}
		meta.Custom = map[string]any{"model": fc.Model, "reason": fc.Reason, "made": fc.Made, "mape": fc.MAPE}
	}
	if ts == nil {
		ts, vs, lo, hi = []time.Time{}, []float64{}, []float64{}, []float64{}
	}
	field := func(name string, v []float64) *data.Field {
		f := data.NewField(name, nil, v)
		f.Config = &data.FieldConfig{DisplayNameFromDS: name, Unit: "reqps"}
		return f
	}
	return data.NewFrame(CapacityForecast,
		data.NewField(data.TimeSeriesTimeFieldName, nil, ts),
		field(CapacityForecast, vs), field(CapacityForecast+" lower", lo), field(CapacityForecast+" upper", hi),
	).SetMeta(meta), nil
}

func at(v []float64, i int, def float64) float64 {
	if i < len(v) {
		return v[i]
	}
	return def
}
