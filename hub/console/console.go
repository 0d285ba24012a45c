// Package console is the hub console: server-rendered HTML pages for ops
// who have no Grafana (agents per bureau, alerts, capacity, cluster
// members), served by the hub under /console/.
//
// The console is a client of the hub's own JSON APIs. Each page calls the
// APIs in process (no network hop) with the viewer's token, so it shows
// exactly what that token could fetch itself: tenancy is enforced once, by
// each API, and a bureau's token never sees another bureau's agents,
// alerts, services or actions, while a cross_bureau token sees all.
//
// Sign-in. A browser signs in with its bureau token on /console/login; the
// token is kept in a cookie that is HttpOnly, SameSite=Strict, scoped to
// /console/ and Secure when the request came over TLS. The hub's APIs never
// read that cookie (they take Authorization headers only), so signing in to
// the console does not expose the write APIs (silences, scaling, reload) to
// cross-site requests; the console itself is read-only. Scripts and the
// browser test use one-time login links instead: POST /console/login-links
// with the token as a Bearer header returns a link valid for one use within
// a minute, which sets the same cookie. Requests to the console with an
// Authorization header (curl) are served too.
//
// Pages are plain HTML and one embedded stylesheet: no script, nothing
// fetched from elsewhere (the Content-Security-Policy forbids it).
package console

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"github.com/bureauhub/bureauhub/hub/auth"
)

// Prefix is the path the console is served under.
const Prefix = "/console/"

// Config tunes the console.
type Config struct {
	// SessionTTL is how long a browser stays signed in (default 12h).
	SessionTTL time.Duration `yaml:"session_ttl"`
	// LoginLinkTTL is how long a one-time login link is valid (default 1m).
	LoginLinkTTL time.Duration `yaml:"login_link_ttl"`
	// MaxLoginLinks bounds the links waiting to be used (default 1000);
	// beyond it the oldest are forgotten.
	MaxLoginLinks int `yaml:"max_login_links"`
	// Refresh is how often the pages reload themselves (default 30s; a
	// negative value turns it off).
	Refresh time.Duration `yaml:"refresh"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.SessionTTL == 0 {
		c.SessionTTL = 12 * time.Hour
	}
	if c.LoginLinkTTL == 0 {
		c.LoginLinkTTL = time.Minute
	}
	if c.MaxLoginLinks == 0 {
		c.MaxLoginLinks = 1000
	}
	if c.Refresh == 0 {
		c.Refresh = 30 * time.Second
	}
}

// Validate names the first invalid field.
func (c *Config) Validate(prefix string) error {
	switch {
	case c.SessionTTL <= 0:
		return fmt.Errorf("%s.session_ttl: must be positive", prefix)
	case c.LoginLinkTTL <= 0 || c.LoginLinkTTL > 10*time.Minute:
		return fmt.Errorf("%s.login_link_ttl: must be in (0, 10m]", prefix)
	case c.MaxLoginLinks < 1:
		return fmt.Errorf("%s.max_login_links: must be positive", prefix)
	}
	return nil
}

// Available says which optional hub components are configured; the pages
// say "not configured" for the others instead of calling their APIs.
type Available struct {
	Alerting  bool // /api/v2/alerts, /api/v2/silences, /api/v1/alerts/history
	Autoscale bool // /api/v1/recommendations, /api/v1/autoscale/actions
	Services  bool // /api/v1/services
	Forecast  bool // /api/v1/forecasts
}

// Deps are what the console reads.
type Deps struct {
	// API serves the hub's JSON APIs (the hub's own mux): /api/v1/query,
	// /api/v1/agents and those named in Available. The console calls it
	// in process with the viewer's token as a Bearer header.
	API http.Handler
	// Authn resolves the viewer's token.
	Authn *auth.Authenticator
	// Members lists the hub cluster; nil shows this hub alone.
	Members Members
	// Self is this hub's HTTP address, shown when Members is nil.
	Self      string
	Available Available
}

// Console serves the console pages. It is safe for concurrent use.
type Console struct {
	cfg    Config
	deps   Deps
	logger *slog.Logger
	now    func() time.Time
	pages  map[string]*template.Template
	links  *loginLinks
}

//go:embed templates/*.html static/*
var assets embed.FS

// New builds a console over deps; cfg must be valid (defaults set).
func New(cfg Config, logger *slog.Logger, deps Deps) (*Console, error) {
	if deps.API == nil || deps.Authn == nil {
		return nil, errors.New("console: API and Authn are required")
	}
	if deps.Members == nil {
		deps.Members = SingleHub{Address: deps.Self}
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, deps: deps, logger: logger, now: time.Now, pages: pages}
	c.links = &loginLinks{ttl: cfg.LoginLinkTTL, max: cfg.MaxLoginLinks, now: func() time.Time { return c.now() }, byID: map[string]loginLink{}}
	return c, nil
}

// Handler serves everything under Prefix; mount it there.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+Prefix+"static/", http.StripPrefix(Prefix, http.FileServerFS(assets)))
	mux.HandleFunc("GET "+Prefix+"login", c.getLogin)
	mux.HandleFunc("POST "+Prefix+"login", c.postLogin)
	mux.HandleFunc("POST "+Prefix+"logout", c.postLogout)
	mux.HandleFunc("POST "+Prefix+"login-links", c.postLoginLink)
	mux.HandleFunc("GET "+Prefix+"{$}", c.page("overview", c.overview))
	mux.HandleFunc("GET "+Prefix+"agents", c.page("agents", c.agents))
	mux.HandleFunc("GET "+Prefix+"alerts", c.page("alerts", c.alerts))
	mux.HandleFunc("GET "+Prefix+"capacity", c.page("capacity", c.capacity))
	mux.HandleFunc("GET "+Prefix+"cluster", c.page("cluster", c.cluster))
	return securityHeaders(mux)
}

// securityHeaders forbids framing, scripts and anything from elsewhere,
// and caching of pages that show a tenant's data.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// Member is one hub of the cluster.
type Member struct {
	Name    string
	Address string
	// State is what the membership protocol says (alive, suspect, dead,
	// left).
	State string
	// Self marks the hub serving the page.
	Self bool
}

// Members lists the hub cluster's members. Implementations must be safe
// for concurrent use and must not block on the network: the console calls
// Members while rendering a page.
type Members interface {
	Members() []Member
}

// SingleHub is the membership of a hub that runs alone.
type SingleHub struct{ Address string }

// Members implements Members.
func (s SingleHub) Members() []Member {
	return []Member{{Name: "single hub", Address: s.Address, State: "alive", Self: true}}
}

var _ Members = SingleHub{}
