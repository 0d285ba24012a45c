package hub

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bureauhub/bureauhub/hub/auth"
)

// TestDebugNeedsTheCrossBureauRole: profiles are served to the data
// bureau's token only.
func TestDebugNeedsTheCrossBureauRole(t *testing.T) {
	authn, err := auth.New([]auth.TenantConfig{
		{Name: "consular", Token: "consular-token-0123456789", Role: auth.RoleBureau},
		{Name: "data", Token: "data-token-0123456789abc", Role: auth.RoleCrossBureau},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(debugHandler(authn))
	defer srv.Close()
	for _, tc := range []struct {
		token, path string
		code        int
		body        string
	}{
		{"", "/debug/pprof/", http.StatusUnauthorized, "bearer token"},
		{"wrong", "/debug/pprof/", http.StatusUnauthorized, "bearer token"},
		{"consular-token-0123456789", "/debug/pprof/goroutine?debug=1", http.StatusForbidden, "cross_bureau"},
		{"data-token-0123456789abc", "/debug/pprof/goroutine?debug=1", http.StatusOK, "goroutine profile"},
		{"data-token-0123456789abc", "/debug/pprof/cmdline", http.StatusOK, ""},
	} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		_, _ = io.Copy(&b, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(b.String(), tc.body) {
			t.Errorf("%s with %q: %d %.100q, want %d containing %q", tc.path, tc.token, resp.StatusCode, b.String(), tc.code, tc.body)
		}
	}
}
