package hub

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bureauhub/bureauhub/hub/refsvc/booking"
	"github.com/bureauhub/bureauhub/hub/refsvc/healthcode"
	"github.com/bureauhub/bureauhub/hub/refsvc/host"
	"github.com/bureauhub/bureauhub/hub/refsvc/simclock"
)

// ServicesConfig is the reference services the hub hosts (none unless
// configured): the visa booking service and the health-code scan service.
type ServicesConfig struct {
	// DataDir holds the services' stores unless their store paths are set.
	DataDir string `yaml:"data_dir"`
	// Clock is the simulated clock the services run on (slot releases,
	// payment windows, test-result ages); its speedup compresses time.
	Clock      simclock.Config    `yaml:"clock"`
	Booking    *BookingHosting    `yaml:"booking"`
	HealthCode *HealthCodeHosting `yaml:"healthcode"`
}

// BookingHosting is the booking service and how it is hosted.
type BookingHosting struct {
	Hosting host.ServiceConfig `yaml:"hosting"`
	Config  booking.Config     `yaml:"config"`
}

// HealthCodeHosting is the health-code service and how it is hosted.
type HealthCodeHosting struct {
	Hosting host.ServiceConfig `yaml:"hosting"`
	Config  healthcode.Config  `yaml:"config"`
}

// enabled reports whether any service is configured.
func (c *ServicesConfig) enabled() bool { return c.Booking != nil || c.HealthCode != nil }

// SetDefaults fills unset fields of the configured services.
func (c *ServicesConfig) SetDefaults() {
	if b := c.Booking; b != nil {
		b.Hosting.Name = "booking"
		b.Hosting.SetDefaults()
		if b.Config.Store.Path == "" && c.DataDir != "" {
			b.Config.Store.Path = filepath.Join(c.DataDir, "booking.db")
		}
		b.Config.SetDefaults()
	}
	if h := c.HealthCode; h != nil {
		h.Hosting.Name = "healthcode"
		h.Hosting.SetDefaults()
		if h.Config.StorePath == "" && c.DataDir != "" {
			h.Config.StorePath = filepath.Join(c.DataDir, "healthcode.db")
		}
		h.Config.SetDefaults()
	}
}

// Validate names the first invalid field; tenants are the configured
// tenant names, which every service's owner must be one of.
func (c *ServicesConfig) Validate(tenants map[string]bool) error {
	if err := c.Clock.Validate("services.clock"); err != nil {
		return err
	}
	if b := c.Booking; b != nil {
		if err := b.Hosting.Validate("services.booking.hosting"); err != nil {
			return err
		}
		if !tenants[b.Hosting.Tenant] {
			return fmt.Errorf("services.booking.hosting.tenant: %q is not a configured tenant", b.Hosting.Tenant)
		}
		if b.Config.Store.Path == "" {
			return errors.New("services.booking.config.store.path: required unless services.data_dir is set")
		}
		if err := b.Config.Validate("services.booking.config"); err != nil {
			return err
		}
	}
	if h := c.HealthCode; h != nil {
		if err := h.Hosting.Validate("services.healthcode.hosting"); err != nil {
			return err
		}
		if !tenants[h.Hosting.Tenant] {
			return fmt.Errorf("services.healthcode.hosting.tenant: %q is not a configured tenant", h.Hosting.Tenant)
		}
		if h.Config.StorePath == "" {
			return errors.New("services.healthcode.config.store_path: required unless services.data_dir is set")
		}
		if err := h.Config.Validate("services.healthcode.config"); err != nil {
			return err
		}
	}
	return nil
}

// validateClustered names what a cluster needs of the services beyond
// Validate: every hub must seed the same health-code population, and
// other hubs must be able to reach each service's load balancer.
func (c *ServicesConfig) validateClustered() error {
	if c.Clock.Epoch.IsZero() && ((c.Clock.Speedup != 0 && c.Clock.Speedup != 1) || !c.Clock.SimStart.IsZero()) {
		return errors.New("services.clock.epoch: required in a cluster when speedup or sim_start is set, so that every hub's simulated clock reads the same")
	}
	if h := c.HealthCode; h != nil && h.Config.SeedTime.IsZero() {
		return errors.New("services.healthcode.config.seed_time: required in a cluster, so that every hub seeds the same population")
	}
	for _, x := range []struct {
		field string
		cfg   *host.ServiceConfig
	}{{"services.booking.hosting", bookingHosting(c)}, {"services.healthcode.hosting", healthHosting(c)}} {
		if x.cfg == nil || x.cfg.AdvertiseAddress != "" {
			continue
		}
		if h, _, err := net.SplitHostPort(x.cfg.ListenAddress); err == nil {
			if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
				return fmt.Errorf("%s.advertise_address: required in a cluster when listen_address (%s) is a wildcard: other hubs forward requests to it", x.field, x.cfg.ListenAddress)
			}
		}
	}
	return nil
}

func bookingHosting(c *ServicesConfig) *host.ServiceConfig {
	if c.Booking == nil {
		return nil
	}
	return &c.Booking.Hosting
}

func healthHosting(c *ServicesConfig) *host.ServiceConfig {
	if c.HealthCode == nil {
		return nil
	}
	return &c.HealthCode.Hosting
}

// newHost opens the configured services' stores and builds their host.
// journals, if not nil, gives each service its journal (in a cluster).
func newHost(c *ServicesConfig, logger *slog.Logger, reg prometheus.Registerer, journals func(service string) host.Journal) (*host.Host, error) {
	if c.DataDir != "" {
		if err := os.MkdirAll(c.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("services.data_dir: %w", err)
		}
	}
	clock := simclock.New(c.Clock)
	var hosted []host.Hosted
	closeAll := func() {
		for _, h := range hosted {
			_ = h.Service.Close()
		}
	}
	if b := c.Booking; b != nil {
		svc, err := booking.New(b.Config, logger.With("service", "booking"), reg, clock)
		if err != nil {
			return nil, fmt.Errorf("services.booking: %w", err)
		}
		hosted = append(hosted, host.Hosted{Config: b.Hosting, Service: svc})
	}
	if h := c.HealthCode; h != nil {
		svc, err := healthcode.New(h.Config, logger.With("service", "healthcode"), reg, clock)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("services.healthcode: %w", err)
		}
		hosted = append(hosted, host.Hosted{Config: h.Hosting, Service: svc})
	}
	if journals != nil {
		for i := range hosted {
			hosted[i].Journal = journals(hosted[i].Config.Name)
		}
	}
	hs, err := host.New(hosted, logger.With("component", "refsvc"), reg)
	if err != nil {
		closeAll()
		return nil, err
	}
	return hs, nil
}
