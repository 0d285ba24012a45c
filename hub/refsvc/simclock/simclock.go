// Package simclock is the time-compressed clock the reference services, the
// load generator and the autoscaler share, so that a simulated day runs in
// minutes and several days of history exist for forecasting. Every process
// given the same Config computes the same simulated time.
package simclock

import (
	"errors"
	"fmt"
	"time"
)

// Config fixes the mapping between wall time and simulated time: at wall
// time Epoch the simulated clock reads SimStart, and it runs Speedup times
// faster than the wall clock.
type Config struct {
	// Epoch is the wall time at which the simulated clock reads SimStart.
	// Zero means "when the clock is built" (fine for one process; several
	// processes must be given the same Epoch).
	Epoch time.Time `yaml:"epoch"`
	// SimStart is the simulated time at Epoch. Zero means Epoch.
	SimStart time.Time `yaml:"sim_start"`
	// Speedup is simulated seconds per wall second; 0 means 1 (real time).
	// 288 runs a day in 5 minutes.
	Speedup float64 `yaml:"speedup"`
}

// Validate names the first invalid field under prefix.
func (c Config) Validate(prefix string) error {
	if c.Speedup < 0 {
		return fmt.Errorf("%s.speedup: must not be negative, got %v", prefix, c.Speedup)
	}
	if c.Speedup > 100000 {
		return fmt.Errorf("%s.speedup: at most 100000, got %v", prefix, c.Speedup)
	}
	return nil
}

// Clock maps wall time to simulated time. Its methods are safe for
// concurrent use (it is immutable).
type Clock struct {
	epoch    time.Time
	simStart time.Time
	speedup  float64
}

// New builds a clock; see Config for the zero values.
func New(cfg Config) *Clock {
	c := &Clock{epoch: cfg.Epoch, simStart: cfg.SimStart, speedup: cfg.Speedup}
	if c.epoch.IsZero() {
		c.epoch = time.Now()
	}
	if c.simStart.IsZero() {
		c.simStart = c.epoch
	}
	if c.speedup == 0 {
		c.speedup = 1
	}
	return c
}

// Real is a real-time clock (speedup 1, simulated time = wall time).
func Real() *Clock { return New(Config{Epoch: time.Unix(0, 0), SimStart: time.Unix(0, 0)}) }

// Now is the current simulated time.
func (c *Clock) Now() time.Time { return c.ToSim(time.Now()) }

// Speedup is simulated seconds per wall second.
func (c *Clock) Speedup() float64 { return c.speedup }

// ToSim converts a wall time to simulated time.
func (c *Clock) ToSim(wall time.Time) time.Time {
	return c.simStart.Add(time.Duration(float64(wall.Sub(c.epoch)) * c.speedup))
}

// ToWall converts a simulated time to the wall time it occurs at.
func (c *Clock) ToWall(sim time.Time) time.Time {
	return c.epoch.Add(time.Duration(float64(sim.Sub(c.simStart)) / c.speedup))
}

// WallDuration is how long a simulated duration lasts on the wall clock.
func (c *Clock) WallDuration(sim time.Duration) time.Duration {
	return time.Duration(float64(sim) / c.speedup)
}

// SimDuration is how long a wall duration lasts on the simulated clock.
func (c *Clock) SimDuration(wall time.Duration) time.Duration {
	return time.Duration(float64(wall) * c.speedup)
}

// ErrStopped is returned by Sleep when its stop channel closes first.
var ErrStopped = errors.New("stopped")

// SleepUntil waits until the simulated clock reads sim, or until stop is
// closed (then it returns ErrStopped).
func (c *Clock) SleepUntil(sim time.Time, stop <-chan struct{}) error {
	d := time.Until(c.ToWall(sim))
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-stop:
		return ErrStopped
	}
}
