package booking

import (
	"strings"
	"testing"
	"time"
)

func TestFirings(t *testing.T) {
	rules := []releaseRule{
		{daily: true, minute: 8 * 60},
		{daily: true, minute: 12 * 60},
		{weekday: time.Monday, minute: 10 * 60},
	}
	day := func(d, h, m int) time.Time { return time.Date(2026, 11, d, h, m, 0, 0, time.UTC) } // Nov 9 2026 is a Monday
	tests := []struct {
		name         string
		after, until time.Time
		want         []firing
	}{
		{"none before the first", day(7, 0, 0), day(7, 7, 59), nil},
		{"until is inclusive", day(7, 0, 0), day(7, 8, 0), []firing{{day(7, 8, 0), 0}}},
		{"after is exclusive", day(7, 8, 0), day(7, 12, 0), []firing{{day(7, 12, 0), 1}}},
		{"weekday only on Monday", day(8, 12, 0), day(9, 12, 0), []firing{
			{day(9, 8, 0), 0}, {day(9, 10, 0), 2}, {day(9, 12, 0), 1}}},
		{"over days, in time order", day(7, 11, 0), day(8, 9, 0), []firing{
			{day(7, 12, 0), 1}, {day(8, 8, 0), 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := firings(rules, time.UTC, tt.after, tt.until)
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if !got[i].at.Equal(tt.want[i].at) || got[i].rule != tt.want[i].rule {
					t.Errorf("firing %d = %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestFiringsInLocation(t *testing.T) {
	shanghai := time.FixedZone("CST", 8*3600)
	rules := []releaseRule{{daily: true, minute: 8 * 60}}
	// 08:00 in Shanghai is 00:00 UTC.
	got := firings(rules, shanghai, time.Date(2026, 11, 6, 23, 0, 0, 0, time.UTC), time.Date(2026, 11, 7, 1, 0, 0, 0, time.UTC))
	if len(got) != 1 || !got[0].at.Equal(time.Date(2026, 11, 7, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("got %v, want one firing at 00:00 UTC", got)
	}
}

func TestReleasedAfter(t *testing.T) {
	tests := []struct {
		name       string
		cur, total int
		fraction   float64
		want       int
	}{
		{"30% of 40", 0, 40, 0.3, 12},
		{"rounds up", 0, 7, 0.3, 3},
		{"30+30+40 releases all", releasedAfter(releasedAfter(0, 7, 0.3), 7, 0.3), 7, 0.4, 7},
		{"float noise does not round up", 0, 10, 0.1 + 0.2, 3},
		{"capped at total", 35, 40, 0.3, 40},
		{"full stays full", 40, 40, 1, 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := releasedAfter(tt.cur, tt.total, tt.fraction); got != tt.want {
				t.Errorf("releasedAfter(%d, %d, %v) = %d, want %d", tt.cur, tt.total, tt.fraction, got, tt.want)
			}
		})
	}
}

func TestSlotIDs(t *testing.T) {
	cfg := testConfig(t)
	cat, err := cfg.catalog()
	if err != nil {
		t.Fatal(err)
	}
	co := cat.byName["beijing"]
	vt := co.byName["tourist"]
	day := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	for i := range vt.slotsPerDay {
		ref := slotRef{consulate: co, visa: vt, day: day, index: i}
		id := ref.id()
		if seen[id] {
			t.Fatalf("slot %d: duplicate ID %s", i, id)
		}
		seen[id] = true
		back, err := cat.parseSlotID(id)
		if err != nil || back.index != i || !back.day.Equal(day) {
			t.Fatalf("parse %s = %+v, %v; want index %d", id, back, err, i)
		}
	}
	if got := (slotRef{consulate: co, visa: vt, day: day, index: 5}).id(); got != "beijing/tourist/2026-11-21/0930-02" {
		t.Errorf("slot 5 = %s", got)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		field  string
	}{
		{"valid", func(*Config) {}, ""},
		{"no store path", func(c *Config) { c.Store.Path = "" }, "booking.store.path"},
		{"bad location", func(c *Config) { c.Location = "Mars/Olympus" }, "booking.location"},
		{"bad days ahead", func(c *Config) { c.DaysAhead = -1 }, "booking.days_ahead"},
		{"bad consulate name", func(c *Config) { c.Consulates[0].Name = "Bei Jing" }, "booking.consulates[0].name"},
		{"duplicate visa", func(c *Config) {
			c.Consulates[0].VisaTypes = append(c.Consulates[0].VisaTypes, c.Consulates[0].VisaTypes[0])
		}, "booking.consulates[0].visa_types[1].name"},
		{"bad time", func(c *Config) { c.Consulates[0].VisaTypes[0].Times[1] = "9.30" }, "booking.consulates[0].visa_types[0].times[1]"},
		{"too many slots", func(c *Config) { c.Consulates[0].VisaTypes[0].SlotsPerDay = 1000 }, "booking.consulates[0].visa_types[0].slots_per_day"},
		{"bad release", func(c *Config) { c.Releases[1].At = "Moonday 10:00" }, "booking.releases[1].at"},
		{"bad fraction", func(c *Config) { c.Releases[0].Fraction = 1.5 }, "booking.releases[0].fraction"},
		{"bad burst", func(c *Config) { c.RateLimit.PerClientRate, c.RateLimit.PerClientBurst = 1, -1 }, "booking.rate_limit.per_client_burst"},
		{"bad room", func(c *Config) { c.WaitingRoom.MaxWaiting = -1 }, "booking.waiting_room.max_waiting"},
		{"bad capacity", func(c *Config) { c.Capacity.Concurrency = -1 }, "booking.capacity.concurrency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Consulates[0].VisaTypes[0].Times = append([]string(nil), cfg.Consulates[0].VisaTypes[0].Times...)
			tt.modify(&cfg)
			err := cfg.Validate("booking")
			switch {
			case tt.field == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case tt.field != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.field+":")):
				t.Errorf("error %v, want one naming %s", err, tt.field)
			}
		})
	}
}

func TestDefaultConfigIsValid(t *testing.T) {
	cfg := Config{Store: StoreConfig{Path: "x.db"}}
	cfg.SetDefaults()
	if err := cfg.Validate("booking"); err != nil {
		t.Fatal(err)
	}
}
