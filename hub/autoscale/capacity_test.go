package autoscale

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// TestCapacityConverges feeds synthetic observations of replicas whose
// true capacity is 50 req/s (the SLO breaks above it, with 3% noise on
// where) and checks the estimate ends within 10% of it, from a default
// that is too low and from one that is too high.
func TestCapacityConverges(t *testing.T) {
	const trueCap = 50.0
	for _, tt := range []struct {
		name string
		def  float64
	}{
		{"default too low", 20},
		{"default too high", 200},
		{"default right", 50},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := CapacityConfig{DefaultPerReplica: tt.def, Learn: true}
			cfg.SetDefaults()
			if err := cfg.Validate("capacity"); err != nil {
				t.Fatal(err)
			}
			c := NewCapacity(cfg)
			if v, learned := c.PerReplica(); v != tt.def || learned {
				t.Fatalf("initial estimate %v learned %v", v, learned)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range 2000 {
				replicas := 2 + rng.IntN(5)
				perReplica := trueCap * (0.2 + 1.2*rng.Float64())
				breaks := trueCap * (1 + 0.03*rng.NormFloat64())
				c.Observe(Observation{At: t0.Add(time.Duration(i) * 15 * time.Second), Rate: perReplica * float64(replicas),
					Ready: replicas, Desired: replicas, SLOMet: perReplica <= breaks})
			}
			v, learned := c.PerReplica()
			if !learned || math.Abs(v-trueCap)/trueCap > 0.10 {
				t.Fatalf("estimate %.2f (learned %v), want within 10%% of %v", v, learned, trueCap)
			}
			t.Logf("estimate %.2f", v)
		})
	}
}

func TestCapacityIgnoresUninformative(t *testing.T) {
	cfg := CapacityConfig{DefaultPerReplica: 100, Learn: true}
	cfg.SetDefaults()
	c := NewCapacity(cfg)
	for i := range 500 {
		// Lightly loaded (10% of the estimate), transitions, no load.
		c.Observe(Observation{Rate: 40, Ready: 4, Desired: 4, SLOMet: true})
		c.Observe(Observation{Rate: 1000, Ready: 2, Desired: 4, SLOMet: false})
		c.Observe(Observation{Rate: math.NaN(), Ready: 4, Desired: 4, SLOMet: true})
		c.Observe(Observation{Rate: float64(i), Ready: 0, Desired: 1, SLOMet: false})
	}
	if v, learned := c.PerReplica(); v != 100 || learned {
		t.Fatalf("estimate %v learned %v, want the default unchanged", v, learned)
	}
}
