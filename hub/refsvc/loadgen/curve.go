package loadgen

import (
	"math"
	"math/rand/v2"
	"time"
)

// The rate curves are pure functions of the simulated time of day (an
// offset from midnight) and return a multiple of Config.Rate. The arrival
// process turns them into requests per wall second, so the speedup changes
// how fast a day goes by, not how hard it hits.

// diurnalKnots is the shape of an ordinary weekday of scans (without the
// incident): quiet at night, the morning commute, a lunch dip, the
// afternoon, the evening. Linear between knots; the peak is 1.
var diurnalKnots = []struct {
	at    time.Duration
	level float64
}{
	{0, 0.05},
	{5 * time.Hour, 0.05},
	{6*time.Hour + 30*time.Minute, 0.30},
	{8 * time.Hour, 0.70},
	{9*time.Hour + 30*time.Minute, 1.00},
	{12 * time.Hour, 0.80},
	{14 * time.Hour, 1.00},
	{17 * time.Hour, 0.90},
	{19 * time.Hour, 0.60},
	{22 * time.Hour, 0.20},
	{24 * time.Hour, 0.05},
}

// DiurnalShape is the usual daily shape of health-code scans at time of
// day tod, between 0.05 (night) and 1 (the usual peak, 09:30 and 14:00).
func DiurnalShape(tod time.Duration) float64 {
	tod = wrapDay(tod)
	for i := 1; i < len(diurnalKnots); i++ {
		a, b := diurnalKnots[i-1], diurnalKnots[i]
		if tod <= b.at {
			f := float64(tod-a.at) / float64(b.at-a.at)
			return a.level + f*(b.level-a.level)
		}
	}
	return diurnalKnots[len(diurnalKnots)-1].level
}

// The 07:40 incident: scans jumped to SurgeFactor times the usual peak at
// SurgeAt and the excess decayed exponentially with SurgeDecay (after an
// hour 9% of the excess is left, after two hours 1%).
const (
	SurgeAt     = 7*time.Hour + 40*time.Minute
	SurgeFactor = 10.0
	SurgeDecay  = 25 * time.Minute
)

// HealthcodeScanShape is the healthcode-0740 scan curve: DiurnalShape plus
// a surge that jumps at 07:40 to SurgeFactor times the usual peak and
// decays over about an hour and a half.
func HealthcodeScanShape(tod time.Duration) float64 {
	tod = wrapDay(tod)
	base := DiurnalShape(tod)
	if tod < SurgeAt {
		return base
	}
	excess := SurgeFactor - DiurnalShape(SurgeAt)
	return base + excess*math.Exp(-float64(tod-SurgeAt)/float64(SurgeDecay))
}

// healthcodeMaxShape bounds HealthcodeScanShape (its maximum is
// SurgeFactor at SurgeAt; the diurnal rise after it is far slower than
// the decay).
const healthcodeMaxShape = SurgeFactor + 0.5

// Visa-release shape parameters: clients start refreshing the slot list
// about 45 minutes before a release, more and more often, and keep going a
// few minutes after; bookings spike at the release and fade within
// minutes as the slots are gone.
const (
	refreshLead     = 45 * time.Minute
	refreshRise     = 10 * time.Minute
	refreshFade     = 5 * time.Minute
	bookFade        = 3 * time.Minute
	daytimeRefresh  = 0.05
	nighttimeRefesh = 0.01
)

// ReleaseRefreshShape is the visa-release curve of GET /api/v1/slots at
// time of day tod: a background of 0.05 (0.01 at night) plus, for each
// release, a ramp exp(-(at-tod)/10min) over the 45 minutes before it and a
// fade exp(-(tod-at)/5min) after it, scaled by the release's share
// relative to the largest share (so the biggest release peaks at 1).
func ReleaseRefreshShape(tod time.Duration, releases []Release) float64 {
	tod = wrapDay(tod)
	v := nighttimeRefesh
	if tod >= 6*time.Hour && tod < 23*time.Hour {
		v = daytimeRefresh
	}
	maxShare := maxShare(releases)
	for _, r := range releases {
		w := r.Share / maxShare
		d := tod - r.At
		switch {
		case d < -refreshLead:
		case d <= 0:
			v += w * math.Exp(float64(d)/float64(refreshRise))
		default:
			v += w * math.Exp(-float64(d)/float64(refreshFade))
		}
	}
	return v
}

// ReleaseBookShape is the visa-release curve of booking sessions, as a
// multiple of Config.Booking.BookPeak*Rate: zero before a release, 1 at
// the biggest release, fading as exp(-(tod-at)/3min).
func ReleaseBookShape(tod time.Duration, releases []Release) float64 {
	tod = wrapDay(tod)
	maxShare := maxShare(releases)
	v := 0.0
	for _, r := range releases {
		if d := tod - r.At; d >= 0 {
			v += r.Share / maxShare * math.Exp(-float64(d)/float64(bookFade))
		}
	}
	return v
}

func maxShare(releases []Release) float64 {
	m := 0.0
	for _, r := range releases {
		m = math.Max(m, r.Share)
	}
	if m == 0 {
		return 1
	}
	return m
}

// weekendLevel is the level of a Saturday or Sunday relative to a weekday
// (fewer commuters scan), a weekly pattern a forecaster can learn.
const weekendLevel = 0.7

// DayFactor is the level of the simulated day containing sim: the weekly
// pattern (if weekly) times 1+variation*u, u uniform in [-1, 1] drawn from
// (seed, date), so every run with the same seed sees the same days.
func DayFactor(sim time.Time, seed uint64, variation float64, weekly bool) float64 {
	f := 1.0
	if weekly {
		if wd := sim.UTC().Weekday(); wd == time.Saturday || wd == time.Sunday {
			f = weekendLevel
		}
	}
	if variation > 0 {
		day := uint64(sim.UTC().Unix() / 86400)
		u := rand.New(rand.NewPCG(seed, day^0x9e3779b97f4a7c15)).Float64()*2 - 1
		f *= 1 + variation*u
	}
	return f
}

// TimeOfDay is the offset of sim from its UTC midnight.
func TimeOfDay(sim time.Time) time.Duration {
	sim = sim.UTC()
	y, m, d := sim.Date()
	return sim.Sub(time.Date(y, m, d, 0, 0, 0, 0, time.UTC))
}

func wrapDay(tod time.Duration) time.Duration {
	tod %= 24 * time.Hour
	if tod < 0 {
		tod += 24 * time.Hour
	}
	return tod
}

// Operations the simulated clients perform.
const (
	OpScan   = "scan"   // GET /api/v1/codes/{id}
	OpResult = "result" // POST /api/v1/results
	OpSlots  = "slots"  // GET /api/v1/slots
	OpBook   = "book"   // POST /api/v1/bookings
	OpPoll   = "poll"   // GET /api/v1/queue/{ticket}
	OpPay    = "pay"    // POST /api/v1/bookings/{id}/pay
)

// stream is one independent arrival process: sessions starting with op,
// at rate(sim) sessions per wall second, never more than max.
type stream struct {
	op   string
	max  float64
	rate func(sim time.Time) float64
}

// streams builds the scenario's arrival processes from a validated config.
func (c *Config) streams() []stream {
	inWindow := func(sim time.Time) bool {
		tod := TimeOfDay(sim)
		return tod >= c.Window.From && tod < c.Window.To
	}
	day := func(sim time.Time, weekly bool) float64 {
		return DayFactor(sim, c.Seed, c.DayVariation, weekly)
	}
	maxDay := 1 + c.DayVariation
	var out []stream
	add := func(op string, max float64, rate func(sim time.Time) float64) {
		if max <= 0 {
			return
		}
		out = append(out, stream{op: op, max: max, rate: func(sim time.Time) float64 {
			if !inWindow(sim) {
				return 0
			}
			return rate(sim)
		}})
	}
	switch c.Scenario {
	case ScenarioHealthcode740:
		scan := c.Rate * (1 - c.Healthcode.UpdateFraction)
		upd := c.Rate * c.Healthcode.UpdateFraction
		add(OpScan, scan*healthcodeMaxShape*maxDay, func(sim time.Time) float64 {
			return scan * HealthcodeScanShape(TimeOfDay(sim)) * day(sim, true)
		})
		add(OpResult, upd*maxDay, func(sim time.Time) float64 {
			return upd * DiurnalShape(TimeOfDay(sim)) * day(sim, true)
		})
	case ScenarioVisaRelease:
		rs := c.Booking.Releases
		refreshMax := c.Rate * (daytimeRefresh + float64(len(rs))) * maxDay
		add(OpSlots, refreshMax, func(sim time.Time) float64 {
			return c.Rate * ReleaseRefreshShape(TimeOfDay(sim), rs) * day(sim, false)
		})
		book := c.Rate * c.Booking.BookPeak
		add(OpBook, book*float64(len(rs))*maxDay, func(sim time.Time) float64 {
			return book * ReleaseBookShape(TimeOfDay(sim), rs) * day(sim, false)
		})
	default:
		first, second, frac := OpScan, OpResult, c.Healthcode.UpdateFraction
		if c.SteadyTarget == TargetBooking {
			first, second, frac = OpSlots, OpBook, c.Booking.BookFraction
		}
		a, b := c.Rate*(1-frac), c.Rate*frac
		add(first, a, func(time.Time) float64 { return a })
		add(second, b, func(time.Time) float64 { return b })
	}
	return out
}

// totalRate is the scenario's arrival rate at sim, sessions per wall
// second.
func totalRate(ss []stream, sim time.Time) float64 {
	v := 0.0
	for _, s := range ss {
		v += s.rate(sim)
	}
	return v
}
