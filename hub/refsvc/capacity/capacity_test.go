package capacity

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestLimiterRefusesBeyondCapacity(t *testing.T) {
	l := New(Config{Concurrency: 2, QueueLength: 1, QueueTimeout: 50 * time.Millisecond}, prometheus.NewRegistry())
	ctx := context.Background()
	r1, err := l.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := l.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The third waits in the queue (length 1) and times out; while it
	// waits, a fourth finds the queue full.
	done := make(chan error, 1)
	go func() { _, err := l.Acquire(ctx); done <- err }()
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(l.queued) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("third request never queued")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := l.Acquire(ctx); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("fourth request: got %v, want ErrQueueFull", err)
	}
	if err := <-done; !errors.Is(err, ErrQueueTimeout) {
		t.Fatalf("third request: got %v, want ErrQueueTimeout", err)
	}
	// A released slot admits a waiter.
	go func() {
		rel, err := l.Acquire(ctx)
		if err == nil {
			rel()
		}
		done <- err
	}()
	r1()
	if err := <-done; err != nil {
		t.Fatalf("waiter after release: %v", err)
	}
	r2()
	if got := testutil.ToFloat64(l.refused.WithLabelValues("queue_full")); got != 1 {
		t.Fatalf("queue_full refusals = %v, want 1", got)
	}
	if got := testutil.ToFloat64(l.refused.WithLabelValues("queue_timeout")); got != 1 {
		t.Fatalf("queue_timeout refusals = %v, want 1", got)
	}
	if got := testutil.ToFloat64(l.inflight); got != 0 {
		t.Fatalf("inflight after all released = %v", got)
	}
}

func TestMiddlewareAnswers503WithRetryAfter(t *testing.T) {
	l := New(Config{Concurrency: 1, QueueLength: 0, QueueTimeout: time.Second}, nil)
	rel, err := l.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer rel()
	rec := httptest.NewRecorder()
	l.Middleware(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("got %d Retry-After=%q, want 503 with Retry-After 1", rec.Code, rec.Header().Get("Retry-After"))
	}
	if body := rec.Body.String(); body != `{"error":"replica overloaded: queue_full","reason":"queue_full"}`+"\n" {
		t.Fatalf("body %q", body)
	}
}

func TestConfigValidateNamesField(t *testing.T) {
	c := Config{}
	c.SetDefaults()
	if err := c.Validate("x"); err != nil {
		t.Fatal(err)
	}
	if got := c.PerSecond(); got != 200 {
		t.Fatalf("default PerSecond = %v, want 200", got)
	}
	c.Concurrency = -1
	if err := c.Validate("services.booking.capacity"); err == nil || err.Error()[:38] != "services.booking.capacity.concurrency:" {
		t.Fatalf("got %v", err)
	}
}
