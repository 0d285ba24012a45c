package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/bureauhub/bureauhub/hub/auth"
)

// Authorizer turns a request into the principal making it.
type Authorizer func(r *http.Request) (auth.Principal, error)

// Handler serves the hosting API under /api/v1/services and the HTTP
// service discovery endpoint /api/v1/sd:
//
//	GET  /api/v1/services                   the services the token may see
//	GET  /api/v1/services/{name}            one service and its replicas
//	PUT  /api/v1/services/{name}/replicas   {"replicas": n}; POST works too
//	GET  /api/v1/sd[?service=name]          Prometheus http_sd target groups
//
// A bureau's token sees and scales only the services its bureau owns; a
// cross_bureau token sees all.
func (h *Host) Handler(authorize Authorizer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/services", func(w http.ResponseWriter, r *http.Request) {
		p, ok := authenticate(w, r, authorize)
		if !ok {
			return
		}
		out := []ServiceStatus{}
		for _, name := range h.order {
			if allowed(p, h.services[name].cfg.Tenant) {
				out = append(out, h.services[name].status())
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": out})
	})
	mux.HandleFunc("GET /api/v1/services/{name}", func(w http.ResponseWriter, r *http.Request) {
		s, ok := h.authorizedService(w, r, authorize)
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": s.status()})
	})
	setReplicas := func(w http.ResponseWriter, r *http.Request) {
		s, ok := h.authorizedService(w, r, authorize)
		if !ok {
			return
		}
		var body struct {
			Replicas *int `json:"replicas"`
		}
		dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			writeError(w, http.StatusBadRequest, "bad_body", fmt.Sprintf("body: want {\"replicas\": n}: %v", err))
			return
		}
		if body.Replicas == nil {
			writeError(w, http.StatusBadRequest, "bad_body", "replicas: required")
			return
		}
		if err := h.Scale(s.cfg.Name, *body.Replicas); err != nil {
			switch {
			case errors.Is(err, ErrNotOwner):
				writeError(w, http.StatusConflict, "not_owner", err.Error()+": send it to the owning hub")
			case strings.HasPrefix(err.Error(), "replicas:"):
				writeError(w, http.StatusBadRequest, "out_of_bounds", err.Error())
			default:
				writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			}
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": s.status()})
	}
	mux.HandleFunc("PUT /api/v1/services/{name}/replicas", setReplicas)
	mux.HandleFunc("POST /api/v1/services/{name}/replicas", setReplicas)
	mux.HandleFunc("GET /api/v1/sd", func(w http.ResponseWriter, r *http.Request) {
		p, ok := authenticate(w, r, authorize)
		if !ok {
			return
		}
		only := r.URL.Query().Get("service")
		if only != "" {
			s, exists := h.services[only]
			if !exists {
				writeError(w, http.StatusNotFound, "unknown_service", fmt.Sprintf("service: %q is not hosted", only))
				return
			}
			if !allowed(p, s.cfg.Tenant) {
				writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("service %q belongs to another bureau", only))
				return
			}
		}
		groups := []TargetGroup{}
		for _, name := range h.order {
			s := h.services[name]
			if (only != "" && name != only) || !allowed(p, s.cfg.Tenant) {
				continue
			}
			groups = append(groups, s.targetGroups()...)
		}
		writeJSON(w, http.StatusOK, groups)
	})
	return mux
}

// TargetGroup is one entry of Prometheus's HTTP service discovery format.
type TargetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// targetGroups lists the live (starting or ready) replicas: a starting
// replica already serves /metrics, and a draining one is about to go.
func (s *service) targetGroups() []TargetGroup {
	st := s.status()
	var out []TargetGroup
	for _, r := range st.Replicas {
		if r.State == StateDraining {
			continue
		}
		out = append(out, TargetGroup{Targets: []string{r.Address}, Labels: map[string]string{
			"service":                         s.cfg.Name,
			"replica":                         r.ID,
			"__meta_bureauhub_service_tenant": s.cfg.Tenant,
			"__meta_bureauhub_replica_state":  r.State,
		}})
	}
	return out
}

func (h *Host) authorizedService(w http.ResponseWriter, r *http.Request, authorize Authorizer) (*service, bool) {
	p, ok := authenticate(w, r, authorize)
	if !ok {
		return nil, false
	}
	name := r.PathValue("name")
	s, exists := h.services[name]
	if !exists {
		writeError(w, http.StatusNotFound, "unknown_service", fmt.Sprintf("service: %q is not hosted (hosted: %s)", name, strings.Join(h.order, ", ")))
		return nil, false
	}
	if !allowed(p, s.cfg.Tenant) {
		writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("service %q belongs to another bureau", name))
		return nil, false
	}
	return s, true
}

func allowed(p auth.Principal, tenant string) bool { return p.CanReadAll() || p.Tenant == tenant }

func authenticate(w http.ResponseWriter, r *http.Request, authorize Authorizer) (auth.Principal, bool) {
	p, err := authorize(r)
	if err != nil {
		writeError(w, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required: "+err.Error())
		return auth.Principal{}, false
	}
	return p, true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, reason, msg string) {
	writeJSON(w, code, map[string]string{"status": "error", "reason": reason, "error": msg})
}
