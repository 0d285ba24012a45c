package loadgen

import (
	"math"
	"testing"
	"time"

	"github.com/bureauhub/bureauhub/hub/refsvc/simclock"
)

func hm(h, m int) time.Duration { return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute }

// usualPeak is the highest DiurnalShape over the day, sampled every minute.
func usualPeak() float64 {
	p := 0.0
	for tod := time.Duration(0); tod < 24*time.Hour; tod += time.Minute {
		p = math.Max(p, DiurnalShape(tod))
	}
	return p
}

func TestHealthcodeCurve(t *testing.T) {
	peak := usualPeak()
	if peak != 1 {
		t.Fatalf("usual peak = %v, want 1 (Rate is defined as the usual peak)", peak)
	}
	tests := []struct {
		name     string
		tod      time.Duration
		min, max float64 // as a multiple of the usual peak
	}{
		{"night is quiet", hm(3, 0), 0, 0.06},
		{"just before the surge", hm(7, 39), 0.3, 0.7},
		{"surge at 07:40 is 10x the usual peak", hm(7, 40), 9.9, 10.1},
		{"still surging ten minutes later", hm(7, 50), 6, 8},
		{"decayed a lot after an hour", hm(8, 40), 1.2, 2.0},
		{"back to normal after two hours", hm(9, 40), 0.95, 1.2},
		{"moderate afternoon", hm(15, 0), 0.8, 1.0},
		{"evening decline", hm(21, 0), 0.2, 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := HealthcodeScanShape(tt.tod) / peak
			if got < tt.min || got > tt.max {
				t.Errorf("HealthcodeScanShape(%v) = %.3f x peak, want in [%v, %v]", tt.tod, got, tt.min, tt.max)
			}
		})
	}
	// The bound the thinning relies on.
	for tod := time.Duration(0); tod < 24*time.Hour; tod += 10 * time.Second {
		if v := HealthcodeScanShape(tod); v > healthcodeMaxShape {
			t.Fatalf("HealthcodeScanShape(%v) = %v exceeds the thinning bound %v", tod, v, healthcodeMaxShape)
		}
	}
}

func TestHealthcodeStreamsSurgeTenfold(t *testing.T) {
	cfg := Config{Scenario: ScenarioHealthcode740, Targets: Targets{Healthcode: "http://127.0.0.1:1"}}
	cfg.SetDefaults()
	ss := cfg.streams()
	day := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC) // a Monday
	rateOf := func(op string, tod time.Duration) float64 {
		for _, s := range ss {
			if s.op == op {
				return s.rate(day.Add(tod))
			}
		}
		t.Fatalf("no stream %s", op)
		return 0
	}
	usual := 0.0
	for tod := time.Duration(0); tod < 24*time.Hour; tod += time.Minute {
		if tod < hm(7, 40) || tod > hm(10, 0) {
			usual = math.Max(usual, rateOf(OpScan, tod))
		}
	}
	if r := rateOf(OpScan, hm(7, 40)) / usual; r < 9.9 || r > 10.1 {
		t.Errorf("scan rate at 07:40 is %.2f x the usual peak, want 10", r)
	}
	if math.Abs(usual/(cfg.Rate*(1-cfg.Healthcode.UpdateFraction))-1) > 0.001 {
		t.Errorf("usual scan peak = %v, want Rate*(1-update_fraction) = %v", usual, cfg.Rate*(1-cfg.Healthcode.UpdateFraction))
	}
	// Reads stay above 90% of the requests all day.
	for tod := time.Duration(0); tod < 24*time.Hour; tod += 15 * time.Minute {
		scan, upd := rateOf(OpScan, tod), rateOf(OpResult, tod)
		if scan/(scan+upd) < 0.9 {
			t.Fatalf("at %v scans are %.2f of requests, want >= 0.9", tod, scan/(scan+upd))
		}
	}
}

func TestVisaReleaseCurves(t *testing.T) {
	var cfg Config
	cfg.SetDefaults()
	rs := cfg.Booking.Releases
	tests := []struct {
		name     string
		got      float64
		min, max float64
	}{
		{"refresh background early morning", ReleaseRefreshShape(hm(7, 0), rs), 0.04, 0.07},
		{"refresh ramps up before 08:00", ReleaseRefreshShape(hm(7, 55), rs), 0.45, 0.55},
		{"refresh peak at 08:00 (share 0.3 of max 0.4)", ReleaseRefreshShape(hm(8, 0), rs), 0.79, 0.81},
		{"refresh peak at 18:00 is the biggest", ReleaseRefreshShape(hm(18, 0), rs), 1.04, 1.06},
		{"refresh fades after release", ReleaseRefreshShape(hm(8, 30), rs), 0.04, 0.07},
		{"no bookings before release", ReleaseBookShape(hm(7, 59), rs), 0, 0},
		{"booking spike at 08:00", ReleaseBookShape(hm(8, 0), rs), 0.74, 0.76},
		{"booking spike at 18:00", ReleaseBookShape(hm(18, 0), rs), 0.99, 1.01},
		{"bookings gone 15 minutes later", ReleaseBookShape(hm(8, 15), rs), 0, 0.01},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got < tt.min || tt.got > tt.max {
				t.Errorf("got %.4f, want in [%v, %v]", tt.got, tt.min, tt.max)
			}
		})
	}
}

func TestDayFactor(t *testing.T) {
	mon := time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC)
	sat := time.Date(2026, 11, 7, 12, 0, 0, 0, time.UTC)
	if got := DayFactor(mon, 1, 0, true); got != 1 {
		t.Errorf("weekday without variation = %v, want 1", got)
	}
	if got := DayFactor(sat, 1, 0, true); got != weekendLevel {
		t.Errorf("Saturday = %v, want %v", got, weekendLevel)
	}
	if a, b := DayFactor(mon, 7, 0.1, true), DayFactor(mon.Add(3*time.Hour), 7, 0.1, true); a != b {
		t.Errorf("factor changes within a day: %v vs %v", a, b)
	}
	if a, b := DayFactor(mon, 7, 0.1, false), DayFactor(mon, 8, 0.1, false); a == b {
		t.Errorf("seeds 7 and 8 give the same factor %v", a)
	}
	seen := map[float64]bool{}
	for d := range 30 {
		f := DayFactor(mon.Add(time.Duration(d)*24*time.Hour), 7, 0.1, false)
		if f < 0.9 || f > 1.1 {
			t.Fatalf("day %d factor %v outside 1±0.1", d, f)
		}
		seen[f] = true
	}
	if len(seen) < 25 {
		t.Errorf("only %d distinct factors over 30 days", len(seen))
	}
}

// TestArrivalsFollowTheCurve checks the thinning on the healthcode surge:
// over simulated 07:20-07:40 and 07:40-08:00 the arrival counts match the
// integral of the rate (a Poisson count N has sd √N; 5 sd is the bound).
func TestArrivalsFollowTheCurve(t *testing.T) {
	cfg := Config{Scenario: ScenarioHealthcode740, Targets: Targets{Healthcode: "http://127.0.0.1:1"}, Rate: 50}
	cfg.SetDefaults()
	ss := cfg.streams()
	simBegin := time.Date(2026, 11, 2, 7, 20, 0, 0, time.UTC)
	wall := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := simclock.New(simclock.Config{Epoch: wall, SimStart: simBegin, Speedup: 60}) // 40 sim min = 40 wall s
	end := clock.ToWall(simBegin.Add(40 * time.Minute))
	split := clock.ToWall(simBegin.Add(20 * time.Minute))

	var before, after float64 // expected counts
	for w := wall; w.Before(end); w = w.Add(time.Millisecond) {
		r := totalRate(ss, clock.ToSim(w)) / 1000
		if w.Before(split) {
			before += r
		} else {
			after += r
		}
	}
	var nBefore, nAfter float64
	arr := newArrivals(42, ss, clock, wall, end)
	for {
		a, ok := arr.next()
		if !ok {
			break
		}
		if a.at.Before(split) {
			nBefore++
		} else {
			nAfter++
		}
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"before 07:40", nBefore, before}, {"after 07:40", nAfter, after}} {
		if math.Abs(c.got-c.want) > 5*math.Sqrt(c.want) {
			t.Errorf("%s: %v arrivals, want %.0f ± %.0f", c.name, c.got, c.want, 5*math.Sqrt(c.want))
		}
	}
	if nAfter < 5*nBefore {
		t.Errorf("the surge did not show: %v arrivals before 07:40, %v after", nBefore, nAfter)
	}
}
