package hub

import (
	"strings"
	"testing"
	"time"

	"github.com/bureauhub/bureauhub/hub/refsvc/simclock"
)

// TestServicesInClusterNeedSharedSettings: what every hub of a cluster must
// agree on, and what others must reach, is required and named.
func TestServicesInClusterNeedSharedSettings(t *testing.T) {
	epoch := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	base := func() ServicesConfig {
		c := ServicesConfig{DataDir: t.TempDir(), Clock: simclock.Config{Epoch: epoch, Speedup: 144}}
		c.Booking = &BookingHosting{}
		c.Booking.Hosting.Tenant, c.Booking.Hosting.ListenAddress = "consular", "127.0.0.1:9401"
		c.HealthCode = &HealthCodeHosting{}
		c.HealthCode.Hosting.Tenant, c.HealthCode.Hosting.ListenAddress = "health", "127.0.0.1:9402"
		c.HealthCode.Config.SeedTime = epoch
		c.SetDefaults()
		return c
	}
	for _, tc := range []struct {
		name   string
		change func(c *ServicesConfig)
		want   string
	}{
		{"valid", func(*ServicesConfig) {}, ""},
		{"no epoch with a speedup", func(c *ServicesConfig) { c.Clock.Epoch = time.Time{} }, "services.clock.epoch: required in a cluster"},
		{"real time needs no epoch", func(c *ServicesConfig) { c.Clock = simclock.Config{} }, ""},
		{"no seed time", func(c *ServicesConfig) { c.HealthCode.Config.SeedTime = time.Time{} }, "services.healthcode.config.seed_time: required in a cluster"},
		{"wildcard listen", func(c *ServicesConfig) { c.Booking.Hosting.ListenAddress = "0.0.0.0:9401" }, "services.booking.hosting.advertise_address: required"},
		{"wildcard listen, advertised", func(c *ServicesConfig) {
			c.Booking.Hosting.ListenAddress, c.Booking.Hosting.AdvertiseAddress = ":9401", "hub-1:9401"
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.change(&c)
			if err := c.Validate(map[string]bool{"consular": true, "health": true}); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			err := c.validateClustered()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("validateClustered = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("validateClustered = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
