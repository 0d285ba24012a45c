package console

import (
	"encoding/json"
	"net/http"

	"github.com/bureauhub/bureauhub/hub/auth"
	"github.com/bureauhub/bureauhub/hub/site"
)

// AgentsPath is the agents API's path.
const AgentsPath = "/api/v1/agents"

// AgentLister is what the agents API reads; *site.Watcher implements it.
// Agents("") lists every tenant's agents. It must be safe for concurrent
// use.
type AgentLister interface {
	Agents(tenant string) []site.AgentStatus
}

var _ AgentLister = (*site.Watcher)(nil)

// AgentsHandler serves GET /api/v1/agents[?tenant=]: the agents the site
// watcher knows (last delivery, last current delivery, newest sample,
// live), in the Prometheus API's envelope, for the console and the
// Grafana plugin. A bureau token lists its own tenant's agents and gets a
// 403 for another tenant; a cross_bureau token lists every tenant's, or
// the one asked for. Callers authenticate as with the query API (Bearer,
// or basic auth's password).
func AgentsHandler(agents AgentLister, authn *auth.Authenticator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeAPIError(w, http.StatusMethodNotAllowed, "bad_data", "GET only")
			return
		}
		tok, fromHeader := tokenOf(r)
		if !fromHeader {
			tok = "" // the console's cookie is not an API credential
		}
		p, err := authn.Authenticate(tok)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="bureauhub"`)
			writeAPIError(w, http.StatusUnauthorized, "unauthorized", "missing or unknown token")
			return
		}
		tenant := r.URL.Query().Get("tenant")
		if !p.CanReadAll() {
			if tenant != "" && tenant != p.Tenant {
				writeAPIError(w, http.StatusForbidden, "forbidden", "tenant "+p.Tenant+" may not read tenant "+tenant)
				return
			}
			tenant = p.Tenant
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": agents.Agents(tenant)})
	})
}

// writeAPIError answers in the Prometheus API's error shape.
func writeAPIError(w http.ResponseWriter, code int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "error", "errorType": typ, "error": msg})
}
