package loadgen

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/bureauhub/bureauhub/hub/refsvc/simclock"
)

// Scenario names, as -scenario spells them.
const (
	ScenarioSteady        = "steady"
	ScenarioHealthcode740 = "healthcode-0740"
	ScenarioVisaRelease   = "visa-release"
)

// Steady targets, as -steady.target spells them.
const (
	TargetHealthcode = "healthcode"
	TargetBooking    = "booking"
)

// Config is one load-generation run. The zero value plus targets is a
// valid run once SetDefaults has been called.
type Config struct {
	// Scenario is steady, healthcode-0740 or visa-release.
	Scenario string `yaml:"scenario"`
	// Targets are the base URLs of the services under load.
	Targets Targets `yaml:"targets"`
	// AllowRemote permits targets that are not loopback addresses. Off by
	// default so a load test cannot be pointed at a real service by
	// mistake.
	AllowRemote bool `yaml:"allow_remote"`
	// Seed makes the run reproducible: the arrival times, the operations
	// and every client decision (which person, which slot, refresh or
	// not) follow from it, given the same answers from the services.
	Seed uint64 `yaml:"seed"`

	// Rate is the scenario's base rate in requests per wall second: the
	// constant rate of steady, the usual daytime peak of healthcode-0740
	// (the 07:40 surge is 10 times it), the peak rate of slot refreshes at
	// a visa release. It is independent of the speedup.
	Rate float64 `yaml:"rate"`
	// DayVariation is the amplitude of the seeded day-to-day level
	// variation: each simulated date's curve is scaled by 1+DayVariation*u,
	// u uniform in [-1, 1] drawn from (Seed, date).
	DayVariation float64 `yaml:"day_variation"`

	// Clock maps simulated to wall time. Leave Epoch zero for a run on its
	// own (the run starts at once at the beginning of the window); give
	// the same Clock as the services (booking's release schedule runs on
	// it) to follow their simulated time. Speedup 0 means 1 (real time).
	Clock simclock.Config `yaml:"clock"`
	// Date is the first simulated day, YYYY-MM-DD (UTC). Empty means
	// 2026-11-02 (a Monday) with a private clock, or the shared clock's
	// current day (the next day if today's window is over).
	Date string `yaml:"date"`
	// Days is how many simulated days to run (the window on each).
	Days int `yaml:"days"`
	// Window is the part of each simulated day under load, e.g. 07:00 to
	// 09:00; the default is the whole day. Outside it the rate is zero.
	Window Window `yaml:"window"`
	// Duration, if positive, stops the run after this much wall time even
	// if the window is not over.
	Duration time.Duration `yaml:"duration"`
	// Drain is how long, after the last arrival, sessions in progress may
	// go on (retries, polls, payments); then the requests still
	// outstanding are abandoned and not counted.
	Drain time.Duration `yaml:"drain"`

	// Timeout is the client timeout of each request.
	Timeout time.Duration `yaml:"timeout"`
	// MaxOutstanding bounds the client sessions in progress (each has one
	// request outstanding, two during a double click). An arrival that
	// finds the bound reached is not sent and is counted as
	// dropped_by_generator.
	MaxOutstanding int `yaml:"max_outstanding"`

	// Clients is how the simulated clients behave.
	Clients Clients `yaml:"clients"`
	// Healthcode shapes the health-code requests.
	Healthcode HealthcodeConfig `yaml:"healthcode"`
	// Booking shapes the booking requests and the visa-release scenario.
	Booking BookingConfig `yaml:"booking"`
	// SteadyTarget is the service the steady scenario loads: healthcode or
	// booking.
	SteadyTarget string `yaml:"steady_target"`

	// SLO is the objective the per-second violation count is measured
	// against.
	SLO SLO `yaml:"slo"`
}

// Targets are base URLs like http://127.0.0.1:8080 (no trailing path).
type Targets struct {
	// Healthcode is the health-code service.
	Healthcode string `yaml:"healthcode"`
	// Booking is the booking service.
	Booking string `yaml:"booking"`
}

// Window is a part of the simulated day, [From, To), as offsets from
// midnight.
type Window struct {
	// From is the start of the window, e.g. 7h.
	From time.Duration `yaml:"from"`
	// To is the end of the window, at most 24h; 0 means 24h.
	To time.Duration `yaml:"to"`
}

// Clients are the client behaviours that turn a slow service into more
// load.
type Clients struct {
	// Retries is how many times a failed request (timeout, connection
	// error, 429, 5xx) is re-sent at once: a retry storm.
	Retries int `yaml:"retries"`
	// RefreshProbability is the chance that a client whose request still
	// failed after its retries refreshes (re-issues it) after a think time.
	RefreshProbability float64 `yaml:"refresh_probability"`
	// RefreshThink is the mean think time before a refresh (uniform in
	// [0.5, 1.5] times it).
	RefreshThink time.Duration `yaml:"refresh_think"`
	// MaxRefreshes bounds the refreshes of one request.
	MaxRefreshes int `yaml:"max_refreshes"`
	// IgnoreRetryAfter makes retries and refreshes ignore the Retry-After
	// header of 429 and 503 answers; by default they wait for it.
	IgnoreRetryAfter bool `yaml:"ignore_retry_after"`
	// MaxRetryAfter caps the wait a Retry-After header can ask for.
	MaxRetryAfter time.Duration `yaml:"max_retry_after"`
	// DoubleClickProbability is the chance a booking is sent twice at once
	// with the same Idempotency-Key.
	DoubleClickProbability float64 `yaml:"double_click_probability"`
	// MaxPolls bounds the waiting-room polls of one booking.
	MaxPolls int `yaml:"max_polls"`
}

// HealthcodeConfig shapes the health-code requests.
type HealthcodeConfig struct {
	// Population is the size of the service's seeded population; scans
	// pick persons uniformly in it.
	Population int `yaml:"population"`
	// UpdateFraction is the share of requests that are POST
	// /api/v1/results rather than scans (at the usual daytime peak; updates
	// do not surge with the scans).
	UpdateFraction float64 `yaml:"update_fraction"`
	// PositiveFraction is the share of recorded results that are positive.
	PositiveFraction float64 `yaml:"positive_fraction"`
}

// BookingConfig shapes the booking requests.
type BookingConfig struct {
	// Consulates are the consulates clients look for slots at.
	Consulates []string `yaml:"consulates"`
	// VisaTypes are the visa types clients look for.
	VisaTypes []string `yaml:"visa_types"`
	// Releases are the simulated times of day slots are released at, with
	// the share of slots each releases; they should match the booking
	// service's schedule.
	Releases []Release `yaml:"releases"`
	// BookPeak is the rate of booking sessions at a release, as a multiple
	// of Rate (the slot refreshes peak at 1).
	BookPeak float64 `yaml:"book_peak"`
	// BookFraction is the share of steady booking arrivals that try to
	// book (the others only list slots).
	BookFraction float64 `yaml:"book_fraction"`
	// PayProbability is the chance a client pays for a slot it holds.
	PayProbability float64 `yaml:"pay_probability"`
}

// Release is one scheduled slot release.
type Release struct {
	// At is the simulated time of day, e.g. 8h.
	At time.Duration `yaml:"at"`
	// Share is the part of the day's slots released then; the release with
	// the largest share draws the full Rate of refreshes.
	Share float64 `yaml:"share"`
}

// SLO is a latency-and-availability objective evaluated per wall second.
type SLO struct {
	// Objective is the fraction of requests that must be good, e.g. 0.99.
	Objective float64 `yaml:"objective"`
	// Latency is the bound a good request is answered within.
	Latency time.Duration `yaml:"latency"`
}

// defaultDate is a Monday, so a one-day run has the weekday shape.
const defaultDate = "2026-11-02"

// SetDefaults fills unset fields. Defaults live here and nowhere else.
func (c *Config) SetDefaults() {
	if c.Scenario == "" {
		c.Scenario = ScenarioSteady
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Rate == 0 {
		c.Rate = 100
	}
	if c.Days == 0 {
		c.Days = 1
	}
	if c.Window.To == 0 {
		c.Window.To = 24 * time.Hour
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
	if c.Drain == 0 {
		c.Drain = c.Timeout
	}
	if c.MaxOutstanding == 0 {
		c.MaxOutstanding = 20000
	}
	if c.Clients.RefreshThink == 0 {
		c.Clients.RefreshThink = 500 * time.Millisecond
	}
	if c.Clients.MaxRefreshes == 0 {
		c.Clients.MaxRefreshes = 3
	}
	if c.Clients.MaxRetryAfter == 0 {
		c.Clients.MaxRetryAfter = 5 * time.Second
	}
	if c.Clients.MaxPolls == 0 {
		c.Clients.MaxPolls = 200
	}
	if c.Healthcode.Population == 0 {
		c.Healthcode.Population = 100000
	}
	if c.Healthcode.UpdateFraction == 0 {
		c.Healthcode.UpdateFraction = 0.05
	}
	if c.Healthcode.PositiveFraction == 0 {
		c.Healthcode.PositiveFraction = 0.01
	}
	if len(c.Booking.Consulates) == 0 {
		c.Booking.Consulates = []string{"beijing", "shanghai", "guangzhou"}
	}
	if len(c.Booking.VisaTypes) == 0 {
		c.Booking.VisaTypes = []string{"tourist", "business", "student"}
	}
	if len(c.Booking.Releases) == 0 {
		c.Booking.Releases = []Release{{At: 8 * time.Hour, Share: 0.3}, {At: 12 * time.Hour, Share: 0.3}, {At: 18 * time.Hour, Share: 0.4}}
	}
	if c.Booking.BookPeak == 0 {
		c.Booking.BookPeak = 0.5
	}
	if c.Booking.BookFraction == 0 {
		c.Booking.BookFraction = 0.1
	}
	if c.Booking.PayProbability == 0 {
		c.Booking.PayProbability = 0.7
	}
	if c.SteadyTarget == "" {
		c.SteadyTarget = TargetHealthcode
	}
	if c.SLO.Objective == 0 {
		c.SLO.Objective = 0.99
	}
	if c.SLO.Latency == 0 {
		c.SLO.Latency = 500 * time.Millisecond
	}
}

// Validate names the first invalid field. Call SetDefaults first.
func (c *Config) Validate() error {
	switch c.Scenario {
	case ScenarioSteady, ScenarioHealthcode740, ScenarioVisaRelease:
	default:
		return fmt.Errorf("scenario: unknown %q (want steady, healthcode-0740 or visa-release)", c.Scenario)
	}
	if c.SteadyTarget != TargetHealthcode && c.SteadyTarget != TargetBooking {
		return fmt.Errorf("steady_target: unknown %q (want healthcode or booking)", c.SteadyTarget)
	}
	if c.needs(TargetHealthcode) {
		if err := checkTarget("targets.healthcode", c.Targets.Healthcode, c.AllowRemote); err != nil {
			return err
		}
	}
	if c.needs(TargetBooking) {
		if err := checkTarget("targets.booking", c.Targets.Booking, c.AllowRemote); err != nil {
			return err
		}
	}
	if err := c.Clock.Validate("clock"); err != nil {
		return err
	}
	if c.Date != "" {
		if _, err := time.Parse(time.DateOnly, c.Date); err != nil {
			return fmt.Errorf("date: want YYYY-MM-DD, got %q", c.Date)
		}
	}
	switch {
	case !(c.Rate > 0) || c.Rate > 1e6:
		return fmt.Errorf("rate: must be in (0, 1e6] requests/s, got %v", c.Rate)
	case c.DayVariation < 0 || c.DayVariation >= 1:
		return fmt.Errorf("day_variation: must be in [0, 1), got %v", c.DayVariation)
	case c.Days < 1 || c.Days > 3660:
		return fmt.Errorf("days: must be in [1, 3660], got %d", c.Days)
	case c.Window.From < 0 || c.Window.To > 24*time.Hour || c.Window.From >= c.Window.To:
		return fmt.Errorf("window: want 0 <= from < to <= 24h, got %v to %v", c.Window.From, c.Window.To)
	case c.Duration < 0:
		return errors.New("duration: must not be negative")
	case c.Drain < 0:
		return errors.New("drain: must not be negative")
	case c.Timeout <= 0:
		return errors.New("timeout: must be positive")
	case c.MaxOutstanding < 1:
		return fmt.Errorf("max_outstanding: must be positive, got %d", c.MaxOutstanding)
	case c.Clients.Retries < 0 || c.Clients.Retries > 100:
		return fmt.Errorf("clients.retries: must be in [0, 100], got %d", c.Clients.Retries)
	case !isProbability(c.Clients.RefreshProbability):
		return fmt.Errorf("clients.refresh_probability: must be in [0, 1], got %v", c.Clients.RefreshProbability)
	case c.Clients.RefreshThink < 0:
		return errors.New("clients.refresh_think: must not be negative")
	case c.Clients.MaxRefreshes < 0 || c.Clients.MaxRefreshes > 100:
		return fmt.Errorf("clients.max_refreshes: must be in [0, 100], got %d", c.Clients.MaxRefreshes)
	case c.Clients.MaxRetryAfter < 0:
		return errors.New("clients.max_retry_after: must not be negative")
	case !isProbability(c.Clients.DoubleClickProbability):
		return fmt.Errorf("clients.double_click_probability: must be in [0, 1], got %v", c.Clients.DoubleClickProbability)
	case c.Clients.MaxPolls < 1:
		return fmt.Errorf("clients.max_polls: must be positive, got %d", c.Clients.MaxPolls)
	case c.Healthcode.Population < 1 || c.Healthcode.Population > 1e12:
		return fmt.Errorf("healthcode.population: must be in [1, 1e12], got %d", c.Healthcode.Population)
	case !isProbability(c.Healthcode.UpdateFraction):
		return fmt.Errorf("healthcode.update_fraction: must be in [0, 1], got %v", c.Healthcode.UpdateFraction)
	case !isProbability(c.Healthcode.PositiveFraction):
		return fmt.Errorf("healthcode.positive_fraction: must be in [0, 1], got %v", c.Healthcode.PositiveFraction)
	case c.Booking.BookPeak < 0 || c.Booking.BookPeak > 100:
		return fmt.Errorf("booking.book_peak: must be in [0, 100], got %v", c.Booking.BookPeak)
	case !isProbability(c.Booking.BookFraction):
		return fmt.Errorf("booking.book_fraction: must be in [0, 1], got %v", c.Booking.BookFraction)
	case !isProbability(c.Booking.PayProbability):
		return fmt.Errorf("booking.pay_probability: must be in [0, 1], got %v", c.Booking.PayProbability)
	case !(c.SLO.Objective > 0 && c.SLO.Objective <= 1):
		return fmt.Errorf("slo.objective: must be in (0, 1], got %v", c.SLO.Objective)
	case c.SLO.Latency <= 0:
		return errors.New("slo.latency: must be positive")
	}
	for i, name := range c.Booking.Consulates {
		if name == "" {
			return fmt.Errorf("booking.consulates[%d]: empty", i)
		}
	}
	for i, name := range c.Booking.VisaTypes {
		if name == "" {
			return fmt.Errorf("booking.visa_types[%d]: empty", i)
		}
	}
	for i, r := range c.Booking.Releases {
		if r.At < 0 || r.At >= 24*time.Hour {
			return fmt.Errorf("booking.releases[%d].at: must be in [0, 24h), got %v", i, r.At)
		}
		if !(r.Share > 0 && r.Share <= 1) {
			return fmt.Errorf("booking.releases[%d].share: must be in (0, 1], got %v", i, r.Share)
		}
	}
	return nil
}

// needs reports whether the configured scenario sends requests to target.
func (c *Config) needs(target string) bool {
	switch c.Scenario {
	case ScenarioHealthcode740:
		return target == TargetHealthcode
	case ScenarioVisaRelease:
		return target == TargetBooking
	default:
		return target == c.SteadyTarget
	}
}

func isProbability(p float64) bool { return p >= 0 && p <= 1 }

// checkTarget refuses a URL that is malformed or, unless allowRemote, not
// a loopback address. Host names other than localhost are not resolved:
// they are refused, so DNS cannot turn a "local" name into a remote host.
func checkTarget(field, raw string, allowRemote bool) error {
	if raw == "" {
		return fmt.Errorf("%s: required by the scenario", field)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%s: scheme must be http or https, got %q", field, u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("%s: no host in %q", field, raw)
	}
	if allowRemote || isLoopback(u.Hostname()) {
		return nil
	}
	return fmt.Errorf("%s: %q is not a loopback address; load tests target loopback only unless allow_remote (-allow-remote) is set", field, u.Hostname())
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RegisterFlags registers the run's flags on fs, with the current values
// of c (call SetDefaults first) as their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Scenario, "scenario", c.Scenario, "steady, healthcode-0740 or visa-release")
	fs.StringVar(&c.Targets.Healthcode, "target.healthcode", c.Targets.Healthcode, "base URL of the health-code service, e.g. http://127.0.0.1:8081")
	fs.StringVar(&c.Targets.Booking, "target.booking", c.Targets.Booking, "base URL of the booking service, e.g. http://127.0.0.1:8082")
	fs.BoolVar(&c.AllowRemote, "allow-remote", c.AllowRemote, "allow targets that are not loopback addresses")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of every random choice; the same seed gives the same arrivals")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "base rate in requests per wall second (steady: the rate; healthcode-0740: the usual peak, the 07:40 surge is 10x; visa-release: peak slot refreshes)")
	fs.Float64Var(&c.DayVariation, "day-variation", c.DayVariation, "amplitude of the seeded day-to-day level variation, e.g. 0.1")
	fs.Float64Var(&c.Clock.Speedup, "speedup", c.Clock.Speedup, "simulated seconds per wall second (288 runs a day in 5 minutes); 0 means 1")
	fs.Func("clock.epoch", "RFC 3339 wall time at which the shared simulated clock reads -clock.sim-start (default: a private clock starting at the window)", func(s string) error {
		t, err := time.Parse(time.RFC3339Nano, s)
		c.Clock.Epoch = t
		return err
	})
	fs.Func("clock.sim-start", "RFC 3339 simulated time at -clock.epoch", func(s string) error {
		t, err := time.Parse(time.RFC3339Nano, s)
		c.Clock.SimStart = t
		return err
	})
	fs.StringVar(&c.Date, "date", c.Date, "first simulated day, YYYY-MM-DD (default "+defaultDate+", or the shared clock's day)")
	fs.IntVar(&c.Days, "days", c.Days, "simulated days to run")
	fs.Func("window", "part of each simulated day to run, HH:MM-HH:MM (default 00:00-24:00)", func(s string) error {
		w, err := ParseWindow(s)
		c.Window = w
		return err
	})
	fs.DurationVar(&c.Duration, "duration", c.Duration, "stop after this wall time even if the window is not over (0: at the end of the window)")
	fs.DurationVar(&c.Drain, "drain", c.Drain, "how long sessions in progress may go on after the last arrival")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "client timeout of each request")
	fs.IntVar(&c.MaxOutstanding, "max-outstanding", c.MaxOutstanding, "bound on client sessions in progress; arrivals beyond it are dropped and counted")
	fs.IntVar(&c.Clients.Retries, "retries", c.Clients.Retries, "immediate retries of a failed request (retry storm)")
	fs.Float64Var(&c.Clients.RefreshProbability, "refresh-probability", c.Clients.RefreshProbability, "chance a client refreshes after a failure")
	fs.DurationVar(&c.Clients.RefreshThink, "refresh-think", c.Clients.RefreshThink, "mean think time before a refresh")
	fs.IntVar(&c.Clients.MaxRefreshes, "max-refreshes", c.Clients.MaxRefreshes, "bound on the refreshes of one request")
	fs.BoolVar(&c.Clients.IgnoreRetryAfter, "ignore-retry-after", c.Clients.IgnoreRetryAfter, "retry and refresh without waiting for Retry-After")
	fs.Float64Var(&c.Clients.DoubleClickProbability, "double-click-probability", c.Clients.DoubleClickProbability, "chance a booking is sent twice with the same Idempotency-Key")
	fs.IntVar(&c.Healthcode.Population, "healthcode.population", c.Healthcode.Population, "size of the health-code service's seeded population")
	fs.Float64Var(&c.Healthcode.UpdateFraction, "healthcode.update-fraction", c.Healthcode.UpdateFraction, "share of health-code requests that record a result")
	fs.Float64Var(&c.Booking.PayProbability, "booking.pay-probability", c.Booking.PayProbability, "chance a client pays for a held slot")
	fs.Float64Var(&c.Booking.BookFraction, "booking.book-fraction", c.Booking.BookFraction, "share of steady booking arrivals that book")
	fs.StringVar(&c.SteadyTarget, "steady.target", c.SteadyTarget, "service loaded by the steady scenario: healthcode or booking")
	fs.Float64Var(&c.SLO.Objective, "slo.objective", c.SLO.Objective, "fraction of requests that must be good in each second")
	fs.DurationVar(&c.SLO.Latency, "slo.latency", c.SLO.Latency, "latency bound of a good request")
}

// ParseWindow parses HH:MM-HH:MM (24:00 allowed as the end).
func ParseWindow(s string) (Window, error) {
	from, to, ok := strings.Cut(s, "-")
	if !ok {
		return Window{}, fmt.Errorf("window %q: want HH:MM-HH:MM", s)
	}
	f, err := parseTimeOfDay(from)
	if err != nil {
		return Window{}, fmt.Errorf("window %q: %w", s, err)
	}
	t, err := parseTimeOfDay(to)
	if err != nil {
		return Window{}, fmt.Errorf("window %q: %w", s, err)
	}
	if f >= t {
		return Window{}, fmt.Errorf("window %q: start must be before end", s)
	}
	return Window{From: f, To: t}, nil
}

func parseTimeOfDay(s string) (time.Duration, error) {
	var h, m int
	if n, err := fmt.Sscanf(strings.TrimSpace(s), "%d:%d", &h, &m); err != nil || n != 2 {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	d := time.Duration(h)*time.Hour + time.Duration(m)*time.Minute
	if h < 0 || m < 0 || m > 59 || d > 24*time.Hour {
		return 0, fmt.Errorf("%q is not a time of day", s)
	}
	return d, nil
}
