package autoscale

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// API paths served by Handler.
const (
	RecommendationsPath = "/api/v1/recommendations"
	ActionsPath         = "/api/v1/autoscale/actions"
)

// Authorizer authenticates a request and returns which tenants its caller
// may read; an error answers 401. The hub builds it from its tokens.
type Authorizer func(r *http.Request) (allowed func(tenant string) bool, err error)

// Handler serves GET /api/v1/recommendations?tenant= and GET
// /api/v1/autoscale/actions?tenant=&target=&event=&start=&end=&limit= in
// the Prometheus API's JSON envelope. A nil authz allows every tenant.
//
// Actions lists action and outcome events by default; event=decision (or
// a comma-separated list, or "all") selects others. start and end are
// RFC 3339 or Unix seconds; the default is the last hour.
func (a *Autoscaler) Handler(authz Authorizer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(RecommendationsPath, func(w http.ResponseWriter, r *http.Request) {
		allowed, ok := a.authorize(w, r, authz)
		if !ok {
			return
		}
		writeData(w, a.Recommendations(allowed))
	})
	mux.HandleFunc(ActionsPath, func(w http.ResponseWriter, r *http.Request) {
		allowed, ok := a.authorize(w, r, authz)
		if !ok {
			return
		}
		if a.audit == nil {
			writeError(w, http.StatusServiceUnavailable, "unavailable", "the autoscaler keeps no audit trail (no ClickHouse connection)")
			return
		}
		q, err := a.parseActions(r, allowed)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_data", err.Error())
			return
		}
		events, err := a.audit.Events(r.Context(), q)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "internal", err.Error())
			return
		}
		writeData(w, events)
	})
	return mux
}

// authorize checks the method and the caller and narrows the tenants to
// the tenant parameter.
func (a *Autoscaler) authorize(w http.ResponseWriter, r *http.Request, authz Authorizer) (func(string) bool, bool) {
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, "bad_data", "GET only")
		return nil, false
	}
	allowed := func(string) bool { return true }
	if authz != nil {
		var err error
		if allowed, err = authz(r); err != nil {
			writeError(w, http.StatusUnauthorized, "unauthorized", err.Error())
			return nil, false
		}
	}
	if tenant := r.URL.Query().Get("tenant"); tenant != "" {
		if !allowed(tenant) {
			writeError(w, http.StatusForbidden, "forbidden", "not allowed to read tenant "+strconv.Quote(tenant))
			return nil, false
		}
		return func(t string) bool { return t == tenant }, true
	}
	return allowed, true
}

func (a *Autoscaler) parseActions(r *http.Request, allowed func(string) bool) (EventQuery, error) {
	v := r.URL.Query()
	q := EventQuery{Target: v.Get("target"), Kinds: []string{EventAction, EventOutcome}}
	for _, t := range a.tenants() {
		if allowed(t) {
			q.Tenants = append(q.Tenants, t)
		}
	}
	switch ev := v.Get("event"); ev {
	case "":
	case "all":
		q.Kinds = nil
	default:
		q.Kinds = strings.Split(ev, ",")
	}
	now := a.clock.Now()
	var err error
	if q.End, err = parseTime(v.Get("end"), now); err != nil {
		return q, fmt.Errorf("end: %v", err)
	}
	if q.Start, err = parseTime(v.Get("start"), q.End.Add(-time.Hour)); err != nil {
		return q, fmt.Errorf("start: %v", err)
	}
	if !q.Start.Before(q.End) {
		return q, fmt.Errorf("start must be before end")
	}
	if l := v.Get("limit"); l != "" {
		if q.Limit, err = strconv.Atoi(l); err != nil || q.Limit < 1 || q.Limit > 100000 {
			return q, fmt.Errorf("limit: %q is not in [1, 100000]", l)
		}
	}
	return q, nil
}

// parseTime reads RFC 3339 or (fractional) Unix seconds, as Prometheus.
func parseTime(s string, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor Unix seconds", s)
	}
	return t, nil
}

func writeData(w http.ResponseWriter, data any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": data})
}

// writeError answers in the Prometheus API's error shape.
func writeError(w http.ResponseWriter, code int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "error", "errorType": typ, "error": msg})
}
