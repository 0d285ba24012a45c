package console

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/bureauhub/bureauhub/hub/auth"
)

// cookieName holds the viewer's token, base64url-encoded so that any token
// survives cookie syntax.
const cookieName = "bureauhub_console"

// viewer is an authenticated console user and the token the console calls
// the APIs with on their behalf.
type viewer struct {
	auth.Principal
	token string
}

// tokenOf reads a request's token as the hub's APIs do (a Bearer header,
// else basic auth's password), then from the console cookie.
func tokenOf(r *http.Request) (tok string, fromHeader bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		if tok = auth.BearerToken(h); tok == "" {
			_, tok, _ = r.BasicAuth()
		}
		return tok, true
	}
	if ck, err := r.Cookie(cookieName); err == nil {
		if b, err := base64.RawURLEncoding.DecodeString(ck.Value); err == nil {
			return string(b), false
		}
	}
	return "", false
}

// authenticate resolves the viewer or answers: 401 to a request that
// brought a bad Authorization header (a script), a redirect to the login
// form otherwise (a browser).
func (c *Console) authenticate(w http.ResponseWriter, r *http.Request) (viewer, bool) {
	tok, fromHeader := tokenOf(r)
	p, err := c.deps.Authn.Authenticate(tok)
	if err == nil {
		return viewer{Principal: p, token: tok}, true
	}
	if fromHeader {
		http.Error(w, "missing or unknown token", http.StatusUnauthorized)
		return viewer{}, false
	}
	if tok != "" {
		c.clearCookie(w, r) // a stale token: the tenant's token was rotated
	}
	http.Redirect(w, r, Prefix+"login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
	return viewer{}, false
}

func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, token string) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: base64.RawURLEncoding.EncodeToString([]byte(token)),
		Path: Prefix, MaxAge: int(c.cfg.SessionTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: overTLS(r),
	})
}

func (c *Console) clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: Prefix, MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: overTLS(r)})
}

// overTLS reports whether the browser reached us over HTTPS, directly or
// through a proxy that says so; the cookie is then Secure.
func overTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// sameOrigin rejects state-changing requests that a browser sent on
// another site's behalf (login CSRF, forced logout). Browsers send
// Sec-Fetch-Site, or at least Origin, with every POST; requests with
// neither come from scripts, which have no cookie to abuse.
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" {
		return s == "same-origin"
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		return err == nil && u.Host == r.Host
	}
	return true
}

// safeNext keeps redirects after sign-in inside the console.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || next == "" || u.Scheme != "" || u.Host != "" || u.User != nil ||
		strings.HasPrefix(next, "//") || strings.Contains(next, `\`) {
		return Prefix
	}
	// Browsers resolve dot segments: /console/../api must not pass.
	if clean := path.Clean(u.Path); clean+"/" != Prefix && !strings.HasPrefix(clean, Prefix) {
		return Prefix
	}
	return u.RequestURI()
}

type loginView struct {
	Next  string
	Error string
}

// getLogin shows the sign-in form, or redeems a one-time login link.
func (c *Console) getLogin(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	next := safeNext(q.Get("next"))
	id := q.Get("link")
	if id == "" {
		c.render(w, http.StatusOK, "login", page{Title: "Sign in", Data: loginView{Next: next}})
		return
	}
	// A link opened from another site could sign the victim in as
	// someone else; accept it typed, pasted or opened by a script.
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "none" && s != "same-origin" {
		c.render(w, http.StatusForbidden, "login", page{Title: "Sign in",
			Data: loginView{Next: next, Error: "Login links only work when opened directly, not from another site."}})
		return
	}
	tok, ok := c.links.redeem(id)
	if !ok {
		c.render(w, http.StatusUnauthorized, "login", page{Title: "Sign in",
			Data: loginView{Next: next, Error: "This login link is unknown, used or expired."}})
		return
	}
	c.setCookie(w, r, tok)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// postLogin checks the token typed into the form and keeps it in the
// session cookie.
func (c *Console) postLogin(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-site sign-in refused", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	tok := strings.TrimSpace(r.PostForm.Get("token"))
	if _, err := c.deps.Authn.Authenticate(tok); err != nil {
		c.render(w, http.StatusUnauthorized, "login", page{Title: "Sign in",
			Data: loginView{Next: next, Error: "Unknown token."}})
		return
	}
	c.setCookie(w, r, tok)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) postLogout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-site sign-out refused", http.StatusForbidden)
		return
	}
	c.clearCookie(w, r)
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

// LoginLink is the answer to POST /console/login-links.
type LoginLink struct {
	// URL is the link, relative to the hub's HTTP address.
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// postLoginLink issues a one-time login link for the token in the
// Authorization header (never the cookie: a page cannot mint links for
// its viewer). Optional form or query field next: the page to land on.
func (c *Console) postLoginLink(w http.ResponseWriter, r *http.Request) {
	tok, fromHeader := tokenOf(r)
	if _, err := c.deps.Authn.Authenticate(tok); !fromHeader || err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="bureauhub"`)
		http.Error(w, "a valid token in the Authorization header is required", http.StatusUnauthorized)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	id, exp := c.links.issue(tok)
	u := Prefix + "login?link=" + url.QueryEscape(id)
	if n := r.Form.Get("next"); n != "" {
		u += "&next=" + url.QueryEscape(safeNext(n))
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(LoginLink{URL: u, ExpiresAt: exp.UTC()})
}

// loginLinks are issued one-time links. They live in this hub's memory
// only: a link must be opened on the hub that issued it.
type loginLinks struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu   sync.Mutex
	byID map[string]loginLink
}

type loginLink struct {
	token   string
	expires time.Time
}

func (l *loginLinks) issue(token string) (string, time.Time) {
	id := rand.Text()
	now := l.now()
	exp := now.Add(l.ttl)
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, v := range l.byID {
		if !now.Before(v.expires) {
			delete(l.byID, k)
		}
	}
	for len(l.byID) >= l.max {
		var oldest string
		for k, v := range l.byID {
			if oldest == "" || v.expires.Before(l.byID[oldest].expires) {
				oldest = k
			}
		}
		delete(l.byID, oldest)
	}
	l.byID[id] = loginLink{token: token, expires: exp}
	return id, exp
}

// redeem returns the link's token and forgets the link.
func (l *loginLinks) redeem(id string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.byID[id]
	if !ok {
		return "", false
	}
	delete(l.byID, id)
	if !l.now().Before(v.expires) {
		return "", false
	}
	return v.token, true
}
