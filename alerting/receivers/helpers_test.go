package receivers

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	amcommoncfg "github.com/prometheus/alertmanager/config/common"
	"github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/alertmanager/types"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
)

// testDeadline bounds every wait in these tests.
const testDeadline = 10 * time.Second

// newTemplate returns Alertmanager's default templates, as the core builds them.
func newTemplate(t testing.TB) *template.Template {
	t.Helper()
	tmpl, err := template.FromGlobs(nil)
	if err != nil {
		t.Fatalf("load templates: %v", err)
	}
	tmpl.ExternalURL, _ = url.Parse("http://am.bureau.example")
	return tmpl
}

// notifyCtx returns a context carrying what Alertmanager's dispatcher puts
// there before a notifier runs, ending at the test deadline.
func notifyCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	t.Cleanup(cancel)
	ctx = notify.WithGroupKey(ctx, `{}:{alertname="DiskFull"}`)
	ctx = notify.WithReceiverName(ctx, "ops")
	ctx = notify.WithGroupLabels(ctx, model.LabelSet{"alertname": "DiskFull"})
	ctx = notify.WithNotificationReason(ctx, notify.ReasonFirstNotification)
	ctx = notify.WithNow(ctx, time.Now())
	ctx = notify.WithFiringAlerts(ctx, []uint64{1})
	ctx = notify.WithResolvedAlerts(ctx, nil)
	return ctx
}

// firing and resolved build one alert of the DiskFull group.
func firing(instance string) *types.Alert {
	return &types.Alert{Alert: model.Alert{
		Labels:       model.LabelSet{"alertname": "DiskFull", "instance": model.LabelValue(instance)},
		Annotations:  model.LabelSet{"summary": "disk /data is 97% full"},
		StartsAt:     time.Now().Add(-time.Hour),
		EndsAt:       time.Now().Add(time.Hour),
		GeneratorURL: "http://prom.bureau.example/graph",
	}}
}

func resolved(instance string) *types.Alert {
	a := firing(instance)
	a.EndsAt = time.Now().Add(-time.Minute)
	return a
}

// request is what a test server saw.
type request struct {
	method string
	url    *url.URL
	header http.Header
	body   []byte
}

// server is a real local HTTP endpoint that records requests and answers
// with what the test sets.
type server struct {
	*httptest.Server
	mu       sync.Mutex
	status   int
	body     string
	requests chan request
}

// newServer starts a server answering status with body.
func newServer(t testing.TB, status int, body string) *server {
	t.Helper()
	s := &server{status: status, body: body, requests: make(chan request, 16)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		// Read the answer before the test can see the request and change it.
		s.mu.Lock()
		status, body := s.status, s.body
		s.mu.Unlock()
		s.requests <- request{method: r.Method, url: r.URL, header: r.Header.Clone(), body: b}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(s.Close)
	return s
}

// answer changes what the server answers from now on.
func (s *server) answer(status int, body string) {
	s.mu.Lock()
	s.status, s.body = status, body
	s.mu.Unlock()
}

// next returns the next request the server saw, failing at the deadline.
func (s *server) next(t testing.TB) request {
	t.Helper()
	select {
	case r := <-s.requests:
		return r
	case <-time.After(testDeadline):
		t.Fatal("no request reached the server before the deadline")
		return request{}
	}
}

// hangingServer accepts requests and never answers until the client gives
// up or the test ends.
func hangingServer(t testing.TB) *httptest.Server {
	t.Helper()
	release := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release); s.Close() })
	return s
}

// secretURL parses a URL for a config, failing the test on error.
func secretURL(t testing.TB, s string) *amcommoncfg.SecretURL {
	t.Helper()
	u, err := amcommoncfg.ParseURL(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return (*amcommoncfg.SecretURL)(u)
}

// integrations validates c and builds its integrations for receiver "ops".
func integrations(t testing.TB, c *Config) []notify.Integration {
	t.Helper()
	if err := c.Validate("receivers[0]"); err != nil {
		t.Fatalf("validate: %v", err)
	}
	ints, err := c.Integrations("ops", newTemplate(t), promslog.NewNopLogger())
	if err != nil {
		t.Fatalf("integrations: %v", err)
	}
	return ints
}
