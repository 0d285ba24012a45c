package healthcode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/bureauhub/bureauhub/hub/refsvc"
	"github.com/bureauhub/bureauhub/hub/refsvc/durable"
)

// Bucket and key names in the bbolt file.
var (
	bucketPeople = []byte("people") // 8-byte big-endian index → record
	bucketMeta   = []byte("meta")

	keyPopulation = []byte("population")
	keySeed       = []byte("seed")
	keySeedTime   = []byte("seed_time") // Unix ns
	keySeeded     = []byte("seeded")    // people written so far
)

// seedBatch is how many people one seeding transaction writes: large enough
// that the per-transaction fsync does not dominate, small enough that a
// transaction's dirty pages stay a few MB.
const seedBatch = 20_000

// store is the durable population. Its methods are safe for concurrent use
// (bbolt serialises writers and gives readers snapshots).
type store struct {
	db         *durable.DB
	population int
	seedTime   time.Time
}

// openStore opens (creating if needed) the bbolt file at cfg.StorePath and
// seeds any people not yet written, resuming an interrupted seeding. now is
// the seed time if neither the file nor cfg fixes one. seeded is how many
// people this call wrote.
func openStore(cfg Config, now time.Time) (s *store, seeded int, err error) {
	if err := os.MkdirAll(filepath.Dir(cfg.StorePath), 0o755); err != nil {
		return nil, 0, fmt.Errorf("create store directory: %w", err)
	}
	// The timeout turns a second open of the same file (flock) into an
	// error instead of a hang.
	db, err := bolt.Open(cfg.StorePath, 0o600, &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, 0, fmt.Errorf("open store %s: %w", cfg.StorePath, err)
	}
	s = &store{db: durable.New(db), population: cfg.Population}
	defer func() {
		if err != nil {
			db.Close()
		}
	}()
	done, err := s.init(cfg, now)
	if err != nil {
		return nil, 0, err
	}
	for from := done; from < cfg.Population; from += seedBatch {
		to := min(from+seedBatch, cfg.Population)
		if err := s.seed(cfg.Seed, from, to); err != nil {
			return nil, 0, err
		}
	}
	return s, cfg.Population - done, nil
}

// init writes or checks the population's parameters and returns how many
// people are already written.
func (s *store) init(cfg Config, now time.Time) (done int, err error) {
	err = s.db.DB.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketPeople); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if meta.Get(keyPopulation) == nil {
			at := cfg.SeedTime
			if at.IsZero() {
				at = now
			}
			s.seedTime = at.UTC()
			return errors.Join(
				meta.Put(keyPopulation, u64(uint64(cfg.Population))),
				meta.Put(keySeed, u64(cfg.Seed)),
				meta.Put(keySeedTime, u64(uint64(s.seedTime.UnixNano()))),
				meta.Put(keySeeded, u64(0)),
			)
		}
		pop, seed := getU64(meta, keyPopulation), getU64(meta, keySeed)
		s.seedTime = time.Unix(0, int64(getU64(meta, keySeedTime))).UTC()
		done = int(getU64(meta, keySeeded))
		switch {
		case pop != uint64(cfg.Population):
			return fmt.Errorf("population: store holds %d people, config says %d (remove the store to reseed)", pop, cfg.Population)
		case seed != cfg.Seed:
			return fmt.Errorf("seed: store was seeded with %d, config says %d (remove the store to reseed)", seed, cfg.Seed)
		case !cfg.SeedTime.IsZero() && !cfg.SeedTime.Equal(s.seedTime):
			return fmt.Errorf("seed_time: store was seeded at %s, config says %s (remove the store to reseed)", s.seedTime.Format(time.RFC3339), cfg.SeedTime.Format(time.RFC3339))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store %s: %w", cfg.StorePath, err)
	}
	return done, nil
}

// seed writes people [from, to) and records the progress in the same
// transaction.
func (s *store) seed(seed uint64, from, to int) error {
	err := s.db.DB.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPeople)
		b.FillPercent = 1 // keys arrive in order: pack pages full
		for i := from; i < to; i++ {
			// bbolt keeps keys and values until the commit: no reuse.
			if err := b.Put(key(i), appendRecord(nil, seedRecord(seed, i, s.seedTime))); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keySeeded, u64(uint64(to)))
	})
	if err != nil {
		return fmt.Errorf("seed people %d-%d: %w", from, to-1, err)
	}
	return nil
}

// get reads person i; ok is false if there is no such person.
func (s *store) get(i int) (r *record, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketPeople).Get(key(i))
		if v == nil {
			return nil
		}
		r, err = decodeRecord(v)
		ok = err == nil
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("read person %d: %w", i, err)
	}
	return r, ok, nil
}

// record stores a test result for person i if it is at least as recent as
// the stored one (results can arrive out of order; the code follows the
// latest sample). It returns the person as now stored and whether the
// result was applied; ok is false if there is no such person.
func (s *store) record(i int, at time.Time, positive bool) (r *record, applied, ok bool, err error) {
	err = s.db.Update(func(tx *durable.Tx) error {
		v := tx.Bucket(bucketPeople).Get(key(i))
		if v == nil {
			return nil
		}
		ok = true
		old, err := decodeRecord(v)
		if err != nil {
			return err
		}
		if at.Before(old.testTime) {
			r = old
			return nil
		}
		r = &record{testTime: at.UTC(), positive: positive, doses: old.doses}
		applied = true
		return tx.Put(bucketPeople, key(i), appendRecord(nil, r))
	})
	if err != nil {
		if errors.Is(err, refsvc.ErrNotDurable) {
			// Committed here: the caller must still invalidate caches.
			return r, applied, ok, fmt.Errorf("record result for person %d: %w", i, err)
		}
		return nil, false, false, fmt.Errorf("record result for person %d: %w", i, err)
	}
	return r, applied, ok, nil
}

func (s *store) close() error { return s.db.Close() }

func key(i int) []byte { return u64(uint64(i)) }

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getU64(b *bolt.Bucket, k []byte) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}
