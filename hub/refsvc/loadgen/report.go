package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Failure reasons, the keys of Counts.Failed. Other 5xx answers are
// counted as "http_<code>", e.g. http_500.
const (
	ReasonTimeout     = "timeout"              // no answer within Config.Timeout
	ReasonConnError   = "conn_error"           // connection refused, reset, malformed answer
	ReasonRateLimited = "rate_limited"         // 429
	ReasonOverloaded  = "overloaded"           // 503
	ReasonDropped     = "dropped_by_generator" // an arrival never sent: MaxOutstanding was reached
)

// Report is the outcome of a run: one row per wall second and the totals.
type Report struct {
	// Scenario, Seed, Rate and Speedup repeat the run's configuration.
	Scenario string  `json:"scenario"`
	Seed     uint64  `json:"seed"`
	Rate     float64 `json:"rate"`
	Speedup  float64 `json:"speedup"`
	// SLO is the objective ViolationSeconds are counted against.
	SLO SLOReport `json:"slo"`
	// Start is the wall time of the first arrival slot (row 0 starts
	// there) and End the wall time the run ended (after the drain).
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// SimStart and SimEnd are the simulated times of the arrival window.
	SimStart time.Time `json:"sim_start"`
	SimEnd   time.Time `json:"sim_end"`
	// Interrupted says the caller's context ended the run early.
	Interrupted bool `json:"interrupted"`
	// Totals sums the whole run.
	Totals Totals `json:"totals"`
	// Seconds has one row per wall second from Start, the last one
	// possibly partial.
	Seconds []Second `json:"seconds"`
}

// SLOReport is the SLO in the report's units.
type SLOReport struct {
	// Objective is the fraction of requests that must be good.
	Objective float64 `json:"objective"`
	// LatencySeconds is the bound a good request is answered within.
	LatencySeconds float64 `json:"latency_seconds"`
}

// Offered counts the requests sent, by why they were sent. Only Fresh
// follows the arrival process; the rest is load the clients add.
type Offered struct {
	// Fresh is the first request of each arrival.
	Fresh int64 `json:"fresh"`
	// FollowUp counts the later steps of a booking session: the booking
	// after listing slots, the booking with a queue pass, the payment.
	FollowUp int64 `json:"follow_up"`
	// Poll counts waiting-room polls.
	Poll int64 `json:"poll"`
	// DoubleClick counts the second copy of double-clicked bookings.
	DoubleClick int64 `json:"double_click"`
	// Retry counts immediate re-sends after a failure (retry storms).
	Retry int64 `json:"retry"`
	// Refresh counts re-issues after a failure and a think time.
	Refresh int64 `json:"refresh"`
	// Total is the sum of the above.
	Total int64 `json:"total"`
}

// Latency quantiles in seconds, of the requests completed (including
// timeouts, counted at the timeout).
type Latency struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Counts are what happened in one second or in the whole run.
type Counts struct {
	// Offered is the requests sent.
	Offered Offered `json:"offered"`
	// Completed is the requests that got an answer, timed out or failed
	// to connect.
	Completed int64 `json:"completed"`
	// Succeeded is the completed requests answered 1xx-3xx.
	Succeeded int64 `json:"succeeded"`
	// Rejected is the completed requests answered 4xx other than 429: the
	// service worked and said no (slot_taken, unknown ticket). They count
	// as good for the SLO if fast enough.
	Rejected int64 `json:"rejected"`
	// Failed counts failures by reason (the Reason constants and
	// http_<code> for other 5xx), including arrivals dropped by the
	// generator, which are not requests and are not in Completed.
	Failed map[string]int64 `json:"failed"`
	// Status counts the answers by HTTP status code.
	Status map[string]int64 `json:"status"`
	// Good is the completed requests that succeeded or were rejected
	// within the SLO latency.
	Good int64 `json:"good"`
	// Latency is over the completed requests.
	Latency Latency `json:"latency"`
}

// Second is one wall second of the run.
type Second struct {
	// Index counts seconds from Report.Start.
	Index int `json:"index"`
	// Wall and Sim are the second's start in wall and simulated time.
	Wall time.Time `json:"wall"`
	Sim  time.Time `json:"sim"`
	// TargetRate is the scenario's arrival rate (sessions per wall second)
	// at the second's start.
	TargetRate float64 `json:"target_rate"`
	Counts
	// Violation says the second broke the SLO: it had completed requests
	// and fewer than SLO.Objective of them were good. A second without
	// completed requests is never a violation.
	Violation bool `json:"slo_violation"`
}

// Totals sums a run.
type Totals struct {
	Counts
	// Seconds is the number of rows.
	Seconds int `json:"seconds"`
	// ViolationSeconds is the number of rows in violation of the SLO.
	ViolationSeconds int `json:"slo_violation_seconds"`
	// IdleSeconds is the number of rows without completed requests; they
	// are neither violations nor evidence of compliance.
	IdleSeconds int `json:"idle_seconds"`
	// PeakOutstanding is the most client sessions in progress at once
	// (bounded by Config.MaxOutstanding).
	PeakOutstanding int64 `json:"peak_outstanding"`
	// Abandoned is the requests still outstanding when the drain ended:
	// sent (in Offered) but never completed.
	Abandoned int64 `json:"abandoned"`
	// ByOp splits the requests by operation (scan, result, slots, book,
	// poll, pay).
	ByOp map[string]OpCounts `json:"by_op"`
}

// OpCounts are the totals of one operation.
type OpCounts struct {
	Sent      int64 `json:"sent"`
	Completed int64 `json:"completed"`
	Good      int64 `json:"good"`
	Failed    int64 `json:"failed"`
}

// Violated reports whether a second with completed requests, good of them
// good, breaks the objective. Zero completed is never a violation.
func (s SLO) Violated(good, completed int64) bool {
	if completed <= 0 {
		return false
	}
	// The epsilon keeps 99 of 100 at 0.99 from failing on rounding.
	return float64(good) < s.Objective*float64(completed)-1e-9
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteSummary writes a short human-readable summary.
func (r *Report) WriteSummary(w io.Writer) error {
	t := r.Totals
	var b strings.Builder
	fmt.Fprintf(&b, "scenario %s, seed %d, rate %g/s, speedup %g\n", r.Scenario, r.Seed, r.Rate, r.Speedup)
	fmt.Fprintf(&b, "simulated %s to %s, wall %s (%d s)\n",
		r.SimStart.Format("2006-01-02 15:04"), r.SimEnd.Format("2006-01-02 15:04"), r.End.Sub(r.Start).Round(time.Millisecond), t.Seconds)
	o := t.Offered
	fmt.Fprintf(&b, "offered   %d requests: %d fresh, %d follow-up, %d polls, %d double clicks, %d retries, %d refreshes\n",
		o.Total, o.Fresh, o.FollowUp, o.Poll, o.DoubleClick, o.Retry, o.Refresh)
	fmt.Fprintf(&b, "completed %d: %d succeeded, %d rejected (4xx), %d good (within %gs)\n",
		t.Completed, t.Succeeded, t.Rejected, t.Good, r.SLO.LatencySeconds)
	if len(t.Failed) > 0 {
		fmt.Fprintf(&b, "failed   ")
		for _, k := range slices.Sorted(maps.Keys(t.Failed)) {
			fmt.Fprintf(&b, " %s=%d", k, t.Failed[k])
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "latency   p50 %s  p95 %s  p99 %s  max %s\n",
		secs(t.Latency.P50), secs(t.Latency.P95), secs(t.Latency.P99), secs(t.Latency.Max))
	fmt.Fprintf(&b, "SLO %.4g%% within %gs: %d of %d seconds in violation (%d idle seconds not counted)\n",
		r.SLO.Objective*100, r.SLO.LatencySeconds, t.ViolationSeconds, t.Seconds, t.IdleSeconds)
	_, err := io.WriteString(w, b.String())
	return err
}

func secs(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(10 * time.Microsecond).String()
}
