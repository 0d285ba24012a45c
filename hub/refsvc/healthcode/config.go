package healthcode

import (
	"fmt"
	"time"

	"github.com/bureauhub/bureauhub/hub/refsvc/capacity"
)

// maxPopulation keeps a typo in the config from seeding for hours; PersonID
// itself would allow 10^12.
const maxPopulation = 100_000_000

// Config is the health-code service's configuration.
type Config struct {
	// StorePath is the bbolt file holding the population. It is created and
	// seeded on first open; later opens reuse it, so recorded results
	// survive a restart.
	StorePath string `yaml:"store_path"`
	// Population is how many people are seeded: PersonID(0) to
	// PersonID(Population-1) exist, every other valid ID is unknown (404).
	Population int `yaml:"population"`
	// Seed makes the seeded population deterministic: the same Seed,
	// Population and SeedTime give the same people.
	Seed uint64 `yaml:"seed"`
	// SeedTime is the simulated time the population is seeded at: seeded
	// tests are taken up to 96 simulated hours before it. Zero means the
	// simulated clock's time when the store is first created. It is stored
	// with the population; a later open with a different non-zero SeedTime
	// is refused.
	SeedTime time.Time `yaml:"seed_time"`
	// Cache sizes each replica's cache of people.
	Cache CacheConfig `yaml:"cache"`
	// Capacity is each replica's emulated size.
	Capacity capacity.Config `yaml:"capacity"`
}

// CacheConfig sizes one replica's read cache.
type CacheConfig struct {
	// Size is how many people one replica caches; the least recently used
	// are evicted beyond it.
	Size int `yaml:"size"`
	// TTL is the upper bound on how long a cached person is served without
	// rereading the store. Updates made through this Service invalidate
	// every replica's cache synchronously, so TTL only bounds staleness
	// from writes the Service does not see (none today).
	TTL time.Duration `yaml:"ttl"`
}

// SetDefaults fills unset fields: 100000 people, a cache of 20000 people
// per replica kept at most 10 s, and capacity's defaults.
func (c *Config) SetDefaults() {
	if c.Population == 0 {
		c.Population = 100_000
	}
	if c.Cache.Size == 0 {
		c.Cache.Size = 20_000
	}
	if c.Cache.TTL == 0 {
		c.Cache.TTL = 10 * time.Second
	}
	c.Capacity.SetDefaults()
}

// Validate names the first invalid field under prefix (e.g.
// "services.healthcode").
func (c *Config) Validate(prefix string) error {
	switch {
	case c.StorePath == "":
		return fmt.Errorf("%s.store_path: required", prefix)
	case c.Population <= 0 || c.Population > maxPopulation:
		return fmt.Errorf("%s.population: must be between 1 and %d, got %d", prefix, maxPopulation, c.Population)
	case c.Cache.Size <= 0:
		return fmt.Errorf("%s.cache.size: must be positive, got %d", prefix, c.Cache.Size)
	case c.Cache.TTL <= 0:
		return fmt.Errorf("%s.cache.ttl: must be positive, got %s", prefix, c.Cache.TTL)
	}
	return c.Capacity.Validate(prefix + ".capacity")
}
