// Package plugin is the bureauhub hub's Grafana data source backend: it
// answers Grafana's data, health and resource calls by querying the hub's
// HTTP API as the data source's bureau token.
package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/instancemgmt"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/bureauhub/bureauhub/plugin/pkg/hubclient"
)

// ID is the plugin's id in plugin.json.
const ID = "bureauhub-hub-datasource"

// Compile-time checks that Datasource serves what Grafana calls.
var (
	_ backend.QueryDataHandler      = (*Datasource)(nil)
	_ backend.CheckHealthHandler    = (*Datasource)(nil)
	_ backend.CallResourceHandler   = (*Datasource)(nil)
	_ instancemgmt.InstanceDisposer = (*Datasource)(nil)
)

// Datasource is one configured data source instance. Grafana builds one
// per data source (and rebuilds it when its settings change) through
// NewDatasource; its methods are safe for concurrent use.
type Datasource struct {
	// hub is nil when the settings are invalid; settingsErr says why, and
	// every call answers with it.
	hub         *hubclient.Client
	settingsErr error
}

// NewDatasource is the instance factory datasource.Manage calls. Invalid
// settings do not fail it, so that the health check can tell the user
// what to fix.
func NewDatasource(_ context.Context, s backend.DataSourceInstanceSettings) (instancemgmt.Instance, error) {
	settings, err := LoadSettings(s)
	if err == nil {
		err = settings.Validate()
	}
	ds := &Datasource{settingsErr: err}
	if err == nil {
		ds.hub, ds.settingsErr = hubclient.New(settings.URL, settings.Token, nil)
	}
	return ds, nil
}

// Dispose is called when Grafana replaces the instance.
func (d *Datasource) Dispose() {}

// QueryData runs each query of the request; one query's failure is its
// own response's error, never the others'.
func (d *Datasource) QueryData(ctx context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
	resp := backend.NewQueryDataResponse()
	for _, q := range req.Queries {
		resp.Responses[q.RefID] = d.query(ctx, q)
	}
	return resp, nil
}

func (d *Datasource) query(ctx context.Context, dq backend.DataQuery) backend.DataResponse {
	if d.settingsErr != nil {
		return backend.ErrDataResponseWithSource(backend.StatusBadRequest, backend.ErrorSourceDownstream, "data source settings: "+d.settingsErr.Error())
	}
	q, err := parseQuery(dq.JSON)
	if err != nil {
		return backend.ErrDataResponse(backend.StatusBadRequest, err.Error())
	}
	var frames data.Frames
	switch dq.QueryType {
	case QueryTypePromQL, "":
		frames, err = d.promQL(ctx, dq, q)
	case QueryTypeCapacity:
		frames, err = d.capacity(ctx, dq, q)
	case QueryTypeAlertHistory:
		frames, err = d.alertHistory(ctx, dq, q)
	case QueryTypeAlertAnnotations:
		frames, err = d.alertAnnotations(ctx, dq, q)
	case QueryTypeAutoscaleActions:
		frames, err = d.autoscaleActions(ctx, dq, q)
	case QueryTypeAutoscaleAnnotations:
		frames, err = d.autoscaleAnnotations(ctx, dq, q)
	default:
		return backend.ErrDataResponse(backend.StatusBadRequest, fmt.Sprintf("unknown query type %q", dq.QueryType))
	}
	if err != nil {
		return errorResponse(err)
	}
	return backend.DataResponse{Frames: frames}
}

// errorResponse maps the hub's answers to Grafana's statuses: a query the
// hub refuses is the user's to fix, an unreachable hub is downstream.
func errorResponse(err error) backend.DataResponse {
	var ae *hubclient.APIError
	var ue *hubclient.UnreachableError
	var qe *queryError
	switch {
	case errors.As(err, &qe):
		return backend.ErrDataResponse(backend.StatusBadRequest, err.Error())
	case errors.As(err, &ae):
		status := backend.Status(ae.Status)
		src := backend.ErrorSourceDownstream
		return backend.ErrDataResponseWithSource(status, src, err.Error())
	case errors.As(err, &ue):
		return backend.ErrDataResponseWithSource(backend.StatusBadGateway, backend.ErrorSourceDownstream, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return backend.ErrDataResponseWithSource(backend.StatusTimeout, backend.ErrorSourceDownstream, err.Error())
	}
	return backend.ErrDataResponse(backend.StatusInternal, err.Error())
}

// queryError is a query the user must change.
type queryError struct{ msg string }

func (e *queryError) Error() string { return e.msg }

func badQuery(format string, args ...any) error { return &queryError{fmt.Sprintf(format, args...)} }

// CallResource serves the query editor's pickers:
//
//	GET bureaus   the values of the bureau label the token sees
//	GET services  the hosted services the token sees, with their
//	              autoscale targets and forecast signals
func (d *Datasource) CallResource(ctx context.Context, req *backend.CallResourceRequest, sender backend.CallResourceResponseSender) error {
	if d.settingsErr != nil {
		return sendJSON(sender, http.StatusBadRequest, map[string]string{"error": "data source settings: " + d.settingsErr.Error()})
	}
	var (
		body any
		err  error
	)
	switch req.Path {
	case "bureaus":
		var vs []string
		vs, err = d.hub.LabelValues(ctx, BureauLabel, time.Time{}, time.Time{})
		if vs == nil {
			vs = []string{}
		}
		body = vs
	case "services":
		body, err = d.serviceOptions(ctx)
	default:
		return sendJSON(sender, http.StatusNotFound, map[string]string{"error": "unknown resource " + url.PathEscape(req.Path)})
	}
	if err != nil {
		status := http.StatusBadGateway
		var ae *hubclient.APIError
		if errors.As(err, &ae) {
			status = ae.Status
		}
		return sendJSON(sender, status, map[string]string{"error": err.Error()})
	}
	return sendJSON(sender, http.StatusOK, body)
}

// ServiceOption is one entry of the service picker.
type ServiceOption struct {
	Name   string `json:"name"`
	Tenant string `json:"tenant"`
	// Target and Signal are the autoscale target managing the service and
	// its forecast signal, when the hub has them.
	Target string `json:"target,omitempty"`
	Signal string `json:"signal,omitempty"`
}

func (d *Datasource) serviceOptions(ctx context.Context) ([]ServiceOption, error) {
	svcs, err := d.hub.Services(ctx)
	if err != nil {
		return nil, err
	}
	// A hub without an autoscaler answers 404 here: the picker still works.
	recs, _ := d.hub.Recommendations(ctx)
	out := make([]ServiceOption, 0, len(svcs))
	for _, s := range svcs {
		o := ServiceOption{Name: s.Name, Tenant: s.Tenant}
		for _, r := range recs {
			if r.Target == s.Name && r.Tenant == s.Tenant {
				o.Target, o.Signal = r.Target, r.Signal
			}
		}
		out = append(out, o)
	}
	return out, nil
}

func sendJSON(sender backend.CallResourceResponseSender, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return sender.Send(&backend.CallResourceResponse{
		Status:  status,
		Headers: map[string][]string{"Content-Type": {"application/json"}},
		Body:    b,
	})
}
