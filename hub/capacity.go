package hub

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/prometheus/prometheus/promql"

	"github.com/bureauhub/bureauhub/hub/auth"
	"github.com/bureauhub/bureauhub/hub/autoscale"
	"github.com/bureauhub/bureauhub/hub/forecast"
	"github.com/bureauhub/bureauhub/hub/query"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
)

// scope is tenant's view of the data, as its rules see it: its own
// data, or everyone's for a cross-bureau tenant.
func (h *Hub) scope(tenant string) clickhouse.Scope {
	for _, t := range h.cfg.Tenants {
		if t.Name == tenant {
			return clickhouse.Scope{Tenants: []string{tenant}, All: t.Role == auth.RoleCrossBureau}
		}
	}
	return clickhouse.Scope{Tenants: []string{tenant}}
}

// rangeQuery runs expr for tenant over [start, end] and returns the one
// series it must produce on a regular grid (NaN where it has no point);
// it is the forecaster's view of history.
func (h *Hub) rangeQuery(ctx context.Context, tenant, expr string, start, end time.Time, step time.Duration) (forecast.Series, error) {
	q, err := h.api.Engine().NewRangeQuery(ctx, h.store.Queryable(h.scope(tenant), clickhouse.Limits{}), nil, expr, start, end, step)
	if err != nil {
		return forecast.Series{}, fmt.Errorf("parse %q: %w", expr, err)
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return forecast.Series{}, fmt.Errorf("query %q: %w", expr, res.Err)
	}
	n := int(end.Sub(start)/step) + 1
	s := forecast.Series{Start: start, Step: step, Values: make([]float64, n)}
	for i := range s.Values {
		s.Values[i] = math.NaN()
	}
	m, err := res.Matrix()
	if err != nil {
		return forecast.Series{}, fmt.Errorf("query %q: %w", expr, err)
	}
	if len(m) > 1 {
		return forecast.Series{}, fmt.Errorf("query %q returned %d series; aggregate it to one (e.g. sum(...))", expr, len(m))
	}
	for _, sr := range m {
		for _, p := range sr.Floats {
			i := int((p.T - start.UnixMilli()) / step.Milliseconds())
			if i >= 0 && i < n {
				s.Values[i] = p.F
			}
		}
	}
	return s, nil
}

// instantQuery runs expr for tenant at t and returns its one value (NaN
// when the result is empty); the autoscaler's observations.
func (h *Hub) instantQuery(ctx context.Context, tenant, expr string, t time.Time) (float64, error) {
	q, err := h.api.Engine().NewInstantQuery(ctx, h.store.Queryable(h.scope(tenant), clickhouse.Limits{}), nil, expr, t)
	if err != nil {
		return math.NaN(), fmt.Errorf("parse %q: %w", expr, err)
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return math.NaN(), fmt.Errorf("query %q: %w", expr, res.Err)
	}
	switch v := res.Value.(type) {
	case promql.Scalar:
		return v.V, nil
	case promql.Vector:
		switch len(v) {
		case 0:
			return math.NaN(), nil
		case 1:
			return v[0].F, nil
		}
		return math.NaN(), fmt.Errorf("query %q returned %d series; aggregate it to one", expr, len(v))
	}
	return math.NaN(), fmt.Errorf("query %q returned a %s, want a vector or scalar", expr, res.Value.Type())
}

// forecastOf is the autoscaler's view of the forecaster.
func (h *Hub) forecastOf(tenant, signal string) (forecast.Forecast, bool) {
	if h.forecaster == nil {
		return forecast.Forecast{}, false
	}
	f, ok := h.forecaster.Latest(signal)
	if !ok || f.Tenant != tenant {
		return forecast.Forecast{}, false
	}
	return f, true
}

// mountCapacity serves the forecasts, recommendations and autoscale
// actions, each filtered to what the token may read.
func (h *Hub) mountCapacity(mux *http.ServeMux) {
	if h.forecaster != nil {
		fh := h.forecaster.Handler(func(r *http.Request, tenant string) bool {
			p, err := query.Authenticate(h.authn, r)
			return err == nil && (p.CanReadAll() || p.Tenant == tenant)
		})
		mux.HandleFunc("/api/v1/forecasts", func(w http.ResponseWriter, r *http.Request) {
			if _, err := query.Authenticate(h.authn, r); err != nil {
				http.Error(w, `{"status":"error","errorType":"unauthorized","error":"a valid bearer token is required"}`, http.StatusUnauthorized)
				return
			}
			fh.ServeHTTP(w, r)
		})
	}
	if h.autoscaler != nil {
		api := h.autoscaler.Handler(func(r *http.Request) (func(string) bool, error) {
			p, err := query.Authenticate(h.authn, r)
			if err != nil {
				return nil, err
			}
			return func(t string) bool { return p.CanReadAll() || p.Tenant == t }, nil
		})
		mux.Handle(autoscale.RecommendationsPath, api)
		mux.Handle(autoscale.ActionsPath, api)
	}
}
