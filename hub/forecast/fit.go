package forecast

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// ErrNoData is returned by Fit for a series without a single finite value.
var ErrNoData = errors.New("no data: the series is empty or all NaN")

// Options are what Fit needs to know about a signal besides its history.
// All durations are in the data's own timestamps: with a time-compressed
// clock the samples carry wall time, so a simulated day that lasts 5 wall
// minutes has Period 5m, not 24h.
type Options struct {
	// Period is the main (daily) seasonal period; it must be a multiple
	// of the series' step.
	Period time.Duration `yaml:"period"`
	// WeeklyPeriod is an optional longer period (a week, or 7 compressed
	// days); its models compete once the history covers MinPeriods of
	// it. Zero disables them.
	WeeklyPeriod time.Duration `yaml:"weekly_period"`
	// Horizon is how far ahead to predict; the default is Period/48 (30m
	// for a 24h day), rounded down to whole steps.
	Horizon time.Duration `yaml:"horizon"`
	// PhaseOrigin is a time at which a period starts (midnight), used to
	// place EventOffsets. Zero means the Unix epoch.
	PhaseOrigin time.Time `yaml:"phase_origin"`
	// EventOffsets are known recurring events (slot releases, the 07:40
	// surge) as offsets into the period from PhaseOrigin, in data time:
	// for a simclock with speedup S whose SimStart is a midnight, set
	// PhaseOrigin to its Epoch and use time-of-day/S. They are hints,
	// not regressors: with enough history a seasonal model is required
	// (the trend fallback may not win), and the backtest adds a window
	// around each event's latest occurrence so PeakError measures it.
	EventOffsets []time.Duration `yaml:"event_offsets"`
	// Models tunes model fitting and choice.
	Models ModelConfig `yaml:"models"`
}

// ModelConfig tunes model fitting and choice. Zero fields take defaults.
type ModelConfig struct {
	// MinPeriods is the history, in periods, below which only the trend
	// fallback is fitted (default 2).
	MinPeriods float64 `yaml:"min_periods"`
	// BacktestFolds is how many trailing horizons are held out in turn
	// (default 4, more when that holds out under 120 points); the same
	// window 1 and 2 periods earlier, the window around the last period's
	// peak and around each event are added to them.
	BacktestFolds int `yaml:"backtest_folds"`
	// SeasonalPeriods is how many recent periods the seasonal mean
	// averages (default 4).
	SeasonalPeriods int `yaml:"seasonal_periods"`
	// MaxHarmonics caps the Fourier model's harmonics (default 128).
	MaxHarmonics int `yaml:"max_harmonics"`
	// TrendWindow is the trend fallback's window (default the longest of
	// 3 horizons, Period/8 and 10 steps: long enough that noise does not
	// tilt the line, short enough to follow a level shift).
	TrendWindow time.Duration `yaml:"trend_window"`
	// IntervalCoverage is the share of backtest errors inside the
	// prediction interval (default 0.9: the 5% and 95% quantiles).
	IntervalCoverage float64 `yaml:"interval_coverage"`
	// PeakWeight weighs PeakError against MAPE in the backtest score
	// (default 0.5: score = 0.5*MAPE + 0.5*PeakError).
	PeakWeight float64 `yaml:"peak_weight"`
	// SeasonalMargin is by how much (relative) the best seasonal model's
	// backtest MAPE must beat the trend fallback's for it to be chosen
	// (default 0.1), so seasonality must be supported by the backtest.
	SeasonalMargin float64 `yaml:"seasonal_margin"`
	// MAPEFloor, as a fraction of the history's mean absolute value, is
	// the least denominator of a relative error (default 0.1), so
	// near-zero night values do not explode the MAPE.
	MAPEFloor float64 `yaml:"mape_floor"`
}

// SetDefaults fills unset fields; step is the data's step, which the
// default horizon is rounded to.
func (o *Options) SetDefaults(step time.Duration) {
	if o.Horizon == 0 && o.Period > 0 {
		o.Horizon = o.Period / 48
		if step > 0 {
			o.Horizon = max(step, o.Horizon/step*step)
		}
	}
	m := &o.Models
	if m.MinPeriods == 0 {
		m.MinPeriods = 2
	}
	if m.BacktestFolds == 0 && step > 0 && o.Horizon > 0 {
		// At least 120 held-out points: with a horizon of a few steps,
		// 4 windows are too few to tell models apart through the noise.
		h := int((o.Horizon + step - 1) / step)
		m.BacktestFolds = max(4, (120+h-1)/h)
	}
	if m.SeasonalPeriods == 0 {
		m.SeasonalPeriods = 4
	}
	if m.MaxHarmonics == 0 {
		m.MaxHarmonics = 128
	}
	if m.TrendWindow == 0 {
		m.TrendWindow = max(3*o.Horizon, o.Period/8, 10*step)
	}
	if m.IntervalCoverage == 0 {
		m.IntervalCoverage = 0.9
	}
	if m.PeakWeight == 0 {
		m.PeakWeight = 0.5
	}
	if m.SeasonalMargin == 0 {
		m.SeasonalMargin = 0.1
	}
	if m.MAPEFloor == 0 {
		m.MAPEFloor = 0.1
	}
}

// Validate names the first invalid field under prefix; step is the data's
// step (zero skips the checks against it).
func (o *Options) Validate(prefix string, step time.Duration) error {
	m := o.Models
	switch {
	case o.Period <= 0:
		return fmt.Errorf("%s.period: required and positive", prefix)
	case step > 0 && o.Period%step != 0:
		return fmt.Errorf("%s.period: %v is not a multiple of the step %v", prefix, o.Period, step)
	case step > 0 && o.Period/step < 4:
		return fmt.Errorf("%s.period: %v is under 4 steps of %v", prefix, o.Period, step)
	case o.WeeklyPeriod < 0:
		return fmt.Errorf("%s.weekly_period: must not be negative", prefix)
	case o.WeeklyPeriod > 0 && o.WeeklyPeriod%o.Period != 0:
		return fmt.Errorf("%s.weekly_period: %v is not a multiple of the period %v", prefix, o.WeeklyPeriod, o.Period)
	case o.Horizon <= 0:
		return fmt.Errorf("%s.horizon: must be positive", prefix)
	case o.Horizon > o.Period:
		return fmt.Errorf("%s.horizon: %v is longer than the period %v", prefix, o.Horizon, o.Period)
	case m.MinPeriods < 1:
		return fmt.Errorf("%s.models.min_periods: at least 1 (got %v)", prefix, m.MinPeriods)
	case m.BacktestFolds < 1:
		return fmt.Errorf("%s.models.backtest_folds: at least 1", prefix)
	case m.SeasonalPeriods < 1:
		return fmt.Errorf("%s.models.seasonal_periods: at least 1", prefix)
	case m.MaxHarmonics < 1:
		return fmt.Errorf("%s.models.max_harmonics: at least 1", prefix)
	case m.TrendWindow <= 0:
		return fmt.Errorf("%s.models.trend_window: must be positive", prefix)
	case m.IntervalCoverage <= 0 || m.IntervalCoverage >= 1:
		return fmt.Errorf("%s.models.interval_coverage: must be in (0, 1), got %v", prefix, m.IntervalCoverage)
	case m.PeakWeight < 0 || m.PeakWeight > 1:
		return fmt.Errorf("%s.models.peak_weight: must be in [0, 1], got %v", prefix, m.PeakWeight)
	case m.SeasonalMargin < 0 || m.SeasonalMargin >= 1:
		return fmt.Errorf("%s.models.seasonal_margin: must be in [0, 1), got %v", prefix, m.SeasonalMargin)
	case m.MAPEFloor <= 0:
		return fmt.Errorf("%s.models.mape_floor: must be positive", prefix)
	}
	for i, e := range o.EventOffsets {
		if e < 0 || e >= o.Period {
			return fmt.Errorf("%s.event_offsets[%d]: %v is outside [0, period %v)", prefix, i, e, o.Period)
		}
	}
	return nil
}

// Evaluation is one candidate model's rolling-backtest result.
type Evaluation struct {
	// Model is the candidate's name.
	Model string
	// MAPE, PeakError and Score (the weighted sum the choice minimises);
	// NaN when the model could not be backtested.
	MAPE, PeakError, Score float64
}

// Fit forecasts the Horizon after the last finite point of s: it fills
// interior gaps by linear interpolation, backtests every candidate model
// the history supports on the same held-out windows, chooses the one with
// the lowest score (the trend fallback unless a seasonal model beats it by
// SeasonalMargin, or events require seasonality) and refits it on the
// whole history. When the series ends in missing points the forecast
// starts right after the last finite one and is longer by as many points,
// so it still reaches Horizon past the end of s. Signal, Tenant and Made
// are left for the caller. Fit is pure and safe for concurrent use.
func Fit(s Series, o Options) (Forecast, error) {
	f, _, err := fit(s, o)
	return f, err
}

// Backtest is Fit that also returns every candidate's evaluation, best
// first (for diagnostics and tests).
func Backtest(s Series, o Options) (Forecast, []Evaluation, error) {
	return fit(s, o)
}

// candidate is a model with its backtest.
type candidate struct {
	model
	Evaluation
	rel []float64 // relative residuals (actual-pred)/max(|pred|, floor)
	lvl []float64 // the max(|pred|, floor) each was made relative to
}

func fit(s Series, o Options) (Forecast, []Evaluation, error) {
	if s.Step <= 0 {
		return Forecast{}, nil, fmt.Errorf("series step %v: must be positive", s.Step)
	}
	o.SetDefaults(s.Step)
	if err := o.Validate("options", s.Step); err != nil {
		return Forecast{}, nil, err
	}
	y, first, gap, err := prepare(s.Values)
	if err != nil {
		return Forecast{}, nil, err
	}
	n, m := len(y), int(o.Period/s.Step)
	h := int((o.Horizon + s.Step - 1) / s.Step)
	yStart := s.Start.Add(time.Duration(first) * s.Step)
	out := Forecast{
		Start:         yStart.Add(time.Duration(n) * s.Step),
		Step:          s.Step,
		HistoryPoints: n,
		MAPE:          math.NaN(),
		PeakError:     math.NaN(),
	}
	mc := o.Models
	floor := mc.MAPEFloor * meanAbs(y)
	if floor == 0 {
		floor = 1e-9
	}
	tw := max(2, int(mc.TrendWindow/s.Step))
	trendModel := model{name: ModelTrend, minLen: 2, predict: func(y []float64, h int) []float64 { return trend(y, tw, h) }}

	covered := float64(n) / float64(m)
	var cands []model
	var reason []string
	seasonalOK := covered >= mc.MinPeriods
	if !seasonalOK {
		reason = append(reason, fmt.Sprintf("history covers %.1f periods (need %g)", covered, mc.MinPeriods))
	} else {
		cands = seasonalModels(y, m, h, mc, "")
		if mw := int(o.WeeklyPeriod / s.Step); mw > 0 && float64(n)/float64(mw) >= mc.MinPeriods {
			cands = append(cands, seasonalModels(y, mw, h, mc, WeeklySuffix)...)
		}
	}
	folds := backtestFolds(y, m, h, mc.BacktestFolds, eventIndexes(o, yStart, s.Step, n))
	// Every candidate is scored on the same windows: drop the windows
	// too early for the daily models, then the models (weekly) that
	// still cannot fit on all of them.
	if seasonalOK {
		minDaily := 2 * m
		folds = filterInts(folds, func(o int) bool { return o >= minDaily })
		if len(folds) == 0 {
			reason = append(reason, fmt.Sprintf("history covers %.1f periods, too little to hold out a backtest window after %d periods", covered, 2))
			cands = nil
		}
	}
	first0 := math.MaxInt
	for _, f := range folds {
		first0 = min(first0, f)
	}
	cands = filterModels(cands, func(c model) bool { return c.minLen <= first0 })
	folds = filterInts(folds, func(o int) bool { return o >= trendModel.minLen })
	cands = append(cands, trendModel)

	evals := make([]candidate, 0, len(cands))
	for _, c := range cands {
		evals = append(evals, evaluate(c, y, folds, h, floor, mc.PeakWeight))
	}
	sort.SliceStable(evals, func(i, j int) bool { return less(evals[i].Score, evals[j].Score) })
	chosen := chooseModel(evals, len(o.EventOffsets) > 0, mc.SeasonalMargin, &reason, len(folds))
	out.Model = chosen.name
	out.MAPE, out.PeakError = chosen.MAPE, chosen.PeakError
	out.Reason = strings.Join(reason, "; ")

	hOut := h + gap
	out.Values = chosen.predict(y, hOut)
	out.Lower, out.Upper = intervals(out.Values, chosen.rel, chosen.lvl, y, floor, tw, mc.IntervalCoverage)
	if minOf(y) >= 0 {
		// Rates and counts cannot go negative, whatever a trend says.
		for i := range out.Values {
			out.Values[i] = math.Max(out.Values[i], 0)
			out.Lower[i] = math.Max(out.Lower[i], 0)
			out.Upper[i] = math.Max(out.Upper[i], out.Values[i])
		}
	}
	res := make([]Evaluation, len(evals))
	for i, e := range evals {
		res[i] = e.Evaluation
	}
	return out, res, nil
}

// seasonalModels are the seasonal candidates for period m (in steps).
func seasonalModels(y []float64, m, h int, mc ModelConfig, suffix string) []model {
	l := min(max(2*h, m/12), m/2)
	np := mc.SeasonalPeriods
	ms := []model{
		{name: ModelSeasonalMean + suffix, seasonal: true, minLen: m + l,
			predict: func(y []float64, h int) []float64 { return seasonalMean(y, m, np, l, h) }},
		{name: ModelHoltWinters + suffix, seasonal: true, minLen: 2 * m,
			predict: func(y []float64, h int) []float64 { return holtWinters(y, m, false, h) }},
	}
	if minOf(y) > 0 {
		ms = append(ms, model{name: ModelHoltWintersMult + suffix, seasonal: true, minLen: 2 * m,
			predict: func(y []float64, h int) []float64 { return holtWinters(y, m, true, h) }})
	}
	if suffix == "" {
		// The DFT is O(m^2); a weekly one at minute steps is too slow
		// to refit often, and the daily harmonics already compete.
		k := mc.MaxHarmonics
		ms = append(ms, model{name: ModelFourier, seasonal: true, minLen: 2 * m,
			predict: func(y []float64, h int) []float64 { return fourier(y, m, k, h) }})
	}
	return ms
}

// backtestFolds returns the forecast origins of the backtest windows (each
// holds out y[o:o+h]): the last `folds` horizons, the same window one and
// two periods earlier, the window that puts the highest point of the last
// period half a horizon ahead, and likewise for each event index. Origins closer than half a horizon are merged.
func backtestFolds(y []float64, m, h, folds int, events []int) []int {
	n := len(y)
	var os []int
	add := func(o int) {
		o = min(o, n-h)
		if o < 1 {
			return
		}
		for _, p := range os {
			if abs(p-o) < max(1, h/2) {
				return
			}
		}
		os = append(os, o)
	}
	for k := 1; k <= folds; k++ {
		add(n - k*h)
	}
	// The same window one and two periods ago: how each model would
	// have done on the phase about to be forecast.
	for k := 1; k <= 2; k++ {
		add(n - k*m)
	}
	if n >= m {
		p := n - m
		for t := n - m; t < n; t++ {
			if y[t] > y[p] {
				p = t
			}
		}
		add(p - h/2)
	}
	for _, e := range events {
		add(e - h/2)
	}
	sort.Ints(os)
	return os
}

// eventIndexes returns, for each event offset, the index of its latest
// occurrence that lies at least half a horizon before the end of y.
func eventIndexes(o Options, yStart time.Time, step time.Duration, n int) []int {
	if len(o.EventOffsets) == 0 {
		return nil
	}
	origin := o.PhaseOrigin
	if origin.IsZero() {
		origin = time.Unix(0, 0)
	}
	h := int((o.Horizon + step - 1) / step)
	end := yStart.Add(time.Duration(n-h/2) * step)
	var idx []int
	for _, off := range o.EventOffsets {
		// The latest occurrence at or before end.
		since := end.Sub(origin.Add(off))
		k := since / o.Period
		if since < 0 && since%o.Period != 0 {
			k--
		}
		at := origin.Add(off).Add(k * o.Period)
		if i := int(at.Sub(yStart) / step); i >= 0 {
			idx = append(idx, i)
		}
	}
	return idx
}

// evaluate backtests c on the windows after each origin.
func evaluate(c model, y []float64, origins []int, h int, floor, peakWeight float64) candidate {
	ev := candidate{model: c, Evaluation: Evaluation{Model: c.name, MAPE: math.NaN(), PeakError: math.NaN(), Score: math.NaN()}}
	if len(origins) == 0 {
		return ev
	}
	sumAPE, cnt := 0.0, 0
	peakVal, peakPred := math.Inf(-1), math.NaN()
	for _, o := range origins {
		hh := min(h, len(y)-o)
		pred := c.predict(y[:o], hh)
		for j, p := range pred {
			a := y[o+j]
			sumAPE += math.Abs(a-p) / math.Max(math.Abs(a), floor)
			cnt++
			ev.rel = append(ev.rel, (a-p)/math.Max(math.Abs(p), floor))
			ev.lvl = append(ev.lvl, math.Max(math.Abs(p), floor))
			if a > peakVal {
				peakVal, peakPred = a, p
			}
		}
	}
	ev.MAPE = sumAPE / float64(cnt)
	ev.PeakError = math.Abs(peakVal-peakPred) / math.Max(math.Abs(peakVal), floor)
	ev.Score = (1-peakWeight)*ev.MAPE + peakWeight*ev.PeakError
	return ev
}

// chooseModel picks from evals (sorted by score; the trend model is among
// them) and appends why to reason. The best-scoring seasonal model is
// chosen when events require it or when its MAPE beats the trend's by
// margin. The gate uses MAPE alone: the error at one peak point is too
// noisy to decide whether seasonality exists (on a smooth noisy peak any
// model can be luckiest), while it is the right criterion for ranking the
// seasonal models by how well they reproduce a surge.
func chooseModel(evals []candidate, events bool, margin float64, reason *[]string, folds int) candidate {
	var bestS, tr *candidate
	for i := range evals {
		e := &evals[i]
		if e.seasonal && bestS == nil && !math.IsNaN(e.Score) {
			bestS = e
		}
		if e.name == ModelTrend {
			tr = e
		}
	}
	switch {
	case bestS == nil:
		if n := len(*reason); n > 0 {
			(*reason)[n-1] += ": recent trend fallback"
		} else {
			*reason = append(*reason, "recent trend fallback")
		}
		return *tr
	case events:
		*reason = append(*reason, fmt.Sprintf("known events require a seasonal model: %s scored best of them in %d backtest windows (%s)", bestS.name, folds, scores(evals)))
		return *bestS
	case math.IsNaN(tr.MAPE) || bestS.MAPE < (1-margin)*tr.MAPE:
		*reason = append(*reason, fmt.Sprintf("%s won %d backtest windows (%s)", bestS.name, folds, scores(evals)))
		return *bestS
	default:
		*reason = append(*reason, fmt.Sprintf("%s did not beat the recent trend's MAPE by %g%% in %d backtest windows (MAPE %.3f vs %.3f; %s): recent trend fallback", bestS.name, margin*100, folds, bestS.MAPE, tr.MAPE, scores(evals)))
		return *tr
	}
}

// scores lists the candidates' scores for a Reason.
func scores(evals []candidate) string {
	parts := make([]string, 0, len(evals))
	for _, e := range evals {
		parts = append(parts, fmt.Sprintf("%s %.3f", e.name, e.Score))
	}
	return "score " + strings.Join(parts, ", ")
}

// intervals turns backtest relative residuals (rel, each made relative to
// the level in lvl) into a prediction interval around pred. The relative
// error is not the same at every level: request counts carry Poisson
// noise, relatively larger at low rates, so quantiles of all residuals
// pooled would be too wide at a surge and too narrow at night. The
// interval at a predicted level uses the quantiles of the residuals of the
// levelNeighbours backtest points whose level is nearest (on a log scale).
// Without a backtest it uses the spread of the last trend window
// (1.4826*MAD, normal 2-sigma) instead.
func intervals(pred, rel, lvl, y []float64, floor float64, tw int, coverage float64) (lower, upper []float64) {
	lower, upper = make([]float64, len(pred)), make([]float64, len(pred))
	if len(rel) >= 5 {
		// Residuals by level, for the nearest-level search.
		idx := make([]int, len(rel))
		for i := range idx {
			idx[i] = i
		}
		sort.Slice(idx, func(a, b int) bool { return lvl[idx[a]] < lvl[idx[b]] })
		logs := make([]float64, len(idx))
		for i, j := range idx {
			logs[i] = math.Log(lvl[j])
		}
		k := levelNeighbours(len(rel))
		near := make([]float64, 0, k)
		for i, p := range pred {
			d := math.Max(math.Abs(p), floor)
			at := math.Log(d)
			// Grow [lo, hi) from where at would sit to the k nearest.
			hi := sort.SearchFloat64s(logs, at)
			lo := hi
			for hi-lo < k {
				switch {
				case lo == 0:
					hi++
				case hi == len(logs):
					lo--
				case at-logs[lo-1] <= logs[hi]-at:
					lo--
				default:
					hi++
				}
			}
			near = near[:0]
			for _, j := range idx[lo:hi] {
				near = append(near, rel[j])
			}
			qlo := math.Min(0, quantile(near, (1-coverage)/2))
			qhi := math.Max(0, quantile(near, (1+coverage)/2))
			lower[i], upper[i] = p+qlo*d, p+qhi*d
		}
		return lower, upper
	}
	w := y[max(0, len(y)-tw):]
	med := median(w)
	dev := make([]float64, len(w))
	for i, v := range w {
		dev[i] = math.Abs(v - med)
	}
	spread := 2 * 1.4826 * median(dev)
	for i, p := range pred {
		lower[i], upper[i] = p-spread, p+spread
	}
	return lower, upper
}

// levelNeighbours is how many backtest residuals at the nearest levels
// set the interval at a level: a third of them, at least 20 (all when
// fewer), enough for a 90% band's tails.
func levelNeighbours(n int) int {
	return min(n, max(20, n/3))
}

// prepare trims leading and trailing missing points (NaN or ±Inf) and fills
// interior ones by linear interpolation. first is the index of the first
// kept point and gap the number of trailing points trimmed.
func prepare(v []float64) (y []float64, first, gap int, err error) {
	ok := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	first, last := -1, -1
	for i, x := range v {
		if ok(x) {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return nil, 0, 0, ErrNoData
	}
	y = append([]float64(nil), v[first:last+1]...)
	prev := 0
	for i := 1; i < len(y); i++ {
		if !ok(y[i]) {
			continue
		}
		if i-prev > 1 {
			for k := prev + 1; k < i; k++ {
				f := float64(k-prev) / float64(i-prev)
				y[k] = y[prev]*(1-f) + y[i]*f
			}
		}
		prev = i
	}
	return y, first, len(v) - 1 - last, nil
}

// less orders scores with NaN last.
func less(a, b float64) bool {
	if math.IsNaN(b) {
		return !math.IsNaN(a)
	}
	return a < b
}

func meanAbs(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += math.Abs(x)
	}
	return s / float64(len(v))
}

func minOf(v []float64) float64 {
	m := math.Inf(1)
	for _, x := range v {
		m = math.Min(m, x)
	}
	return m
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func filterInts(v []int, keep func(int) bool) []int {
	out := v[:0]
	for _, x := range v {
		if keep(x) {
			out = append(out, x)
		}
	}
	return out
}

func filterModels(v []model, keep func(model) bool) []model {
	out := v[:0]
	for _, x := range v {
		if keep(x) {
			out = append(out, x)
		}
	}
	return out
}
