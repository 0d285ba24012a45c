package loadgen

import (
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// kind is why a request was sent (the Offered fields).
type kind int

const (
	kindFresh kind = iota
	kindFollowUp
	kindPoll
	kindDoubleClick
	kindRetry
	kindRefresh
)

var kindNames = [...]string{"fresh", "follow_up", "poll", "double_click", "retry", "refresh"}

func (k kind) String() string { return kindNames[k] }

func (o *Offered) add(k kind) {
	switch k {
	case kindFresh:
		o.Fresh++
	case kindFollowUp:
		o.FollowUp++
	case kindPoll:
		o.Poll++
	case kindDoubleClick:
		o.DoubleClick++
	case kindRetry:
		o.Retry++
	case kindRefresh:
		o.Refresh++
	}
	o.Total++
}

// outcome is how one request ended.
type outcome struct {
	status  int           // HTTP status, 0 if none
	reason  string        // failure reason, "" if the request did not fail
	latency time.Duration // send to end of the body (or to the timeout)
}

// classify turns a status into an outcome's failure reason ("" for
// success or a 4xx rejection).
func classify(status int) string {
	switch {
	case status == 429:
		return ReasonRateLimited
	case status == 503:
		return ReasonOverloaded
	case status >= 500:
		return "http_" + strconv.Itoa(status)
	}
	return ""
}

// acc accumulates Counts and their latencies.
type acc struct {
	Counts
	hist *Histogram
}

func newAcc() acc {
	return acc{Counts: Counts{Failed: map[string]int64{}, Status: map[string]int64{}}, hist: NewHistogram()}
}

// done counts a completed request and records its latency.
func (a *acc) done(o outcome, good bool) {
	a.count(o, good)
	a.hist.Record(o.latency)
}

// count counts a completed request without recording its latency.
func (a *acc) count(o outcome, good bool) {
	a.Completed++
	if o.status != 0 {
		a.Status[strconv.Itoa(o.status)]++
	}
	switch {
	case o.reason != "":
		a.Failed[o.reason]++
	case o.status < 400:
		a.Succeeded++
	default:
		a.Rejected++
	}
	if good {
		a.Good++
	}
}

func (a *acc) counts() Counts {
	c := a.Counts
	c.Latency = Latency{
		P50: a.hist.Quantile(0.50).Seconds(),
		P95: a.hist.Quantile(0.95).Seconds(),
		P99: a.hist.Quantile(0.99).Seconds(),
		Max: a.hist.Max().Seconds(),
	}
	return c
}

// recorder turns the stream of sends, drops and completions into per-second
// rows and totals. Events are attributed to the wall second they happen in
// (a completion, including a timeout, to the second it completed in).
// Safe for concurrent use.
type recorder struct {
	start time.Time
	slo   SLO
	rate  func(wall time.Time) float64 // target rate, for the rows
	toSim func(wall time.Time) time.Time
	m     *metrics

	mu     sync.Mutex
	curIdx int
	cur    acc
	rows   []Second
	total  acc
	byOp   map[string]*OpCounts
	viol   int
	idle   int
	aband  int64
}

func newRecorder(start time.Time, slo SLO, rate func(time.Time) float64, toSim func(time.Time) time.Time, m *metrics) *recorder {
	r := &recorder{start: start, slo: slo, rate: rate, toSim: toSim, m: m,
		cur: newAcc(), total: newAcc(), byOp: map[string]*OpCounts{}}
	if r.rate == nil {
		r.rate = func(time.Time) float64 { return 0 }
	}
	if r.toSim == nil {
		r.toSim = func(t time.Time) time.Time { return t }
	}
	if m != nil {
		m.targetRate.Set(r.rate(start))
	}
	return r
}

// roll closes the rows before the second of now. An event stamped before
// the open second (a goroutine that lost the race for the lock) lands in
// the open second, a few microseconds late. Called with mu held.
func (r *recorder) roll(now time.Time) {
	idx := int(now.Sub(r.start) / time.Second)
	for r.curIdx < idx {
		r.closeRow()
		r.curIdx++
	}
}

func (r *recorder) closeRow() {
	wall := r.start.Add(time.Duration(r.curIdx) * time.Second)
	row := Second{Index: r.curIdx, Wall: wall, Sim: r.toSim(wall), TargetRate: r.rate(wall), Counts: r.cur.counts()}
	row.Violation = r.slo.Violated(row.Good, row.Completed)
	switch {
	case row.Violation:
		r.viol++
		if r.m != nil {
			r.m.violations.Inc()
		}
	case row.Completed == 0:
		r.idle++
	}
	r.rows = append(r.rows, row)
	r.total.hist.Merge(r.cur.hist)
	r.cur = acc{Counts: Counts{Failed: map[string]int64{}, Status: map[string]int64{}}, hist: r.cur.hist}
	r.cur.hist.Reset()
	if r.m != nil {
		r.m.targetRate.Set(r.rate(wall.Add(time.Second)))
	}
}

func (r *recorder) op(name string) *OpCounts {
	o := r.byOp[name]
	if o == nil {
		o = &OpCounts{}
		r.byOp[name] = o
	}
	return o
}

// sent records a request sent at now.
func (r *recorder) sent(now time.Time, op string, k kind) {
	if r.m != nil {
		r.m.sent.WithLabelValues(op, k.String()).Inc()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.roll(now)
	r.cur.Offered.add(k)
	r.total.Offered.add(k)
	r.op(op).Sent++
}

// dropped records an arrival the generator did not send.
func (r *recorder) dropped(now time.Time, op string) {
	if r.m != nil {
		r.m.dropped.Inc()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.roll(now)
	r.cur.Failed[ReasonDropped]++
	r.total.Failed[ReasonDropped]++
}

// done records a request completed at now.
func (r *recorder) done(now time.Time, op string, o outcome) {
	good := o.reason == "" && o.latency <= r.slo.Latency
	if r.m != nil {
		res := o.reason
		if res == "" {
			res = "ok"
			if o.status >= 400 {
				res = "rejected"
			}
		}
		r.m.completed.WithLabelValues(op, res).Inc()
		r.m.latency.WithLabelValues(op).Observe(o.latency.Seconds())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.roll(now)
	r.cur.done(o, good)
	// The total's latencies are merged from each row as it closes.
	r.total.count(o, good)
	oc := r.op(op)
	oc.Completed++
	if o.reason != "" {
		oc.Failed++
	}
	if good {
		oc.Good++
	}
}

// abandon records a request sent but cut off when the run ended.
func (r *recorder) abandon() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.aband++
}

// tick closes the rows of seconds that are over, so idle seconds get rows
// and the metrics stay current.
func (r *recorder) tick(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.roll(now)
}

// finish closes every row up to and including the second of end and
// returns the rows and totals.
func (r *recorder) finish(end time.Time) ([]Second, Totals) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.roll(end)
	if end.After(r.start.Add(time.Duration(r.curIdx) * time.Second)) {
		r.closeRow()
		r.curIdx++
	}
	t := Totals{Counts: r.total.counts(), Seconds: len(r.rows), ViolationSeconds: r.viol, IdleSeconds: r.idle, Abandoned: r.aband, ByOp: map[string]OpCounts{}}
	for k, v := range r.byOp {
		t.ByOp[k] = *v
	}
	return r.rows, t
}

// metrics are the generator's own Prometheus metrics.
type metrics struct {
	sent        *prometheus.CounterVec
	completed   *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	dropped     prometheus.Counter
	outstanding prometheus.Gauge
	targetRate  prometheus.Gauge
	violations  prometheus.Counter
}

// newMetrics registers the metrics with reg. A collector already
// registered (a second Run on the same registry) is reused, so its
// counters go on counting.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loadgen_requests_sent_total", Help: "Requests sent, by operation and why they were sent (fresh, follow_up, poll, double_click, retry, refresh)."},
			[]string{"op", "kind"}),
		completed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loadgen_requests_completed_total", Help: "Requests completed, by operation and result (ok, rejected, or the failure reason)."},
			[]string{"op", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "loadgen_request_duration_seconds", Help: "Client-side latency of completed requests, timeouts included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"op"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loadgen_arrivals_dropped_total", Help: "Arrivals not sent because the bound on outstanding sessions was reached."}),
		outstanding: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "loadgen_outstanding_sessions", Help: "Client sessions in progress."}),
		targetRate: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "loadgen_target_arrival_rate", Help: "The scenario's arrival rate now, sessions per wall second."}),
		violations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loadgen_slo_violation_seconds_total", Help: "Wall seconds in which fewer than the SLO objective of the completed requests were good."}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.sent = register(reg, m.sent, &err)
	m.completed = register(reg, m.completed, &err)
	m.latency = register(reg, m.latency, &err)
	m.dropped = register(reg, m.dropped, &err)
	m.outstanding = register(reg, m.outstanding, &err)
	m.targetRate = register(reg, m.targetRate, &err)
	m.violations = register(reg, m.violations, &err)
	return m, err
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C, errp *error) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	if *errp == nil {
		*errp = err
	}
	return c
}
