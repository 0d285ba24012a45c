package booking

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bureauhub/bureauhub/hub/refsvc"
	"github.com/bureauhub/bureauhub/hub/refsvc/simclock"
)

var _ refsvc.Service = (*Service)(nil)

// Service is the visa booking service: the state its replicas share (the
// bbolt store, the availability generation, the waiting room) and the
// shared work (scheduled releases, hold expiry). Safe for concurrent use.
type Service struct {
	cfg    Config
	logger *slog.Logger
	clock  *simclock.Clock
	cat    *catalog
	store  *store
	room   *waitingRoom

	// gen changes after every committed change to availability (booking,
	// payment, cancellation, release, expiry); replicas' caches compare it.
	gen   atomic.Uint64
	ready atomic.Bool

	slotsReleased prometheus.Counter
	holdsExpired  prometheus.Counter
}

// New opens the store of a validated config (SetDefaults, then Validate)
// and builds the service. reg, if not nil, gets the service-wide counters
// (booking_slots_released_total, booking_holds_expired_total), which
// belong to no replica. clock is the simulated clock releases and
// payment windows run on. New starts nothing; call Run.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer, clock *simclock.Clock) (*Service, error) {
	cat, err := cfg.catalog()
	if err != nil {
		return nil, fmt.Errorf("booking config: %w", err)
	}
	st, err := openStore(cfg.Store, cat)
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg: cfg, logger: logger, clock: clock, cat: cat, store: st,
		room: newWaitingRoom(cfg.WaitingRoom),
		slotsReleased: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "booking_slots_released_total", Help: "Slots released by the schedule (service-wide)."}),
		holdsExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "booking_holds_expired_total", Help: "Unpaid holds ended by the expiry sweep (service-wide)."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.slotsReleased, s.holdsExpired} {
			if err := reg.Register(c); err != nil {
				st.close()
				return nil, fmt.Errorf("register booking metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Ready reports whether Run has applied the releases due at its start, so
// the service offers what the schedule says.
func (s *Service) Ready() bool { return s.ready.Load() }

// Run applies scheduled releases as their (simulated) times come, and
// every SweepInterval ends unpaid holds past their payment window and
// drops unpolled waiting-room tickets, until ctx ends. On its first start
// on a new store it applies the releases of the current simulated day up
// to now; after a restart, those since the last one it applied.
func (s *Service) Run(ctx context.Context) error {
	for {
		if err := s.release(); err != nil {
			return err
		}
		s.ready.Store(true)
		if err := s.expire(); err != nil {
			return err
		}
		s.room.sweep(time.Now())

		wait := s.cfg.SweepInterval
		now := s.clock.Now()
		if fs := firings(s.cat.rules, s.cat.loc, now, now.AddDate(0, 0, 8)); len(fs) > 0 {
			wait = min(wait, max(time.Until(s.clock.ToWall(fs[0].at)), 0))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// release applies the firings due since the last applied one.
func (s *Service) release() error {
	now := s.clock.Now()
	from, err := s.store.releasedThrough()
	if err != nil {
		return fmt.Errorf("read release mark: %w", err)
	}
	after := from
	if from.IsZero() {
		after = midnight(now.In(s.cat.loc)).Add(-time.Nanosecond)
	}
	// Firings older than the booking window only concern past days.
	if oldest := now.AddDate(0, 0, -s.cfg.DaysAhead-1); after.Before(oldest) {
		after = oldest
	}
	if !now.After(after) {
		return nil
	}
	fs := firings(s.cat.rules, s.cat.loc, after, now)
	n, err := s.store.applyReleases(from, now, fs, s.cfg.DaysAhead)
	if err != nil {
		return fmt.Errorf("apply %d releases: %w", len(fs), err)
	}
	if len(fs) > 0 {
		s.gen.Add(1)
		s.slotsReleased.Add(float64(n))
		s.logger.Info("released slots", "firings", len(fs), "slots", n, "sim_time", now)
	}
	return nil
}

// expire ends unpaid holds past their window.
func (s *Service) expire() error {
	for {
		n, err := s.store.expireHolds(s.clock.Now(), 1000)
		if err != nil {
			return fmt.Errorf("expire holds: %w", err)
		}
		if n == 0 {
			return nil
		}
		s.gen.Add(1)
		s.holdsExpired.Add(float64(n))
		if n < 1000 {
			return nil
		}
	}
}

// Close closes the store. Call it after Run has returned.
func (s *Service) Close() error {
	if err := s.store.close(); err != nil {
		return fmt.Errorf("close booking store: %w", err)
	}
	return nil
}

var _ refsvc.Durable = (*Service)(nil)

// SetJournal makes every later booking, payment, cancellation, expiry and
// release wait until j has it durable before it is answered.
func (s *Service) SetJournal(j refsvc.Journal) { s.store.db.SetJournal(j) }

// Restore replaces the whole store with the journal's state: every
// booking, hold, idempotency key and release the journal confirmed.
func (s *Service) Restore(ctx context.Context, load func(apply func(refsvc.Change) error) error) error {
	applied, skipped, err := s.store.db.Restore(allBuckets, load)
	if err != nil {
		return fmt.Errorf("restore booking store: %w", err)
	}
	s.gen.Add(1)
	s.logger.Info("restored booking store from the journal", "keys", applied, "unknown_bucket_keys", skipped)
	return nil
}
