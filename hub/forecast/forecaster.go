package forecast

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// QueryFunc runs a PromQL range query for tenant and returns its single
// series on the grid start, start+step, ..., end (NaN where there is no
// sample; an empty Series when there is no data at all). The hub passes a
// function that evaluates expr with its engine under the tenant's scope;
// an expression yielding several series is an error. It must be safe for
// concurrent use.
type QueryFunc func(ctx context.Context, tenant, expr string, start, end time.Time, step time.Duration) (Series, error)

// SignalConfig is one signal to forecast.
type SignalConfig struct {
	// Name identifies the signal (unique), e.g. "healthcode_scans".
	Name string `yaml:"name"`
	// Tenant is the bureau whose data Expr reads.
	Tenant string `yaml:"tenant"`
	// Expr is the PromQL expression; it must yield one series, e.g.
	// sum(rate(http_requests_total{service="healthcode"}[1m])).
	Expr string `yaml:"expr"`
	// Step is the query resolution: the default is Period/1440 (1m for
	// a 24h day) in whole seconds, between 1s and 1m.
	Step time.Duration `yaml:"step"`
	// History is how far back to read (default 8 periods, or 2 weekly
	// periods when WeeklyPeriod is set and that is longer).
	History time.Duration `yaml:"history"`
	// Interval is how often to refit (default Horizon/6, at least Step).
	Interval time.Duration `yaml:"interval"`
	// Options are the period, horizon, known events and model tuning.
	Options `yaml:",inline"`
}

// SetDefaults fills unset fields.
func (c *SignalConfig) SetDefaults() {
	if c.Step == 0 && c.Period > 0 {
		c.Step = min(max(c.Period/1440/time.Second*time.Second, time.Second), time.Minute)
	}
	c.Options.SetDefaults(c.Step)
	if c.History == 0 {
		c.History = 8 * c.Period
		if w := 2 * c.WeeklyPeriod; w > c.History {
			c.History = w
		}
	}
	if c.Interval == 0 {
		c.Interval = max(c.Horizon/6, c.Step)
	}
}

// Validate names the first invalid field under prefix.
func (c *SignalConfig) Validate(prefix string) error {
	switch {
	case c.Name == "":
		return fmt.Errorf("%s.name: required", prefix)
	case c.Tenant == "":
		return fmt.Errorf("%s.tenant: required", prefix)
	case c.Expr == "":
		return fmt.Errorf("%s.expr: required", prefix)
	case c.Step <= 0:
		return fmt.Errorf("%s.step: must be positive", prefix)
	case c.History < c.Period:
		return fmt.Errorf("%s.history: %v is shorter than the period %v", prefix, c.History, c.Period)
	case c.Interval <= 0:
		return fmt.Errorf("%s.interval: must be positive", prefix)
	}
	return c.Options.Validate(prefix, c.Step)
}

// Config configures the Forecaster.
type Config struct {
	// Signals are the signals to forecast.
	Signals []SignalConfig `yaml:"signals"`
	// AccuracyWindow is how many past forecasts, once their horizon has
	// passed, the realised error metrics average (default 24).
	AccuracyWindow int `yaml:"accuracy_window"`
	// MaxPointsPerQuery splits a history longer than this into several
	// range queries (default 10000: Prometheus's HTTP API refuses over
	// 11000 points, and 8 days at 1m are 11520).
	MaxPointsPerQuery int `yaml:"max_points_per_query"`
	// QueryTimeout bounds one refit's queries (default 1m).
	QueryTimeout time.Duration `yaml:"query_timeout"`
}

// SetDefaults fills unset fields, the signals' included.
func (c *Config) SetDefaults() {
	for i := range c.Signals {
		c.Signals[i].SetDefaults()
	}
	if c.AccuracyWindow == 0 {
		c.AccuracyWindow = 24
	}
	if c.MaxPointsPerQuery == 0 {
		c.MaxPointsPerQuery = 10000
	}
	if c.QueryTimeout == 0 {
		c.QueryTimeout = time.Minute
	}
}

// Validate names the first invalid field under prefix (e.g. "forecast").
func (c *Config) Validate(prefix string) error {
	seen := map[string]bool{}
	for i := range c.Signals {
		p := fmt.Sprintf("%s.signals[%d]", prefix, i)
		if err := c.Signals[i].Validate(p); err != nil {
			return err
		}
		if seen[c.Signals[i].Name] {
			return fmt.Errorf("%s.name: %q is used twice", p, c.Signals[i].Name)
		}
		seen[c.Signals[i].Name] = true
	}
	switch {
	case c.AccuracyWindow < 1:
		return fmt.Errorf("%s.accuracy_window: at least 1", prefix)
	case c.MaxPointsPerQuery < 2:
		return fmt.Errorf("%s.max_points_per_query: at least 2", prefix)
	case c.QueryTimeout <= 0:
		return fmt.Errorf("%s.query_timeout: must be positive", prefix)
	}
	return nil
}

// Accuracy is how a signal's past forecasts compared with what happened.
type Accuracy struct {
	// MAPE and PeakError are the means over the last AccuracyWindow
	// scored forecasts (NaN before the first horizon has passed).
	MAPE      float64
	PeakError float64
	// Scored is how many forecasts the means cover.
	Scored int
}

// Forecaster refits every configured signal periodically and keeps the
// newest forecast of each. Its methods are safe for concurrent use.
type Forecaster struct {
	cfg     Config
	query   QueryFunc
	logger  *slog.Logger
	metrics *metrics
	now     func() time.Time
	owns    func(key string) bool // nil: refit every signal

	mu      sync.RWMutex
	signals map[string]*signalState
	order   []string
}

// signalState is what the Forecaster keeps per signal, under mu.
type signalState struct {
	cfg    SignalConfig
	latest Forecast
	have   bool
	// pending are past forecasts whose horizon has not been scored yet.
	pending []Forecast
	// mapes and peaks are the realised errors, newest last.
	mapes, peaks []float64
}

// New builds a Forecaster; cfg gets its defaults and is validated. It
// starts nothing: call Run.
func New(cfg Config, query QueryFunc, logger *slog.Logger, reg prometheus.Registerer) (*Forecaster, error) {
	cfg.Signals = append([]SignalConfig(nil), cfg.Signals...)
	cfg.SetDefaults()
	if err := cfg.Validate("forecast"); err != nil {
		return nil, err
	}
	if query == nil {
		return nil, errors.New("forecast: query function is nil")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	f := &Forecaster{cfg: cfg, query: query, logger: logger, metrics: m, now: time.Now, signals: map[string]*signalState{}}
	for _, s := range cfg.Signals {
		f.signals[s.Name] = &signalState{cfg: s}
		f.order = append(f.order, s.Name)
	}
	return f, nil
}

// OwnerKey is the cluster ownership key of a signal. The autoscaler uses
// the same key for the targets that read the signal, so a signal is
// refitted on the hub that acts on its forecast.
func OwnerKey(tenant, signal string) string { return "capacity/" + tenant + "/" + signal }

// SetOwnership makes this forecaster refit only the signals owns reports
// for OwnerKey (a hub cluster's ring). Call before Run.
func (f *Forecaster) SetOwnership(owns func(key string) bool) { f.owns = owns }

// Run refits every signal at once and then every its Interval, until ctx
// ends; it returns nil then. A failed refit is logged and counted, and the
// previous forecast stays.
func (f *Forecaster) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, name := range f.order {
		interval := f.signals[name].cfg.Interval
		wg.Go(func() {
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				if f.owns == nil || f.owns(OwnerKey(f.signals[name].cfg.Tenant, name)) {
					if _, err := f.Refit(ctx, name); err != nil && ctx.Err() == nil {
						f.logger.Warn("forecast refit failed", "signal", name, "err", err)
					}
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// Refit reads the signal's history now, scores the past forecasts whose
// horizon has passed, fits, stores and returns the new forecast.
func (f *Forecaster) Refit(ctx context.Context, signal string) (Forecast, error) {
	f.mu.RLock()
	st, ok := f.signals[signal]
	f.mu.RUnlock()
	if !ok {
		return Forecast{}, fmt.Errorf("unknown signal %q", signal)
	}
	sc := st.cfg
	start := time.Now()
	fc, hist, err := f.refit(ctx, sc)
	f.metrics.fitDuration.WithLabelValues(sc.Name, sc.Tenant).Observe(time.Since(start).Seconds())
	if err != nil {
		f.metrics.fitFailures.WithLabelValues(sc.Name, sc.Tenant).Inc()
		return Forecast{}, fmt.Errorf("signal %s: %w", sc.Name, err)
	}
	f.mu.Lock()
	acc := st.score(hist, f.cfg.AccuracyWindow)
	st.latest, st.have = fc, true
	st.pending = append(st.pending, fc)
	f.mu.Unlock()
	f.metrics.set(sc, fc, acc)
	return fc, nil
}

// refit queries and fits one signal.
func (f *Forecaster) refit(ctx context.Context, sc SignalConfig) (Forecast, Series, error) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.QueryTimeout)
	defer cancel()
	end := f.now().Truncate(sc.Step)
	s, err := f.queryRange(ctx, sc, end.Add(-sc.History+sc.Step), end)
	if err != nil {
		return Forecast{}, Series{}, err
	}
	fc, err := Fit(s, sc.Options)
	if err != nil {
		return Forecast{}, s, fmt.Errorf("fit: %w", err)
	}
	fc.Signal, fc.Tenant, fc.Made = sc.Name, sc.Tenant, f.now()
	return fc, s, nil
}

// queryRange reads [start, end] at sc.Step in chunks of at most
// MaxPointsPerQuery points and assembles one Series on that grid.
func (f *Forecaster) queryRange(ctx context.Context, sc SignalConfig, start, end time.Time) (Series, error) {
	n := int(end.Sub(start)/sc.Step) + 1
	out := Series{Start: start, Step: sc.Step, Values: make([]float64, n)}
	for i := range out.Values {
		out.Values[i] = math.NaN()
	}
	for from := 0; from < n; from += f.cfg.MaxPointsPerQuery {
		to := min(from+f.cfg.MaxPointsPerQuery, n) - 1
		cs, ce := start.Add(time.Duration(from)*sc.Step), start.Add(time.Duration(to)*sc.Step)
		got, err := f.query(ctx, sc.Tenant, sc.Expr, cs, ce, sc.Step)
		if err != nil {
			return Series{}, fmt.Errorf("query %s..%s: %w", cs.Format(time.RFC3339), ce.Format(time.RFC3339), err)
		}
		if len(got.Values) == 0 {
			continue
		}
		if got.Step != sc.Step {
			return Series{}, fmt.Errorf("query returned step %v, asked for %v", got.Step, sc.Step)
		}
		for i, v := range got.Values {
			d := got.Start.Add(time.Duration(i) * got.Step).Sub(start)
			if d < 0 || d%sc.Step != 0 {
				continue
			}
			if k := int(d / sc.Step); k < n {
				out.Values[k] = v
			}
		}
	}
	return out, nil
}

// score compares the pending forecasts whose horizon lies inside hist
// with it, drops them, and returns the rolling accuracy. A forecast whose
// points are mostly missing from hist is dropped unscored.
func (st *signalState) score(hist Series, window int) Accuracy {
	keep := st.pending[:0]
	for _, fc := range st.pending {
		end := fc.Start.Add(time.Duration(len(fc.Values)) * fc.Step)
		if end.After(hist.End()) {
			keep = append(keep, fc)
			continue
		}
		if mape, peak, ok := realisedError(fc, hist); ok {
			st.mapes = lastN(append(st.mapes, mape), window)
			st.peaks = lastN(append(st.peaks, peak), window)
		}
	}
	st.pending = keep
	return Accuracy{MAPE: meanOrNaN(st.mapes), PeakError: meanOrNaN(st.peaks), Scored: len(st.mapes)}
}

// realisedError is the forecast's MAPE (with the same floor as the
// backtest: 10% of the actuals' mean) and its relative error at the
// actuals' peak; ok is false when under half the points have actuals.
func realisedError(fc Forecast, hist Series) (mape, peak float64, ok bool) {
	var as, ps []float64
	for i, p := range fc.Values {
		a := hist.At(fc.Start.Add(time.Duration(i) * fc.Step))
		if math.IsNaN(a) || math.IsInf(a, 0) {
			continue
		}
		as, ps = append(as, a), append(ps, p)
	}
	if len(as) == 0 || 2*len(as) < len(fc.Values) {
		return 0, 0, false
	}
	floor := math.Max(0.1*meanAbs(as), 1e-9)
	sum, pk := 0.0, 0
	for i, a := range as {
		sum += math.Abs(a-ps[i]) / math.Max(math.Abs(a), floor)
		if a > as[pk] {
			pk = i
		}
	}
	return sum / float64(len(as)), math.Abs(as[pk]-ps[pk]) / math.Max(math.Abs(as[pk]), floor), true
}

// Latest returns the newest forecast of signal; ok is false before its
// first successful fit or for an unknown signal.
func (f *Forecaster) Latest(signal string) (Forecast, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	st, ok := f.signals[signal]
	if !ok || !st.have {
		return Forecast{}, false
	}
	return st.latest, true
}

// All returns the newest forecast of every signal that has one, in
// configuration order.
func (f *Forecaster) All() []Forecast {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Forecast, 0, len(f.order))
	for _, name := range f.order {
		if st := f.signals[name]; st.have {
			out = append(out, st.latest)
		}
	}
	return out
}

// Accuracy returns the realised accuracy of signal's past forecasts.
func (f *Forecaster) Accuracy(signal string) (Accuracy, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	st, ok := f.signals[signal]
	if !ok {
		return Accuracy{}, false
	}
	return Accuracy{MAPE: meanOrNaN(st.mapes), PeakError: meanOrNaN(st.peaks), Scored: len(st.mapes)}, true
}

// Signals returns the configured signals' names, sorted.
func (f *Forecaster) Signals() []string {
	out := append([]string(nil), f.order...)
	sort.Strings(out)
	return out
}

func lastN(v []float64, n int) []float64 {
	if len(v) > n {
		return append(v[:0], v[len(v)-n:]...)
	}
	return v
}

func meanOrNaN(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	return mean(v)
}
