package booking

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bureauhub/bureauhub/hub/refsvc"
	"github.com/bureauhub/bureauhub/hub/refsvc/capacity"
	"github.com/bureauhub/bureauhub/hub/refsvc/simclock"
)

// simStart is the tests' simulated start: a Saturday, 09:00 UTC, after
// the 08:00 release (30%) and before the 12:00 one.
var simStart = time.Date(2026, 11, 7, 9, 0, 0, 0, time.UTC)

// testConfig is one consulate with one visa type of 40 slots a day over 4
// times, a 2-day window, no rate limits and no waiting room.
func testConfig(t testing.TB) Config {
	cfg := Config{
		Store:     StoreConfig{Path: filepath.Join(t.TempDir(), "booking.db"), NoSync: true},
		DaysAhead: 2,
		Consulates: []ConsulateConfig{{Name: "beijing", VisaTypes: []VisaTypeConfig{
			{Name: "tourist", SlotsPerDay: 40, Times: []string{"09:00", "09:30", "10:00", "10:30"}},
		}}},
		RateLimit:   RateLimitConfig{PerClientRate: -1, GlobalRate: -1},
		WaitingRoom: WaitingRoomConfig{MaxInProgress: -1},
		Capacity:    capacity.Config{Concurrency: 64, ServiceTime: time.Nanosecond, QueueLength: 1024, QueueTimeout: 10 * time.Second},
	}
	cfg.SetDefaults()
	if err := cfg.Validate("booking"); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func testClock(speedup float64) *simclock.Clock {
	return simclock.New(simclock.Config{Epoch: time.Now(), SimStart: simStart, Speedup: speedup})
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newService builds a service without running it.
func newService(t testing.TB, cfg Config, clock *simclock.Clock) *Service {
	t.Helper()
	svc, err := New(cfg, discardLogger(), prometheus.NewRegistry(), clock)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// runService runs svc until the returned stop is called (or the test
// ends) and waits until it is ready. stop waits for Run and closes svc.
func runService(t testing.TB, svc *Service) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := svc.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	t.Cleanup(stop)
	waitFor(t, 5*time.Second, "service ready", svc.Ready)
	return stop
}

// startService builds and runs a service.
func startService(t testing.TB, cfg Config, clock *simclock.Clock) *Service {
	t.Helper()
	svc := newService(t, cfg, clock)
	runService(t, svc)
	return svc
}

// testReplica is one replica served by an httptest server.
type testReplica struct {
	*replica
	url string
	reg *prometheus.Registry
}

func newReplica(t testing.TB, svc *Service, id string) testReplica {
	t.Helper()
	reg := prometheus.NewRegistry()
	h, err := svc.NewReplica(refsvc.Replica{ID: id, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return testReplica{replica: h.(*replica), url: srv.URL, reg: reg}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, deadline time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %s waiting for %s", deadline, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// response is a decoded answer.
type response struct {
	code   int
	header http.Header
	body   map[string]any
}

func (r response) str(field string) string {
	s, _ := r.body[field].(string)
	return s
}

func (r response) num(field string) int {
	f, _ := r.body[field].(float64)
	return int(f)
}

// do sends a request; body, if a string, is sent as is, else as JSON.
func do(t testing.TB, method, url string, body any, header map[string]string) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return response{}
	}
	defer resp.Body.Close()
	out := response{code: resp.StatusCode, header: resp.Header, body: map[string]any{}}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Error(err)
	}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out.body); err != nil {
			t.Errorf("%s %s: answer %q is not a JSON object: %v", method, url, raw, err)
		}
	}
	return out
}

func book(t testing.TB, base, key, slot, applicant string) response {
	t.Helper()
	return do(t, "POST", base+"/api/v1/bookings", map[string]string{"slot_id": slot, "applicant_id": applicant},
		map[string]string{"Idempotency-Key": key})
}

// slotIDs lists up to limit available slots through the API.
func slotIDs(t testing.TB, base string, limit int) (available int, ids []string) {
	t.Helper()
	r := do(t, "GET", base+"/api/v1/slots?consulate=beijing&visa_type=tourist&limit="+itoa(limit), nil, nil)
	if r.code != 200 {
		t.Fatalf("GET slots: %d %v", r.code, r.body)
	}
	for _, s := range r.body["slots"].([]any) {
		ids = append(ids, s.(map[string]any)["id"].(string))
	}
	return r.num("available"), ids
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
