package forecast

import (
	"math"
	"sort"
)

// The models are pure functions of a history y (regular, no NaN; y[t] is
// the t-th point) that predict the h points after it. Time is the index:
// the period m is in steps, so the same code serves a 24h day at 1m steps
// and a 300s compressed day at 1s steps.

// model is one forecasting method as the backtest sees it.
type model struct {
	name string
	// seasonal models need a period's worth of history and compete
	// against the trend fallback.
	seasonal bool
	// minLen is the shortest history the model can be fitted on.
	minLen int
	// predict returns h forecasts following y.
	predict func(y []float64, h int) []float64
}

// Model names, as Forecast.Model reports them. A weekly variant has
// WeeklySuffix appended.
const (
	ModelSeasonalMean    = "seasonal_mean"
	ModelHoltWinters     = "holt_winters"
	ModelHoltWintersMult = "holt_winters_mult"
	ModelFourier         = "fourier"
	ModelTrend           = "trend"
	WeeklySuffix         = "_weekly"
)

// seasonalMean predicts each future point as the mean of the points at the
// same phase in the last n periods, adjusted to the current level: scaled
// by the median ratio of the last l points to that same profile when the
// series is positive (traffic shifts by a factor: a surge grows with the
// level), shifted by the median difference otherwise. The adjustment
// absorbs a level shift and the lag a trend causes; the median ignores a
// surge inside the window. With n = 1 and l = 0 it is seasonal naive. A
// sharp repeating surge is reproduced at its exact phase and height, which
// no smooth model achieves.
func seasonalMean(y []float64, m, n, l int, h int) []float64 {
	// prof is the mean of up to n same-phase points strictly before t
	// (and before the end of history).
	prof := func(t int) float64 {
		k0 := t - m
		if t >= len(y) {
			k0 = t - m*((t-len(y))/m+1)
		}
		sum, c := 0.0, 0
		for k := 0; k < n && k0-k*m >= 0; k++ {
			sum += y[k0-k*m]
			c++
		}
		if c == 0 {
			return math.NaN()
		}
		return sum / float64(c)
	}
	offset, scale := 0.0, 1.0
	if l > 0 {
		ratio := minOf(y) > 0
		res := make([]float64, 0, l)
		for t := max(len(y)-l, m); t < len(y); t++ {
			if ratio {
				res = append(res, y[t]/prof(t))
			} else {
				res = append(res, y[t]-prof(t))
			}
		}
		switch {
		case len(res) == 0:
		case ratio:
			scale = median(res)
		default:
			offset = median(res)
		}
	}
	out := make([]float64, h)
	for j := range out {
		out[j] = prof(len(y)+j)*scale + offset
	}
	return out
}

// hwParams are Holt-Winters smoothing weights: level, trend, season.
type hwParams struct{ alpha, beta, gamma float64 }

// hwGrid is searched for the weights with the least h-step error. The
// grid is small on purpose: per-step series have tiny trends (beta near
// 0) and the h-step objective is flat around its optimum.
var hwGrid = func() []hwParams {
	var g []hwParams
	for _, a := range []float64{0.02, 0.1, 0.3, 0.6} {
		for _, b := range []float64{0, 0.005, 0.05} {
			for _, c := range []float64{0.05, 0.2, 0.5} {
				g = append(g, hwParams{a, b, c})
			}
		}
	}
	return g
}()

// holtWinters fits Holt-Winters with period m (additive, or multiplicative
// seasonality when mult; y must then be positive) by grid search over the
// weights minimising the absolute error of h-step forecasts made at
// origins spread over the last two periods, and returns h forecasts. It
// needs at least 2m points.
func holtWinters(y []float64, m int, mult bool, h int) []float64 {
	best, bestP := math.Inf(1), hwGrid[0]
	for _, p := range hwGrid {
		if e := hwRun(y, m, mult, p, h, nil); e < best {
			best, bestP = e, p
		}
	}
	out := make([]float64, h)
	hwRun(y, m, mult, bestP, h, out)
	return out
}

// hwRun runs the Holt-Winters recursions over y with weights p, returns
// the summed absolute h-step error at the evaluation origins, and fills
// out (when not nil) with the forecasts following y.
func hwRun(y []float64, m int, mult bool, p hwParams, h int, out []float64) float64 {
	n := len(y)
	mean1, mean2 := mean(y[:m]), mean(y[m:2*m])
	b := (mean2 - mean1) / float64(m)
	// Level just before y[0]; the first two periods initialise the season
	// relative to the trend line through their means.
	l := mean1 - b*float64(m+1)/2
	s := make([]float64, m)
	for i := range s {
		for k := range 2 {
			base := mean1 + b*(float64(k*m+i)-float64(m-1)/2)
			if mult {
				s[i] += y[k*m+i] / base / 2
			} else {
				s[i] += (y[k*m+i] - base) / 2
			}
		}
	}
	predict := func(l, b, s float64, j int) float64 {
		if mult {
			return (l + float64(j)*b) * s
		}
		return l + float64(j)*b + s
	}
	const tiny = 1e-9
	evalFrom, stride := max(m, n-2*m), max(1, h/2)
	errSum := 0.0
	for t := range n {
		i := t % m
		var nl float64
		if mult {
			nl = p.alpha*(y[t]/s[i]) + (1-p.alpha)*(l+b)
			nl = math.Max(nl, tiny)
			s[i] = p.gamma*(y[t]/nl) + (1-p.gamma)*s[i]
		} else {
			nl = p.alpha*(y[t]-s[i]) + (1-p.alpha)*(l+b)
			s[i] = p.gamma*(y[t]-nl) + (1-p.gamma)*s[i]
		}
		b = p.beta*(nl-l) + (1-p.beta)*b
		l = nl
		if t >= evalFrom && (n-1-t)%stride == 0 {
			for j := 1; j <= h && t+j < n; j++ {
				errSum += math.Abs(y[t+j] - predict(l, b, s[(t+j)%m], j))
			}
		}
	}
	for j := range out {
		out[j] = predict(l, b, s[(n+j)%m], j+1)
	}
	return errSum
}

// fourier fits a linear trend plus the significant harmonics of period m
// (at most maxK, strongest first) and extrapolates both. Trend and the
// per-phase profile are fitted jointly by backfitting; the harmonics are
// the DFT of that profile, kept when their amplitude exceeds what the
// residual noise would produce (3.5 Rayleigh scales: about 0.2% false
// harmonics). A narrow surge spreads over many harmonics, so maxK must be
// large for it to be reproduced; its edges still ring a little, which the
// seasonal mean does not. Needs at least 2m points.
func fourier(y []float64, m, maxK int, h int) []float64 {
	n := len(y)
	// Start the trend from per-period means: a least-squares line through
	// the raw points would be tilted by where the surge falls in the
	// period.
	periods := n / m
	xs, ys := make([]float64, periods), make([]float64, periods)
	for k := range periods {
		xs[k] = float64(k*m) + float64(m-1)/2
		ys[k] = mean(y[k*m : (k+1)*m])
	}
	a, b := ols(xs, ys)
	prof := make([]float64, m)
	cnt := make([]float64, m)
	x := make([]float64, n)
	r := make([]float64, n)
	for t := range x {
		x[t] = float64(t)
	}
	for range 3 {
		clear(prof)
		clear(cnt)
		for t, v := range y {
			prof[t%m] += v - a - b*float64(t)
			cnt[t%m]++
		}
		pm := 0.0
		for i := range prof {
			prof[i] /= cnt[i]
			pm += prof[i]
		}
		pm /= float64(m)
		for i := range prof {
			prof[i] -= pm
		}
		for t, v := range y {
			r[t] = v - prof[t%m]
		}
		a, b = ols(x, r)
	}
	ssr := 0.0
	for t, v := range y {
		e := v - a - b*float64(t) - prof[t%m]
		ssr += e * e
	}
	dof := max(1, n-m-2)
	sigmaP := math.Sqrt(ssr/float64(dof)) / math.Sqrt(float64(n)/float64(m))
	thr := 3.5 * sigmaP / math.Sqrt(2*float64(m))

	cosT, sinT := make([]float64, m), make([]float64, m)
	for i := range m {
		cosT[i] = math.Cos(2 * math.Pi * float64(i) / float64(m))
		sinT[i] = math.Sin(2 * math.Pi * float64(i) / float64(m))
	}
	type harmonic struct {
		j      int
		re, im float64
		amp    float64
	}
	var hs []harmonic
	for j := 1; j <= m/2; j++ {
		re, im := 0.0, 0.0
		for phi, v := range prof {
			k := (j * phi) % m
			re += v * cosT[k]
			im -= v * sinT[k]
		}
		re /= float64(m)
		im /= float64(m)
		if amp := math.Hypot(re, im); amp > thr {
			hs = append(hs, harmonic{j, re, im, amp})
		}
	}
	sort.Slice(hs, func(i, k int) bool { return hs[i].amp > hs[k].amp })
	if len(hs) > maxK {
		hs = hs[:maxK]
	}
	out := make([]float64, h)
	for j := range out {
		t := n + j
		v := a + b*float64(t)
		for _, hm := range hs {
			k := (hm.j * (t % m)) % m
			f := 2.0
			if 2*hm.j == m {
				f = 1
			}
			v += f * (hm.re*cosT[k] - hm.im*sinT[k])
		}
		out[j] = v
	}
	return out
}

// trend extrapolates the Theil-Sen line through the last w points: the
// median of pairwise slopes, anchored at the median level at the last
// point, so a few outliers or the tail of a surge do not tilt it. Over
// 200 points it uses the pairs half a window apart, to stay linear time.
func trend(y []float64, w int, h int) []float64 {
	n := len(y)
	w = min(max(w, 1), n)
	x0 := n - w
	var slopes []float64
	if w <= 200 {
		for i := x0; i < n; i++ {
			for j := i + 1; j < n; j++ {
				slopes = append(slopes, (y[j]-y[i])/float64(j-i))
			}
		}
	} else {
		d := w / 2
		for i := x0; i+d < n; i++ {
			slopes = append(slopes, (y[i+d]-y[i])/float64(d))
		}
	}
	slope := 0.0
	if len(slopes) > 0 {
		slope = median(slopes)
	}
	lv := make([]float64, 0, w)
	for t := x0; t < n; t++ {
		lv = append(lv, y[t]-slope*float64(t-(n-1)))
	}
	level := median(lv)
	out := make([]float64, h)
	for j := range out {
		out[j] = level + slope*float64(j+1)
	}
	return out
}

// ols is the least-squares line v = a + b*x.
func ols(x, v []float64) (a, b float64) {
	mx, mv := mean(x), mean(v)
	sxx, sxv := 0.0, 0.0
	for i := range x {
		dx := x[i] - mx
		sxx += dx * dx
		sxv += dx * (v[i] - mv)
	}
	if sxx == 0 {
		return mv, 0
	}
	b = sxv / sxx
	return mv - b*mx, b
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// median returns the median of v, reordering a copy.
func median(v []float64) float64 { return quantile(v, 0.5) }

// quantile returns the q-quantile of v by linear interpolation between
// order statistics (NaN for empty v); v is not modified.
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	pos := q * float64(len(s)-1)
	i := int(math.Floor(pos))
	if i >= len(s)-1 {
		return s[len(s)-1]
	}
	f := pos - float64(i)
	return s[i]*(1-f) + s[i+1]*f
}
