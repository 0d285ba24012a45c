package console

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func (tc *testConsole) post(tb testing.TB, path string, body io.Reader, hdr map[string]string) (*http.Response, string) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodPost, tc.srv.URL+path, body)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func sessionCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == cookieName {
			return c
		}
	}
	return nil
}

func TestSignInWithTheForm(t *testing.T) {
	tc := newTestConsole(t, all, nil)

	// A browser without a session is sent to the form, keeping its page.
	code, hdr, _ := tc.get(t, "/console/alerts?x=1", nil)
	if code != http.StatusSeeOther || hdr.Get("Location") != "/console/login?next="+url.QueryEscape("/console/alerts?x=1") {
		t.Fatalf("unauthenticated page: %d Location %q", code, hdr.Get("Location"))
	}
	code, _, body := tc.get(t, "/console/login?next=/console/alerts", nil)
	if code != 200 || !strings.Contains(body, `type="password"`) || !strings.Contains(body, `value="/console/alerts"`) {
		t.Fatalf("login form: %d %s", code, body)
	}

	sameSite := map[string]string{"Sec-Fetch-Site": "same-origin"}
	resp, body := tc.post(t, "/console/login", formBody("token", "not-a-token-at-all", "next", "/console/alerts"), sameSite)
	if resp.StatusCode != http.StatusUnauthorized || sessionCookie(resp) != nil || !strings.Contains(body, "Unknown token.") {
		t.Fatalf("bad token: %d %v", resp.StatusCode, resp.Cookies())
	}
	for _, hdr := range []map[string]string{
		{"Sec-Fetch-Site": "cross-site"},
		{"Sec-Fetch-Site": "same-site"},
		{"Origin": "https://evil.example"},
	} {
		resp, _ := tc.post(t, "/console/login", formBody("token", tokens["health"]), hdr)
		if resp.StatusCode != http.StatusForbidden || sessionCookie(resp) != nil {
			t.Errorf("cross-site sign-in %v: %d, want 403 and no cookie", hdr, resp.StatusCode)
		}
	}

	resp, _ = tc.post(t, "/console/login", formBody("token", tokens["health"], "next", "https://evil.example/"), map[string]string{"Origin": tc.srv.URL})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/" {
		t.Fatalf("sign-in: %d Location %q (an off-site next must land on the console)", resp.StatusCode, resp.Header.Get("Location"))
	}
	ck := sessionCookie(resp)
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/console/" || ck.MaxAge != int(12*time.Hour/time.Second) || ck.Secure {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/console/, 12h, not Secure over plain HTTP", ck)
	}
	if strings.Contains(ck.Raw, tokens["health"]) {
		t.Errorf("cookie carries the token unencoded: %s", ck.Raw)
	}

	withCookie := map[string]string{"Cookie": ck.Name + "=" + ck.Value}
	code, _, body = tc.get(t, "/console/alerts", withCookie)
	if code != 200 || !strings.Contains(body, "ScanLatencyAboveObjective") || strings.Contains(body, "BookingSuccessBelowObjective") ||
		!strings.Contains(body, "bureau health") {
		t.Fatalf("page with the session cookie: %d %s", code, body)
	}

	resp, _ = tc.post(t, "/console/logout", nil, map[string]string{"Sec-Fetch-Site": "cross-site", "Cookie": withCookie["Cookie"]})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site sign-out: %d", resp.StatusCode)
	}
	resp, _ = tc.post(t, "/console/logout", nil, map[string]string{"Sec-Fetch-Site": "same-origin", "Cookie": withCookie["Cookie"]})
	if ck := sessionCookie(resp); resp.StatusCode != http.StatusSeeOther || ck == nil || ck.MaxAge >= 0 {
		t.Errorf("sign-out: %d cookie %+v, want it cleared", resp.StatusCode, ck)
	}
}

func TestStaleCookieIsClearedAndRedirected(t *testing.T) {
	tc := newTestConsole(t, all, nil)
	code, hdr, _ := tc.get(t, "/console/agents", map[string]string{"Cookie": cookieName + "=" + b64("rotated-token-0123456789")})
	if code != http.StatusSeeOther || !strings.HasPrefix(hdr.Get("Location"), "/console/login") ||
		!strings.Contains(strings.Join(hdr.Values("Set-Cookie"), ";"), "Max-Age=0") {
		t.Errorf("stale cookie: %d %v", code, hdr)
	}
	// A script with a bad header gets a 401, not a login form.
	if code, _, _ := tc.get(t, "/console/agents", map[string]string{"Authorization": "Bearer rotated-token-0123456789"}); code != http.StatusUnauthorized {
		t.Errorf("bad Authorization header: %d, want 401", code)
	}
}

func (tc *testConsole) mintLink(tb testing.TB, hdr map[string]string, next string) (int, LoginLink) {
	tb.Helper()
	resp, body := tc.post(tb, "/console/login-links", formBody("next", next), hdr)
	var l LoginLink
	if resp.StatusCode == 200 {
		if err := json.Unmarshal([]byte(body), &l); err != nil {
			tb.Fatalf("%s: %v", body, err)
		}
	}
	return resp.StatusCode, l
}

func TestLoginLinks(t *testing.T) {
	tc := newTestConsole(t, all, nil)
	now := tc.now
	tc.Console.now = func() time.Time { return now }

	// Minting needs the token in a header; the session cookie will not do.
	if code, _ := tc.mintLink(t, map[string]string{"Cookie": cookieName + "=" + b64(tokens["health"])}, ""); code != http.StatusUnauthorized {
		t.Errorf("mint with a cookie: %d, want 401", code)
	}
	if code, _ := tc.mintLink(t, nil, ""); code != http.StatusUnauthorized {
		t.Errorf("mint without a token: %d, want 401", code)
	}

	code, l := tc.mintLink(t, bearer("health"), "/console/agents")
	if code != 200 || !strings.HasPrefix(l.URL, "/console/login?link=") || !l.ExpiresAt.Equal(now.Add(time.Minute)) {
		t.Fatalf("mint: %d %+v", code, l)
	}
	if strings.Contains(l.URL, tokens["health"]) {
		t.Fatalf("link carries the token: %s", l.URL)
	}
	// Opened from another site it is refused (login CSRF), and not spent.
	if code, _, _ := tc.get(t, l.URL, map[string]string{"Sec-Fetch-Site": "cross-site"}); code != http.StatusForbidden {
		t.Errorf("link from another site: %d, want 403", code)
	}
	code, hdr, _ := tc.get(t, l.URL, map[string]string{"Sec-Fetch-Site": "none"})
	if code != http.StatusSeeOther || hdr.Get("Location") != "/console/agents" {
		t.Fatalf("open link: %d Location %q", code, hdr.Get("Location"))
	}
	resp := &http.Response{Header: hdr}
	ck := sessionCookie(resp)
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Fatalf("link set cookie %+v", ck)
	}
	if code, _, body := tc.get(t, "/console/agents", map[string]string{"Cookie": ck.Name + "=" + ck.Value}); code != 200 || !strings.Contains(body, "health-agent-bbbb") {
		t.Errorf("page after the link: %d", code)
	}
	// Once only.
	if code, _, body := tc.get(t, l.URL, nil); code != http.StatusUnauthorized || !strings.Contains(body, "unknown, used or expired") {
		t.Errorf("second use: %d", code)
	}

	// Expired.
	_, l = tc.mintLink(t, bearer("consular"), "")
	now = now.Add(time.Minute)
	if code, _, _ := tc.get(t, l.URL, nil); code != http.StatusUnauthorized {
		t.Errorf("expired link: %d, want 401", code)
	}
}

func TestLoginLinksBounded(t *testing.T) {
	now := time.Unix(0, 0)
	l := &loginLinks{ttl: time.Minute, max: 3, now: func() time.Time { return now }, byID: map[string]loginLink{}}
	first, _ := l.issue("t0")
	now = now.Add(time.Second)
	var last string
	for i := range 3 {
		last, _ = l.issue("t" + string(rune('1'+i)))
		now = now.Add(time.Second)
	}
	if len(l.byID) != 3 {
		t.Fatalf("%d links kept, want 3", len(l.byID))
	}
	if _, ok := l.redeem(first); ok {
		t.Error("the oldest link survived the bound")
	}
	if tok, ok := l.redeem(last); !ok || tok != "t3" {
		t.Errorf("newest link: %q %v", tok, ok)
	}
	now = now.Add(time.Hour)
	l.issue("later")
	if len(l.byID) != 1 {
		t.Errorf("expired links not dropped: %d kept", len(l.byID))
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"":                            "/console/",
		"/console/alerts?x=1":         "/console/alerts?x=1",
		"/console/../api/v1/query":    "/console/",
		"/console/./agents":           "/console/./agents",
		"/console":                    "/console",
		"/api/v2/silences":            "/console/",
		"https://evil.example/":       "/console/",
		"//evil.example/console/":     "/console/",
		"/\\evil.example":             "/console/",
		"javascript:alert(1)":         "/console/",
		"http://u:p@evil/console/":    "/console/",
		"/console/agents#frag":        "/console/agents",
		"\x00":                        "/console/",
		"/console/login?link=x&next=": "/console/login?link=x&next=",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}
