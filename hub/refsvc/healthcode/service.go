package healthcode

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bureauhub/bureauhub/hub/refsvc"
	"github.com/bureauhub/bureauhub/hub/refsvc/simclock"
)

var _ refsvc.Service = (*Service)(nil)

// Service is the health-code service: the seeded population in one bbolt
// file, shared by every replica built with NewReplica. It is safe for
// concurrent use.
type Service struct {
	cfg    Config
	logger *slog.Logger
	clock  *simclock.Clock
	store  *store
	// wallNow is the clock cache TTLs run on; tests replace it before
	// building replicas.
	wallNow func() time.Time

	mu     sync.RWMutex
	caches map[*cache]struct{} // every live replica's cache
}

// New opens the store at cfg.StorePath, seeding the population on first
// open (or finishing an interrupted seeding), and registers the service's
// own metrics (healthcode_population, healthcode_seed_duration_seconds)
// with reg, which may be nil. cfg must have had SetDefaults called. clock
// is the simulated clock codes are coloured by; nil means real time.
// Replicas share the returned Service; Close it when they are done.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer, clock *simclock.Clock) (*Service, error) {
	if err := cfg.Validate("healthcode"); err != nil {
		return nil, err
	}
	if clock == nil {
		clock = simclock.Real()
	}
	start := time.Now()
	st, seeded, err := openStore(cfg, clock.Now())
	if err != nil {
		return nil, err
	}
	took := time.Since(start)
	if seeded > 0 {
		logger.Info("seeded health-code population", "people", seeded, "population", cfg.Population,
			"seed", cfg.Seed, "seed_time", st.seedTime, "seconds", took.Seconds(), "store", cfg.StorePath)
	} else {
		logger.Info("opened health-code store", "population", cfg.Population, "seed_time", st.seedTime, "store", cfg.StorePath)
	}
	if reg != nil {
		pop := prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "healthcode_population", Help: "People in the seeded population."})
		pop.Set(float64(cfg.Population))
		seedDur := prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "healthcode_seed_duration_seconds", Help: "How long this process took to seed the store; 0 if it was already seeded."})
		if seeded > 0 {
			seedDur.Set(took.Seconds())
		}
		for _, c := range []prometheus.Collector{pop, seedDur} {
			if err := reg.Register(c); err != nil {
				st.close()
				return nil, fmt.Errorf("register healthcode metrics: %w", err)
			}
		}
	}
	return &Service{
		cfg:     cfg,
		logger:  logger,
		clock:   clock,
		store:   st,
		wallNow: time.Now,
		caches:  make(map[*cache]struct{}),
	}, nil
}

// NewReplica builds one replica: its API endpoints behind its own emulated
// capacity, its own cache, and its metrics registered with r.Registerer.
// The handler implements io.Closer; Close detaches its cache.
func (s *Service) NewReplica(r refsvc.Replica) (http.Handler, error) {
	rp, err := newReplica(s, r)
	if err != nil {
		return nil, fmt.Errorf("replica %s: %w", r.ID, err)
	}
	s.mu.Lock()
	s.caches[rp.cache] = struct{}{}
	s.mu.Unlock()
	return rp, nil
}

// Run has no shared background work (cache entries expire lazily); it
// returns nil when ctx ends.
func (s *Service) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Close closes the store.
func (s *Service) Close() error {
	if err := s.store.close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// recordResult stores a test result and, if it changed the person,
// invalidates person i in every replica's cache before returning, so a scan
// that starts after recordResult returns reads the new record.
func (s *Service) recordResult(i int, at time.Time, positive bool) (r *record, applied, ok bool, err error) {
	r, applied, ok, err = s.store.record(i, at, positive)
	if !applied {
		return r, applied, ok, err
	}
	s.mu.RLock()
	for c := range s.caches {
		c.invalidate(i)
	}
	s.mu.RUnlock()
	return r, applied, ok, err
}

func (s *Service) detach(c *cache) {
	s.mu.Lock()
	delete(s.caches, c)
	s.mu.Unlock()
}

var _ refsvc.Durable = (*Service)(nil)

// SetJournal makes every later recorded result wait until j has it
// durable before it is answered.
func (s *Service) SetJournal(j refsvc.Journal) { s.store.db.SetJournal(j) }

// Restore applies the journal's recorded results over the seeded
// population (which every hub seeds alike from the same seed, population
// and seed_time) and empties every replica's cache.
func (s *Service) Restore(ctx context.Context, load func(apply func(refsvc.Change) error) error) error {
	applied, skipped, err := s.store.db.Restore(nil, load)
	if err != nil {
		return fmt.Errorf("restore health-code store: %w", err)
	}
	s.mu.RLock()
	for c := range s.caches {
		c.clear()
	}
	s.mu.RUnlock()
	s.logger.Info("restored health-code results from the journal", "people", applied, "unknown_bucket_keys", skipped)
	return nil
}
