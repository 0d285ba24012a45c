package hub

import (
	"net/http"
	"net/http/pprof"

	"github.com/bureauhub/bureauhub/hub/auth"
	"github.com/bureauhub/bureauhub/hub/query"
)

// debugHandler serves Go's profiles under /debug/pprof/, as Prometheus and
// VictoriaMetrics do on their web ports, but only to the cross-bureau role:
// a goroutine dump or a heap profile describes every tenant's work.
func debugHandler(authn *auth.Authenticator) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := query.Authenticate(authn, r)
		if err != nil {
			http.Error(w, "a valid bearer token is required", http.StatusUnauthorized)
			return
		}
		if !p.CanReadAll() {
			http.Error(w, "profiles are for the cross_bureau role", http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r)
	})
}
