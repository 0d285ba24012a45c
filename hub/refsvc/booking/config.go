package booking

import (
	"fmt"
	"time"

	"github.com/bureauhub/bureauhub/hub/refsvc/capacity"
)

// Config is the booking service's configuration. Durations marked
// "simulated" run on the service's simclock; the others are wall time,
// because they pace real HTTP clients.
type Config struct {
	// Store is the durable store.
	Store StoreConfig `yaml:"store"`
	// Location is the time zone of the consulates' calendars: appointment
	// times, release times and dates are read in it. Default "UTC".
	Location string `yaml:"location"`
	// DaysAhead is the booking window: a release firing on day D releases
	// slots of days D+1 .. D+DaysAhead. Default 14.
	DaysAhead int `yaml:"days_ahead"`
	// PaymentWindow is how long (simulated) a booked slot is held for
	// payment before it is released again. Default 15m.
	PaymentWindow time.Duration `yaml:"payment_window"`
	// SweepInterval is how often (wall) Run expires unpaid holds and
	// unpolled waiting-room tickets. Default 1s.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// Consulates are the consulates, their visa types and daily slots.
	// Default: beijing, shanghai and guangzhou, each with tourist,
	// business and student visas.
	Consulates []ConsulateConfig `yaml:"consulates"`
	// Releases are the scheduled slot releases. Default: 30% at 08:00,
	// 30% at 12:00, 40% at 18:00.
	Releases []ReleaseConfig `yaml:"releases"`
	// RateLimit is the per-replica token-bucket protection.
	RateLimit RateLimitConfig `yaml:"rate_limit"`
	// WaitingRoom is the service-wide queue that takes over when too many
	// bookings are in progress.
	WaitingRoom WaitingRoomConfig `yaml:"waiting_room"`
	// Capacity is each replica's emulated pod size.
	Capacity capacity.Config `yaml:"capacity"`
}

// StoreConfig configures the bbolt file.
type StoreConfig struct {
	// Path is the bbolt database file. Required.
	Path string `yaml:"path"`
	// NoSync skips fsync on commit: much faster, but a machine crash (not a
	// process crash) may lose the last commits. For tests and demos only.
	NoSync bool `yaml:"no_sync"`
}

// ConsulateConfig is one consulate.
type ConsulateConfig struct {
	// Name is the consulate's ID in URLs and slot IDs, e.g. "beijing".
	Name string `yaml:"name"`
	// VisaTypes are the visa types the consulate handles.
	VisaTypes []VisaTypeConfig `yaml:"visa_types"`
}

// VisaTypeConfig is one visa type's daily appointments at one consulate.
type VisaTypeConfig struct {
	// Name is the visa type's ID, e.g. "tourist".
	Name string `yaml:"name"`
	// SlotsPerDay is how many appointments a day offers. They are spread
	// round-robin over Times, so each time gets SlotsPerDay/len(Times)
	// appointments (the first times one more when it does not divide).
	SlotsPerDay int `yaml:"slots_per_day"`
	// Times are the appointment times of day, "HH:MM", e.g. "09:30".
	Times []string `yaml:"times"`
}

// ReleaseConfig is one scheduled release.
type ReleaseConfig struct {
	// At is when the release fires: "HH:MM" every day, or "Weekday HH:MM"
	// (e.g. "Monday 10:00") once a week.
	At string `yaml:"at"`
	// Fraction is the share of each day's slots the release adds, for
	// every day of the booking window that is not yet fully released.
	Fraction float64 `yaml:"fraction"`
}

// RateLimitConfig configures the token buckets. Limits are per replica
// (like a pod-local limiter), so n replicas admit n times the overall rate.
// A negative rate disables that limit.
type RateLimitConfig struct {
	// PerClientRate is each client's sustained requests per second. A
	// client is the X-Client-ID header, else the remote IP. Default 10.
	PerClientRate float64 `yaml:"per_client_rate"`
	// PerClientBurst is each client's bucket size. Default 20.
	PerClientBurst int `yaml:"per_client_burst"`
	// GlobalRate is the replica's overall requests per second. Default 1000.
	GlobalRate float64 `yaml:"global_rate"`
	// GlobalBurst is the overall bucket size. Default 2000.
	GlobalBurst int `yaml:"global_burst"`
	// MaxClients bounds the per-client buckets kept. When full, idle
	// clients are evicted first, then the least recently seen. Default 10000.
	MaxClients int `yaml:"max_clients"`
	// ClientIdleTimeout is how long a client's bucket is kept without
	// requests. Keep it at least PerClientBurst/PerClientRate, so an
	// evicted client would have had a full bucket anyway. Default 1m.
	ClientIdleTimeout time.Duration `yaml:"client_idle_timeout"`
}

// WaitingRoomConfig configures the waiting room.
type WaitingRoomConfig struct {
	// MaxInProgress is how many booking attempts may run at once across
	// the service (all replicas) before newcomers are queued. Negative
	// disables the waiting room. Default 16.
	MaxInProgress int `yaml:"max_in_progress"`
	// MaxWaiting bounds the queue; beyond it bookings are refused with 503
	// reason waiting_room_full. Default 1000.
	MaxWaiting int `yaml:"max_waiting"`
	// PollAfter is the poll interval suggested to queued clients. Default
	// 500ms.
	PollAfter time.Duration `yaml:"poll_after"`
	// TicketTTL is how long a waiting ticket lives without being polled.
	// Default 10s.
	TicketTTL time.Duration `yaml:"ticket_ttl"`
	// PassTTL is how long a ready ticket's pass (and the capacity reserved
	// for it) waits to be used. Default 10s.
	PassTTL time.Duration `yaml:"pass_ttl"`
}

// SetDefaults fills every unset field.
func (c *Config) SetDefaults() {
	if c.Location == "" {
		c.Location = "UTC"
	}
	if c.DaysAhead == 0 {
		c.DaysAhead = 14
	}
	if c.PaymentWindow == 0 {
		c.PaymentWindow = 15 * time.Minute
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = time.Second
	}
	if len(c.Consulates) == 0 {
		times := []string{"09:00", "09:30", "10:00", "10:30", "11:00", "14:00", "14:30", "15:00"}
		for _, name := range []string{"beijing", "shanghai", "guangzhou"} {
			c.Consulates = append(c.Consulates, ConsulateConfig{Name: name, VisaTypes: []VisaTypeConfig{
				{Name: "tourist", SlotsPerDay: 80, Times: times},
				{Name: "business", SlotsPerDay: 40, Times: times},
				{Name: "student", SlotsPerDay: 40, Times: times},
			}})
		}
	}
	if len(c.Releases) == 0 {
		c.Releases = []ReleaseConfig{{At: "08:00", Fraction: 0.3}, {At: "12:00", Fraction: 0.3}, {At: "18:00", Fraction: 0.4}}
	}
	c.RateLimit.setDefaults()
	c.WaitingRoom.setDefaults()
	c.Capacity.SetDefaults()
}

func (c *RateLimitConfig) setDefaults() {
	if c.PerClientRate == 0 {
		c.PerClientRate = 10
	}
	if c.PerClientBurst == 0 {
		c.PerClientBurst = 20
	}
	if c.GlobalRate == 0 {
		c.GlobalRate = 1000
	}
	if c.GlobalBurst == 0 {
		c.GlobalBurst = 2000
	}
	if c.MaxClients == 0 {
		c.MaxClients = 10000
	}
	if c.ClientIdleTimeout == 0 {
		c.ClientIdleTimeout = time.Minute
	}
}

func (c *WaitingRoomConfig) setDefaults() {
	if c.MaxInProgress == 0 {
		c.MaxInProgress = 16
	}
	if c.MaxWaiting == 0 {
		c.MaxWaiting = 1000
	}
	if c.PollAfter == 0 {
		c.PollAfter = 500 * time.Millisecond
	}
	if c.TicketTTL == 0 {
		c.TicketTTL = 10 * time.Second
	}
	if c.PassTTL == 0 {
		c.PassTTL = 10 * time.Second
	}
}

// Validate names the first invalid field under prefix (e.g.
// "services.booking"). Call it after SetDefaults.
func (c *Config) Validate(prefix string) error {
	if _, err := c.catalog(); err != nil {
		return fmt.Errorf("%s.%w", prefix, err)
	}
	switch {
	case c.Store.Path == "":
		return fmt.Errorf("%s.store.path: required", prefix)
	case c.DaysAhead < 1 || c.DaysAhead > 366:
		return fmt.Errorf("%s.days_ahead: must be 1..366, got %d", prefix, c.DaysAhead)
	case c.PaymentWindow <= 0:
		return fmt.Errorf("%s.payment_window: must be positive", prefix)
	case c.SweepInterval <= 0:
		return fmt.Errorf("%s.sweep_interval: must be positive", prefix)
	}
	if err := c.RateLimit.validate(prefix + ".rate_limit"); err != nil {
		return err
	}
	if err := c.WaitingRoom.validate(prefix + ".waiting_room"); err != nil {
		return err
	}
	return c.Capacity.Validate(prefix + ".capacity")
}

func (c *RateLimitConfig) validate(prefix string) error {
	switch {
	case c.PerClientRate > 0 && c.PerClientBurst < 1:
		return fmt.Errorf("%s.per_client_burst: must be positive, got %d", prefix, c.PerClientBurst)
	case c.GlobalRate > 0 && c.GlobalBurst < 1:
		return fmt.Errorf("%s.global_burst: must be positive, got %d", prefix, c.GlobalBurst)
	case c.MaxClients < 1:
		return fmt.Errorf("%s.max_clients: must be positive, got %d", prefix, c.MaxClients)
	case c.ClientIdleTimeout <= 0:
		return fmt.Errorf("%s.client_idle_timeout: must be positive", prefix)
	}
	return nil
}

func (c *WaitingRoomConfig) validate(prefix string) error {
	switch {
	case c.MaxWaiting < 1:
		return fmt.Errorf("%s.max_waiting: must be positive, got %d", prefix, c.MaxWaiting)
	case c.PollAfter <= 0:
		return fmt.Errorf("%s.poll_after: must be positive", prefix)
	case c.TicketTTL <= 0:
		return fmt.Errorf("%s.ticket_ttl: must be positive", prefix)
	case c.PassTTL <= 0:
		return fmt.Errorf("%s.pass_ttl: must be positive", prefix)
	}
	return nil
}
