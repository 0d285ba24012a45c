package plugin

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/bureauhub/bureauhub/plugin/pkg/hubclient"
)

// promQL runs a PromQL query as the token, narrowed to the chosen
// bureaus, and returns one frame per series.
func (d *Datasource) promQL(ctx context.Context, dq backend.DataQuery, q Query) (data.Frames, error) {
	if strings.TrimSpace(q.Expr) == "" {
		return nil, badQuery("promql: the expression is empty")
	}
	from, to := dq.TimeRange.From, dq.TimeRange.To
	step := stepFor(from, to, dq.Interval, dq.MaxDataPoints)
	expr, err := RestrictToBureaus(interpolate(q.Expr, step, to.Sub(from)), q.Bureaus)
	if err != nil {
		return nil, badQuery("%v", err)
	}
	var series []hubclient.Series
	if q.Instant {
		series, err = d.hub.Query(ctx, expr, to)
	} else {
		series, err = d.hub.QueryRange(ctx, expr, from, to, step)
	}
	if err != nil {
		return nil, err
	}
	frames := seriesFrames(series, q.LegendFormat, expr)
	if len(frames) == 0 {
		// An empty frame carrying the executed query tells the user what
		// ran (Grafana's query inspector shows it).
		frames = data.Frames{data.NewFrame("").SetMeta(&data.FrameMeta{
			Type: data.FrameTypeTimeSeriesMulti, TypeVersion: data.FrameTypeVersion{0, 1}, ExecutedQueryString: expr,
		})}
	}
	return frames, nil
}

// seriesFrames turns query results into frames of the time series multi
// format: one frame per series, a time field and a value field carrying
// the series' labels.
func seriesFrames(series []hubclient.Series, legendFormat, executed string) data.Frames {
	sort.Slice(series, func(i, j int) bool { return labelString(series[i].Labels) < labelString(series[j].Labels) })
	frames := make(data.Frames, 0, len(series))
	for _, s := range series {
		ts := make([]time.Time, len(s.Samples))
		vs := make([]float64, len(s.Samples))
		for i, p := range s.Samples {
			ts[i], vs[i] = p.T, p.V
		}
		ls := data.Labels{}
		for k, v := range s.Labels {
			if k != "__name__" {
				ls[k] = v
			}
		}
		name := legend(legendFormat, s.Labels)
		val := data.NewField(data.TimeSeriesValueFieldName, ls, vs)
		val.Config = &data.FieldConfig{DisplayNameFromDS: name}
		frames = append(frames, data.NewFrame(name, data.NewField(data.TimeSeriesTimeFieldName, nil, ts), val).
			SetMeta(&data.FrameMeta{Type: data.FrameTypeTimeSeriesMulti, TypeVersion: data.FrameTypeVersion{0, 1}, ExecutedQueryString: executed}))
	}
	return frames
}
