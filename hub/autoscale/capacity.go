package autoscale

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// CapacityConfig tunes how a target's per-replica capacity is learned.
type CapacityConfig struct {
	// DefaultPerReplica is the rate (requests per second) one replica is
	// assumed to sustain within its SLO until it is learned.
	DefaultPerReplica float64 `yaml:"default_per_replica"`
	// Learn turns learning on; it needs the target's latency_expr and
	// slo_latency.
	Learn bool `yaml:"learn"`
	// Quantile of the per-replica rate over SLO-compliant, informative
	// observations taken as the capacity (default 0.95).
	Quantile float64 `yaml:"quantile"`
	// MinUtilization: an observation is informative when its per-replica
	// rate is at least this fraction of the current estimate (default 0.5);
	// lightly loaded replicas say nothing about their limit.
	MinUtilization float64 `yaml:"min_utilization"`
	// Window is how many informative observations are kept (default 240).
	Window int `yaml:"window"`
	// MinSamples is how many informative observations learning needs
	// (default 20).
	MinSamples int `yaml:"min_samples"`
	// Smoothing is the weight of a new estimate in the exponentially
	// smoothed capacity (default 0.2).
	Smoothing float64 `yaml:"smoothing"`
}

// SetDefaults fills unset fields.
func (c *CapacityConfig) SetDefaults() {
	if c.Quantile == 0 {
		c.Quantile = 0.95
	}
	if c.MinUtilization == 0 {
		c.MinUtilization = 0.5
	}
	if c.Window == 0 {
		c.Window = 240
	}
	if c.MinSamples == 0 {
		c.MinSamples = 20
	}
	if c.Smoothing == 0 {
		c.Smoothing = 0.2
	}
}

// Validate names the first invalid field under prefix.
func (c *CapacityConfig) Validate(prefix string) error {
	switch {
	case !(c.DefaultPerReplica > 0):
		return fmt.Errorf("%s.default_per_replica: must be positive (requests per second one replica sustains)", prefix)
	case !(c.Quantile > 0 && c.Quantile <= 1):
		return fmt.Errorf("%s.quantile: must be in (0, 1]", prefix)
	case !(c.MinUtilization >= 0 && c.MinUtilization < 1):
		return fmt.Errorf("%s.min_utilization: must be in [0, 1)", prefix)
	case c.Window < 1:
		return fmt.Errorf("%s.window: must be at least 1", prefix)
	case c.MinSamples < 1 || c.MinSamples > c.Window:
		return fmt.Errorf("%s.min_samples: must be in [1, window %d]", prefix, c.Window)
	case !(c.Smoothing > 0 && c.Smoothing <= 1):
		return fmt.Errorf("%s.smoothing: must be in (0, 1]", prefix)
	}
	return nil
}

// Observation is one sync's view of a target's load and service level.
type Observation struct {
	At time.Time
	// Rate is the request rate over all replicas.
	Rate float64
	// Ready is how many replicas served it; Desired how many were asked
	// for (observations while they differ are transitions, not steady
	// state, and are not learned from).
	Ready, Desired int
	// SLOMet says the latency objective held over the observation.
	SLOMet bool
}

// Capacity learns the rate one replica sustains within the SLO.
//
// An SLO-compliant observation at r requests per second per replica shows
// the capacity is at least r; a violation at r shows it is below r. The
// estimate is a high quantile of compliant per-replica rates, among those
// loaded enough to be informative, capped by the median per-replica rate
// of violations, exponentially smoothed. Not safe for concurrent use.
type Capacity struct {
	cfg        CapacityConfig
	estimate   float64
	learned    bool
	compliant  []float64 // ring of informative per-replica rates
	violations []float64
	next, vnxt int
}

// NewCapacity starts at cfg.DefaultPerReplica.
func NewCapacity(cfg CapacityConfig) *Capacity {
	return &Capacity{cfg: cfg, estimate: cfg.DefaultPerReplica}
}

// PerReplica is the current estimate and whether it was learned.
func (c *Capacity) PerReplica() (float64, bool) { return c.estimate, c.learned }

// Observe learns from one observation; it ignores transitions, unknown
// rates and idle replicas.
func (c *Capacity) Observe(o Observation) {
	if o.Ready <= 0 || o.Ready != o.Desired || math.IsNaN(o.Rate) || o.Rate <= 0 {
		return
	}
	r := o.Rate / float64(o.Ready)
	if !o.SLOMet {
		c.violations, c.vnxt = push(c.violations, c.vnxt, r, c.cfg.Window)
		c.update()
		return
	}
	if r < c.cfg.MinUtilization*c.estimate {
		return
	}
	c.compliant, c.next = push(c.compliant, c.next, r, c.cfg.Window)
	c.update()
}

func (c *Capacity) update() {
	ceiling := math.Inf(1)
	if len(c.violations) >= max(1, c.cfg.MinSamples/4) {
		ceiling = quantile(c.violations, 0.5)
	}
	target := math.NaN()
	if len(c.compliant) >= c.cfg.MinSamples {
		target = quantile(c.compliant, c.cfg.Quantile)
	}
	switch {
	case !math.IsNaN(target):
		target = math.Min(target, ceiling)
	case c.estimate > ceiling:
		// Not enough compliant evidence yet, but the SLO broke below the
		// estimate: the estimate is too high.
		target = ceiling
	default:
		return
	}
	if !c.learned {
		c.estimate, c.learned = target, true
		return
	}
	c.estimate += c.cfg.Smoothing * (target - c.estimate)
}

func push(ring []float64, next int, v float64, size int) ([]float64, int) {
	if len(ring) < size {
		return append(ring, v), next
	}
	ring[next] = v
	return ring, (next + 1) % size
}

// quantile is the q-quantile of xs by linear interpolation; xs is not
// modified.
func quantile(xs []float64, q float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(s)-1)
	return s[lo] + (pos-float64(lo))*(s[hi]-s[lo])
}
