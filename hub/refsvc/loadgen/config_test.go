package loadgen

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(c *Config)
		wantErr string // a prefix naming the field; "" for valid
	}{
		{"defaults with a loopback target", func(c *Config) {}, ""},
		{"localhost is loopback", func(c *Config) { c.Targets.Healthcode = "http://localhost:8080" }, ""},
		{"IPv6 loopback", func(c *Config) { c.Targets.Healthcode = "http://[::1]:8080" }, ""},
		{"remote IP refused", func(c *Config) { c.Targets.Healthcode = "http://192.0.2.1:80" }, "targets.healthcode"},
		{"host name refused", func(c *Config) { c.Targets.Healthcode = "http://example.org" }, "targets.healthcode"},
		{"remote allowed explicitly", func(c *Config) { c.Targets.Healthcode = "http://192.0.2.1:80"; c.AllowRemote = true }, ""},
		{"missing target of the scenario", func(c *Config) { c.Scenario = ScenarioVisaRelease }, "targets.booking"},
		{"unknown scenario", func(c *Config) { c.Scenario = "surge" }, "scenario"},
		{"bad scheme", func(c *Config) { c.Targets.Healthcode = "ftp://127.0.0.1" }, "targets.healthcode"},
		{"zero rate", func(c *Config) { c.Rate = 0 }, "rate"},
		{"empty window", func(c *Config) { c.Window = Window{From: 9 * time.Hour, To: 7 * time.Hour} }, "window"},
		{"probability above 1", func(c *Config) { c.Clients.RefreshProbability = 1.5 }, "clients.refresh_probability"},
		{"bad date", func(c *Config) { c.Date = "21/11/2026" }, "date"},
		{"release off the day", func(c *Config) { c.Booking.Releases = []Release{{At: 25 * time.Hour, Share: 1}} }, "booking.releases[0].at"},
		{"no timeout", func(c *Config) { c.Timeout = -time.Second }, "timeout"},
		{"negative speedup", func(c *Config) { c.Clock.Speedup = -1 }, "clock.speedup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Targets: Targets{Healthcode: "http://127.0.0.1:8080"}}
			c.SetDefaults()
			tt.mod(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestParseWindow(t *testing.T) {
	tests := []struct {
		in       string
		from, to time.Duration
		ok       bool
	}{
		{"07:00-09:00", 7 * time.Hour, 9 * time.Hour, true},
		{"00:00-24:00", 0, 24 * time.Hour, true},
		{"09:00-07:00", 0, 0, false},
		{"7-9", 0, 0, false},
		{"07:00-25:00", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			w, err := ParseWindow(tt.in)
			if (err == nil) != tt.ok || (tt.ok && (w.From != tt.from || w.To != tt.to)) {
				t.Fatalf("ParseWindow(%q) = %+v, %v", tt.in, w, err)
			}
		})
	}
}

// TestTimeline: the window is placed on the private clock so the run starts
// at once; Duration caps it; with a shared clock the run waits for the
// window or refuses one that is over.
func TestTimeline(t *testing.T) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	base := func() Config {
		c := Config{Targets: Targets{Healthcode: "http://127.0.0.1:1"}, Window: Window{From: 7 * time.Hour, To: 9 * time.Hour}}
		c.Clock.Speedup = 60
		c.Days = 2
		c.SetDefaults()
		return c
	}
	c := base()
	tl, err := c.timeline(now)
	if err != nil {
		t.Fatal(err)
	}
	// Two days: 07:00 on day 1 to 09:00 on day 2 is 26 simulated hours,
	// 26 wall minutes at 60x.
	if !tl.wallBegin.Equal(now) || tl.wallEnd.Sub(tl.wallBegin) != 26*time.Minute {
		t.Errorf("private clock: %v to %v", tl.wallBegin, tl.wallEnd)
	}
	if got := tl.clock.ToSim(now); !got.Equal(time.Date(2026, 11, 2, 7, 0, 0, 0, time.UTC)) {
		t.Errorf("starts at simulated %v", got)
	}
	c.Duration = time.Minute
	if tl, _ = c.timeline(now); tl.wallEnd.Sub(tl.wallBegin) != time.Minute {
		t.Errorf("duration not applied: %v", tl.wallEnd.Sub(tl.wallBegin))
	}

	// A shared clock reading 2026-11-02 08:00 at now: the run starts now
	// (mid-window) and ends at 09:00 the next day.
	c = base()
	c.Clock.Epoch = now
	c.Clock.SimStart = time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)
	tl, err = c.timeline(now)
	if err != nil || !tl.wallBegin.Equal(now) || tl.wallEnd.Sub(now) != 25*time.Minute {
		t.Errorf("shared clock mid-window: %v to %v, %v", tl.wallBegin, tl.wallEnd, err)
	}
	// At 10:00 today's window is over: the run waits for tomorrow's.
	c.Clock.SimStart = time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	tl, err = c.timeline(now)
	if err != nil || tl.wallBegin.Sub(now) != 21*time.Minute {
		t.Errorf("shared clock after the window: begins %v after now, %v", tl.wallBegin.Sub(now), err)
	}
	// An explicit date in the past is refused.
	c.Date = "2026-10-01"
	if _, err := c.timeline(now); err == nil || !strings.HasPrefix(err.Error(), "date") {
		t.Errorf("past window: %v", err)
	}
}
