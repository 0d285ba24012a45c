package alerting

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/alertmanager/pkg/labels"

	"github.com/bureauhub/bureauhub/alerting/history"
	"github.com/bureauhub/bureauhub/hub/auth"
	"github.com/bureauhub/bureauhub/hub/query"
)

// maxBody bounds a posted alerts or silence body.
const maxBody = 16 << 20

// Handler serves, for callers with a hub token (Bearer, or basic auth's
// password, as query.Authenticate reads it):
//
//   - Alertmanager's v2 API: GET and POST /api/v2/alerts, GET and POST
//     /api/v2/silences, GET and DELETE /api/v2/silence/{id}, GET
//     /api/v2/status and /api/v2/receivers, with Alertmanager's JSON
//     (api/v2/models) and semantics, so a Prometheus can send to it
//     unchanged (alerts/groups is not served);
//   - GET /api/v1/alerts/history, the ClickHouse alert history.
//
// A bureau token sees, posts and silences only its own tenant's alerts: its
// alert listings are filtered on bureau="<tenant>", the alerts it posts get
// that label, the silences it creates get that matcher, and it can list,
// read, update or expire only silences carrying that matcher. A cross_bureau
// token sees everything. Mount the handler at the root of the hub's mux
// (or strip a prefix first).
func (a *Alerting) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/alerts/history", a.serveHistory)
	mux.HandleFunc("GET /api/v2/status", a.running(a.getStatus))
	mux.HandleFunc("GET /api/v2/receivers", a.running(a.getReceivers))
	mux.HandleFunc("GET /api/v2/alerts", a.running(a.getAlerts))
	mux.HandleFunc("POST /api/v2/alerts", a.running(a.postAlerts))
	mux.HandleFunc("GET /api/v2/silences", a.running(a.getSilences))
	mux.HandleFunc("POST /api/v2/silences", a.running(a.postSilences))
	mux.HandleFunc("GET /api/v2/silence/{id}", a.running(a.getSilence))
	mux.HandleFunc("DELETE /api/v2/silence/{id}", a.running(a.deleteSilence))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := query.Authenticate(a.authn, r)
		if err != nil {
			writeJSONError(w, http.StatusUnauthorized, err.Error())
			return
		}
		mux.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	})
}

// ownMatcher selects a tenant's alerts and silences.
func ownMatcher(tenant string) *labels.Matcher {
	m, _ := labels.NewMatcher(labels.MatchEqual, TenantLabel, tenant)
	return m
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, "read body: "+err.Error())
		return false
	}
	if len(body) > maxBody {
		writeJSONError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", maxBody))
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		writeJSONError(w, http.StatusBadRequest, "parse body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeJSONError answers in the shape of Alertmanager's API errors.
func writeJSONError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg})
}

// serveHistory answers GET /api/v1/alerts/history?tenant=&match[]=&start=&end=&limit=
// with {"status":"success","data":[rows]}. start and end are RFC 3339 or
// Unix seconds; end defaults to now and start to a day before end. A bureau
// token reads only its own tenant; a cross_bureau token reads the tenant
// asked for, or all.
func (a *Alerting) serveHistory(w http.ResponseWriter, r *http.Request) {
	if a.hist == nil {
		writePromError(w, http.StatusNotFound, "unavailable", "alert history is not configured")
		return
	}
	p, _ := auth.FromContext(r.Context())
	if err := r.ParseForm(); err != nil {
		writePromError(w, http.StatusBadRequest, "bad_data", err.Error())
		return
	}
	q := history.Query{Tenant: r.Form.Get("tenant")}
	if !p.CanReadAll() {
		if q.Tenant != "" && q.Tenant != p.Tenant {
			writePromError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("tenant %s may not read tenant %s", p.Tenant, q.Tenant))
			return
		}
		q.Tenant = p.Tenant
	}
	var err error
	q.End = time.Now()
	if v := r.Form.Get("end"); v != "" {
		if q.End, err = parseTime(v); err != nil {
			writePromError(w, http.StatusBadRequest, "bad_data", "end: "+err.Error())
			return
		}
	}
	q.Start = q.End.Add(-24 * time.Hour)
	if v := r.Form.Get("start"); v != "" {
		if q.Start, err = parseTime(v); err != nil {
			writePromError(w, http.StatusBadRequest, "bad_data", "start: "+err.Error())
			return
		}
	}
	if q.End.Before(q.Start) {
		writePromError(w, http.StatusBadRequest, "bad_data", "end is before start")
		return
	}
	for _, s := range r.Form["match[]"] {
		ms, err := labels.ParseMatchers(s)
		if err != nil {
			writePromError(w, http.StatusBadRequest, "bad_data", fmt.Sprintf("match[] %q: %v", s, err))
			return
		}
		q.Matchers = append(q.Matchers, ms)
	}
	if v := r.Form.Get("limit"); v != "" {
		if q.Limit, err = strconv.Atoi(v); err != nil || q.Limit < 0 {
			writePromError(w, http.StatusBadRequest, "bad_data", "limit: must be a non-negative integer")
			return
		}
	}
	rows, err := a.hist.Query(r.Context(), q)
	if err != nil {
		a.logger.Error("query alert history", "err", err)
		writePromError(w, http.StatusInternalServerError, "internal", "query alert history failed")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": rows})
}

func parseTime(s string) (time.Time, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)), nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

func writePromError(w http.ResponseWriter, code int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "error", "errorType": typ, "error": msg})
}
