package forecast

import (
	"math"
	"math/rand/v2"
	"time"
)

// synth is a synthetic signal shaped like the health-code scans: a daily
// curve (quiet night, morning rise, two peaks), optionally the 07:40
// surge (a jump to 10x the usual peak decaying over ~25 simulated
// minutes), a multiplicative linear trend, a level shift and Gaussian
// noise. The day is period long in data time, so the same shape serves
// 24h at 1m steps and a 300s compressed day at 1s steps.
type synth struct {
	period, step time.Duration
	base         float64 // the usual daily peak
	flat         bool    // no daily shape (pure trend data)
	surge        bool
	growth       float64 // relative growth per period
	noise        float64 // relative Gaussian noise sigma
	counts       bool    // add count noise: Gaussian with sigma sqrt(value), as Poisson counts have
	shiftFrom    int     // index from which the level is multiplied by shift
	shift        float64
	seed         uint64
}

var dayKnots = []struct{ at, v float64 }{
	{0, 0.05}, {5, 0.05}, {6.5, 0.3}, {8, 0.7}, {9.5, 1}, {12, 0.8}, {14, 1}, {17, 0.9}, {19, 0.6}, {22, 0.2}, {24, 0.05},
}

const surgeHour = 7 + 40.0/60

// shape is the daily curve at hour-of-day hr, peak 1 (10 at the surge).
func (g synth) shape(hr float64) float64 {
	if g.flat {
		return 1
	}
	v := 0.05
	for i := 1; i < len(dayKnots); i++ {
		a, b := dayKnots[i-1], dayKnots[i]
		if hr <= b.at {
			v = a.v + (hr-a.at)/(b.at-a.at)*(b.v-a.v)
			break
		}
	}
	if g.surge && hr >= surgeHour {
		v += (10 - 0.5667) * math.Exp(-(hr-surgeHour)/(25.0/60))
	}
	return v
}

func (g synth) m() int { return int(g.period / g.step) }

// truth is the noise-free value at index i (index 0 is a midnight).
func (g synth) truth(i int) float64 {
	m := g.m()
	hr := 24 * float64(i%m) / float64(m)
	v := g.base * g.shape(hr) * (1 + g.growth*float64(i)/float64(m))
	if g.shift != 0 && i >= g.shiftFrom {
		v *= g.shift
	}
	return v
}

// series returns n noisy points starting at index 0, at start.
func (g synth) series(start time.Time, n int) Series {
	rng := rand.New(rand.NewPCG(g.seed, 7))
	v := make([]float64, n)
	for i := range v {
		v[i] = g.truth(i) * (1 + g.noise*rng.NormFloat64())
		if g.counts {
			v[i] += math.Sqrt(g.truth(i)) * rng.NormFloat64()
		}
	}
	return Series{Start: start, Step: g.step, Values: v}
}

// surgeIndex is the index of the surge in period k (the first step at or
// after 07:40).
func (g synth) surgeIndex(k int) int {
	m := g.m()
	return k*m + int(math.Ceil(surgeHour/24*float64(m)))
}

// at is the noisy value at data time t when index 0 is at epoch; the
// noise depends only on the index, so overlapping queries agree.
func (g synth) at(epoch, t time.Time) float64 {
	i := int(t.Sub(epoch) / g.step)
	if i < 0 {
		return math.NaN()
	}
	return g.truth(i) * (1 + g.noise*rand.New(rand.NewPCG(g.seed, uint64(i))).NormFloat64())
}

// mapeVsTruth is the mean relative error of pred against the noise-free
// values from index from on.
func (g synth) mapeVsTruth(pred []float64, from int) float64 {
	s := 0.0
	for j, p := range pred {
		tr := g.truth(from + j)
		s += math.Abs(p-tr) / tr
	}
	return s / float64(len(pred))
}

func argmax(v []float64) int {
	k := 0
	for i, x := range v {
		if x > v[k] {
			k = i
		}
	}
	return k
}
