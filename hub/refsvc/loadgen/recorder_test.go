package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	h := NewHistogram()
	var exact []time.Duration
	for range 100000 {
		// Log-uniform from 100µs to 10s, like latencies under overload.
		d := time.Duration(float64(100*time.Microsecond) * math.Pow(10, 5*rng.Float64()))
		h.Record(d)
		exact = append(exact, d)
	}
	slices.Sort(exact)
	for _, q := range []float64{0.5, 0.9, 0.95, 0.99, 0.999} {
		want := exact[int(math.Ceil(q*float64(len(exact))))-1]
		got := h.Quantile(q)
		if rel := math.Abs(float64(got-want)) / float64(want); rel > 0.011 {
			t.Errorf("q%v = %v, want %v (relative error %.4f > 1.1%%)", q, got, want, rel)
		}
	}
	if h.Max() != exact[len(exact)-1] {
		t.Errorf("max = %v, want %v", h.Max(), exact[len(exact)-1])
	}
	o := NewHistogram()
	o.Record(time.Hour) // clamped into the last bucket, max stays exact
	h.Merge(o)
	if h.Count() != 100001 || h.Max() != time.Hour || h.Quantile(1) != time.Hour {
		t.Errorf("after merge: count %d max %v q1 %v", h.Count(), h.Max(), h.Quantile(1))
	}
	if got := NewHistogram().Quantile(0.5); got != 0 {
		t.Errorf("empty quantile = %v", got)
	}
}

func TestSLOViolated(t *testing.T) {
	slo := SLO{Objective: 0.99, Latency: 500 * time.Millisecond}
	tests := []struct {
		name            string
		good, completed int64
		want            bool
	}{
		{"no requests is no violation", 0, 0, false},
		{"exactly 99 of 100", 99, 100, false},
		{"98 of 100", 98, 100, true},
		{"all good", 7, 7, false},
		{"one bad of one", 0, 1, true},
		{"990 of 1000", 990, 1000, false},
		{"989 of 1000", 989, 1000, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := slo.Violated(tt.good, tt.completed); got != tt.want {
				t.Errorf("Violated(%d, %d) = %v, want %v", tt.good, tt.completed, got, tt.want)
			}
		})
	}
}

// TestRecorderSLOSeconds feeds a synthetic sequence of results and checks
// the per-second accounting: which seconds violate, which are idle, where
// each event lands.
func TestRecorderSLOSeconds(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	slo := SLO{Objective: 0.99, Latency: 500 * time.Millisecond}
	rec := newRecorder(t0, slo, nil, nil, nil)
	at := func(sec int, ms int) time.Time {
		return t0.Add(time.Duration(sec)*time.Second + time.Duration(ms)*time.Millisecond)
	}
	fast := func(status int) outcome {
		return outcome{status: status, reason: classify(status), latency: 20 * time.Millisecond}
	}
	many := func(sec, n int, o outcome) {
		for i := range n {
			rec.sent(at(sec, i%1000), OpScan, kindFresh)
			rec.done(at(sec, i%1000), OpScan, o)
		}
	}

	// Second 0: 99 fast, 1 slow (600 ms) success: 99% good, not a violation.
	many(0, 99, fast(200))
	many(0, 1, outcome{status: 200, latency: 600 * time.Millisecond})
	// Second 1: 98 fast, 1 slow, 1 overloaded: 98% good, a violation.
	many(1, 98, fast(200))
	many(1, 1, outcome{status: 200, latency: 501 * time.Millisecond})
	many(1, 1, fast(503))
	// Second 2: nothing completes, 5 arrivals dropped: idle, not a violation.
	for range 5 {
		rec.dropped(at(2, 100), OpScan)
	}
	// Second 3: 9 fast, 1 timeout: violation.
	many(3, 9, fast(200))
	many(3, 1, outcome{reason: ReasonTimeout, latency: 2 * time.Second})
	// Second 4: one fast 409 (a rejection is a working service): good.
	many(4, 1, fast(409))
	// Second 5: one success at exactly the bound: good.
	many(5, 1, outcome{status: 200, latency: 500 * time.Millisecond})
	// Second 6: one fast 429: violation. The run ends half-way through it.
	many(6, 1, fast(429))
	rows, tot := rec.finish(at(6, 500))

	want := []struct {
		completed, good int64
		violation       bool
	}{
		{100, 99, false},
		{100, 98, true},
		{0, 0, false},
		{10, 9, true},
		{1, 1, false},
		{1, 1, false},
		{1, 0, true},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for i, w := range want {
		r := rows[i]
		if r.Index != i || !r.Wall.Equal(at(i, 0)) {
			t.Errorf("row %d: index %d wall %v", i, r.Index, r.Wall)
		}
		if r.Completed != w.completed || r.Good != w.good || r.Violation != w.violation {
			t.Errorf("row %d: completed %d good %d violation %v, want %d %d %v",
				i, r.Completed, r.Good, r.Violation, w.completed, w.good, w.violation)
		}
	}
	if rows[2].Failed[ReasonDropped] != 5 {
		t.Errorf("row 2 dropped = %d, want 5", rows[2].Failed[ReasonDropped])
	}
	if tot.ViolationSeconds != 3 || tot.IdleSeconds != 1 || tot.Seconds != 7 {
		t.Errorf("totals: %d violation, %d idle, %d seconds; want 3, 1, 7", tot.ViolationSeconds, tot.IdleSeconds, tot.Seconds)
	}
	wantFailed := map[string]int64{ReasonOverloaded: 1, ReasonTimeout: 1, ReasonRateLimited: 1, ReasonDropped: 5}
	for k, v := range wantFailed {
		if tot.Failed[k] != v {
			t.Errorf("total failed[%s] = %d, want %d", k, tot.Failed[k], v)
		}
	}
	if tot.Completed != 213 || tot.Good != 208 || tot.Rejected != 1 || tot.Offered.Fresh != 213 {
		t.Errorf("totals: completed %d good %d rejected %d fresh %d", tot.Completed, tot.Good, tot.Rejected, tot.Offered.Fresh)
	}
	if tot.Latency.Max != 2 {
		t.Errorf("total max latency = %v, want 2 (the timeout)", tot.Latency.Max)
	}
	if p := rows[0].Latency.P99; math.Abs(p-0.020) > 0.0003 {
		t.Errorf("row 0 p99 = %v, want 0.020", p)
	}
}

// TestRecorderLateEventLandsInOpenSecond: an event stamped before the open
// second (its goroutine lost the race for the lock) is counted in the open
// second rather than lost or reopening a closed row.
func TestRecorderLateEventLandsInOpenSecond(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	rec := newRecorder(t0, SLO{Objective: 0.99, Latency: time.Second}, nil, nil, nil)
	rec.tick(t0.Add(1500 * time.Millisecond))
	rec.sent(t0.Add(900*time.Millisecond), OpScan, kindFresh)
	rows, tot := rec.finish(t0.Add(1600 * time.Millisecond))
	if len(rows) != 2 || rows[0].Offered.Fresh != 0 || rows[1].Offered.Fresh != 1 || tot.Offered.Fresh != 1 {
		t.Fatalf("rows %+v", rows)
	}
}
