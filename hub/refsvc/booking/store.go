package booking

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/bureauhub/bureauhub/hub/refsvc/durable"
)

// The store's buckets. Times are simulated time.
var (
	// bucketMeta holds keyReleasedThrough: the time up to which scheduled
	// releases have been applied (RFC 3339).
	bucketMeta = []byte("meta")
	// bucketReleased maps "consulate/visa/YYYY-MM-DD" to the number of that
	// day's slots released so far (uint32, big-endian).
	bucketReleased = []byte("released")
	// bucketSlots maps a slot ID to its holder: the hold's expiry (int64
	// Unix nanoseconds, big-endian; 0 for a confirmed booking) followed by
	// the booking ID. A released slot without an entry is free.
	bucketSlots = []byte("slots")
	// bucketBookings maps a booking ID to its JSON record.
	bucketBookings = []byte("bookings")
	// bucketIdempotency maps an Idempotency-Key to the JSON idemRecord of
	// the booking it created.
	bucketIdempotency = []byte("idempotency")
	// bucketHolds indexes unpaid holds by expiry: int64 Unix nanoseconds
	// (big-endian) followed by the booking ID, no value.
	bucketHolds = []byte("holds")

	keyReleasedThrough = []byte("released_through")

	allBuckets = [][]byte{bucketMeta, bucketReleased, bucketSlots, bucketBookings, bucketIdempotency, bucketHolds}
)

// Booking statuses.
const (
	StatusHeld      = "held"
	StatusConfirmed = "confirmed"
	StatusCancelled = "cancelled"
	StatusExpired   = "expired"
)

// Errors of the booking transactions; the HTTP layer maps them to answers.
var (
	errSlotTaken      = errors.New("slot is already booked")
	errNotReleased    = errors.New("slot is not released yet")
	errSlotPast       = errors.New("slot's appointment time has passed")
	errKeyReused      = errors.New("idempotency key was used with a different body")
	errUnknownBooking = errors.New("unknown booking")
	errExpired        = errors.New("hold expired before payment")
	errCancelled      = errors.New("booking is cancelled")
)

// record is a booking as stored and as answered.
type record struct {
	ID          string    `json:"booking_id"`
	SlotID      string    `json:"slot_id"`
	SlotTime    time.Time `json:"slot_time"`
	ApplicantID string    `json:"applicant_id"`
	Status      string    `json:"status"`
	CreatedAt   time.Time `json:"created_at"`
	// ExpiresAt is the end of the payment window; set while held.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// idemRecord is what an idempotency key remembers.
type idemRecord struct {
	BookingID string `json:"booking_id"`
	// Body is the request's fingerprint: slot ID and applicant ID.
	Body string `json:"body"`
}

// store is the bbolt database. Every check-and-set runs in one bbolt
// read-write transaction; bbolt allows one at a time, which serializes
// bookings across all replicas.
type store struct {
	db  *durable.DB
	cat *catalog
}

func openStore(cfg StoreConfig, cat *catalog) (*store, error) {
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: cfg.NoSync})
	if err != nil {
		return nil, fmt.Errorf("open bbolt %s: %w", cfg.Path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init bbolt %s: %w", cfg.Path, err)
	}
	return &store{db: durable.New(db), cat: cat}, nil
}

func (s *store) close() error { return s.db.Close() }

func newID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func holderValue(expires time.Time, bookingID string) []byte {
	v := make([]byte, 8, 8+len(bookingID))
	if !expires.IsZero() {
		binary.BigEndian.PutUint64(v, uint64(expires.UnixNano()))
	}
	return append(v, bookingID...)
}

// parseHolder reads a slot's holder; expires is zero for a confirmed
// booking.
func parseHolder(v []byte) (expires time.Time, bookingID string) {
	if n := binary.BigEndian.Uint64(v[:8]); n != 0 {
		expires = time.Unix(0, int64(n))
	}
	return expires, string(v[8:])
}

// holdKey is the holds index key; it sorts by expiry.
func holdKey(expires time.Time, bookingID string) []byte {
	k := make([]byte, 8, 8+len(bookingID))
	binary.BigEndian.PutUint64(k, uint64(expires.UnixNano()))
	return append(k, bookingID...)
}

func getRecord(tx *bolt.Tx, id string) (record, error) {
	v := tx.Bucket(bucketBookings).Get([]byte(id))
	if v == nil {
		return record{}, errUnknownBooking
	}
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return record{}, fmt.Errorf("decode booking %s: %w", id, err)
	}
	return r, nil
}

func putRecord(tx *durable.Tx, r record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return tx.Put(bucketBookings, []byte(r.ID), v)
}

func released(tx *bolt.Tx, key string) int {
	v := tx.Bucket(bucketReleased).Get([]byte(key))
	if v == nil {
		return 0
	}
	return int(binary.BigEndian.Uint32(v))
}

// freeHold ends a held booking (as expired or cancelled): it frees the
// slot if the booking still holds it and drops it from the holds index.
func freeHold(tx *durable.Tx, r *record, status string) error {
	if v := tx.Bucket(bucketSlots).Get([]byte(r.SlotID)); v != nil {
		if _, holder := parseHolder(v); holder == r.ID {
			if err := tx.Delete(bucketSlots, []byte(r.SlotID)); err != nil {
				return err
			}
		}
	}
	if r.Status == StatusHeld {
		if err := tx.Delete(bucketHolds, holdKey(r.ExpiresAt, r.ID)); err != nil {
			return err
		}
	}
	r.Status = status
	r.ExpiresAt = time.Time{}
	return putRecord(tx, *r)
}

// lookupKey returns the booking an idempotency key created, if any, and
// whether body matches the key's original request.
func (s *store) lookupKey(key, body string) (rec record, found bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketIdempotency).Get([]byte(key))
		if v == nil {
			return nil
		}
		found = true
		var ir idemRecord
		if err := json.Unmarshal(v, &ir); err != nil {
			return fmt.Errorf("decode idempotency key: %w", err)
		}
		if ir.Body != body {
			return errKeyReused
		}
		rec, err = getRecord(tx, ir.BookingID)
		return err
	})
	return rec, found, err
}

// book holds slot for applicant under an idempotency key, in one
// transaction: if the key is known it returns its booking (created false)
// or errKeyReused; else the slot must be released, in the future, and
// free (an expired hold counts as free and is ended here).
func (s *store) book(key string, slot slotRef, applicant string, now time.Time, window time.Duration) (rec record, created bool, err error) {
	slotID := slot.id()
	body := slotID + "\n" + applicant
	err = s.db.Update(func(tx *durable.Tx) error {
		idem := tx.Bucket(bucketIdempotency)
		if v := idem.Get([]byte(key)); v != nil {
			var ir idemRecord
			if err := json.Unmarshal(v, &ir); err != nil {
				return fmt.Errorf("decode idempotency key: %w", err)
			}
			if ir.Body != body {
				return errKeyReused
			}
			var err error
			rec, err = getRecord(tx.Tx, ir.BookingID)
			return err
		}
		if slot.index >= released(tx.Tx, dayKey(slot.consulate, slot.visa, slot.day)) {
			return errNotReleased
		}
		if !slot.time().After(now) {
			return errSlotPast
		}
		slots := tx.Bucket(bucketSlots)
		if v := slots.Get([]byte(slotID)); v != nil {
			expires, holder := parseHolder(v)
			if expires.IsZero() || expires.After(now) {
				return errSlotTaken
			}
			old, err := getRecord(tx.Tx, holder)
			if err != nil {
				return err
			}
			if err := freeHold(tx, &old, StatusExpired); err != nil {
				return err
			}
		}
		rec = record{
			ID: newID(8), SlotID: slotID, SlotTime: slot.time(), ApplicantID: applicant,
			Status: StatusHeld, CreatedAt: now, ExpiresAt: now.Add(window),
		}
		created = true
		if err := tx.Put(bucketSlots, []byte(slotID), holderValue(rec.ExpiresAt, rec.ID)); err != nil {
			return err
		}
		if err := tx.Put(bucketHolds, holdKey(rec.ExpiresAt, rec.ID), nil); err != nil {
			return err
		}
		ir, err := json.Marshal(idemRecord{BookingID: rec.ID, Body: body})
		if err != nil {
			return err
		}
		if err := tx.Put(bucketIdempotency, []byte(key), ir); err != nil {
			return err
		}
		return putRecord(tx, rec)
	})
	return rec, created, err
}

// pay confirms a held booking. Paying a confirmed booking again succeeds.
// A hold found past its window is ended (committed) and errExpired
// returned.
func (s *store) pay(id string, now time.Time) (rec record, err error) {
	var refused error // committed, unlike an error returned to Update
	err = s.db.Update(func(tx *durable.Tx) error {
		refused = nil
		var err error
		if rec, err = getRecord(tx.Tx, id); err != nil {
			return err
		}
		switch rec.Status {
		case StatusConfirmed:
			return nil
		case StatusCancelled:
			return errCancelled
		case StatusExpired:
			return errExpired
		}
		if !rec.ExpiresAt.After(now) {
			refused = errExpired
			return freeHold(tx, &rec, StatusExpired)
		}
		if err := tx.Delete(bucketHolds, holdKey(rec.ExpiresAt, rec.ID)); err != nil {
			return err
		}
		rec.Status = StatusConfirmed
		rec.ExpiresAt = time.Time{}
		if err := tx.Put(bucketSlots, []byte(rec.SlotID), holderValue(time.Time{}, rec.ID)); err != nil {
			return err
		}
		return putRecord(tx, rec)
	})
	if err == nil {
		err = refused
	}
	return rec, err
}

// cancel cancels a held or confirmed booking and frees its slot.
// Cancelling a cancelled booking again succeeds; a hold found past its
// window is ended (committed) and errExpired returned.
func (s *store) cancel(id string, now time.Time) (rec record, err error) {
	var refused error
	err = s.db.Update(func(tx *durable.Tx) error {
		refused = nil
		var err error
		if rec, err = getRecord(tx.Tx, id); err != nil {
			return err
		}
		switch rec.Status {
		case StatusCancelled:
			return nil
		case StatusExpired:
			return errExpired
		case StatusHeld:
			if !rec.ExpiresAt.After(now) {
				refused = errExpired
				return freeHold(tx, &rec, StatusExpired)
			}
		}
		return freeHold(tx, &rec, StatusCancelled)
	})
	if err == nil {
		err = refused
	}
	return rec, err
}

// get returns a booking; a hold past its expiry reads as expired even
// before the sweep has ended it.
func (s *store) get(id string, now time.Time) (rec record, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		rec, err = getRecord(tx, id)
		return err
	})
	if err == nil && rec.Status == StatusHeld && !rec.ExpiresAt.After(now) {
		rec.Status = StatusExpired
		rec.ExpiresAt = time.Time{}
	}
	return rec, err
}

// expireHolds ends at most limit holds whose payment window has passed
// and returns how many it ended.
func (s *store) expireHolds(now time.Time, limit int) (n int, err error) {
	err = s.db.Update(func(tx *durable.Tx) error {
		var due []string
		c := tx.Bucket(bucketHolds).Cursor()
		for k, _ := c.First(); k != nil && len(due) < limit; k, _ = c.Next() {
			if int64(binary.BigEndian.Uint64(k[:8])) > now.UnixNano() {
				break
			}
			due = append(due, string(k[8:]))
		}
		for _, id := range due {
			rec, err := getRecord(tx.Tx, id)
			if err != nil {
				return err
			}
			if err := freeHold(tx, &rec, StatusExpired); err != nil {
				return err
			}
		}
		n = len(due)
		return nil
	})
	return n, err
}

// releasedThrough is the time up to which releases have been applied;
// zero if never.
func (s *store) releasedThrough() (t time.Time, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyReleasedThrough)
		if v == nil {
			return nil
		}
		return t.UnmarshalText(v)
	})
	return t, err
}

// applyReleases applies the firings in (from, until] and advances the
// released-through mark to until, in one transaction, so a restart
// neither repeats nor loses a release. It returns how many slots it
// released. If the mark has moved past from meanwhile, it does nothing.
func (s *store) applyReleases(from, until time.Time, fs []firing, daysAhead int) (n int, err error) {
	err = s.db.Update(func(tx *durable.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyReleasedThrough); v != nil {
			var cur time.Time
			if err := cur.UnmarshalText(v); err != nil {
				return fmt.Errorf("decode %s: %w", keyReleasedThrough, err)
			}
			if !cur.Equal(from) {
				return nil
			}
		}
		for _, f := range fs {
			rule := s.cat.rules[f.rule]
			today := midnight(f.at.In(s.cat.loc))
			for d := 1; d <= daysAhead; d++ {
				day := today.AddDate(0, 0, d)
				for _, co := range s.cat.consulates {
					for _, vt := range co.visas {
						key := dayKey(co, vt, day)
						cur := released(tx.Tx, key)
						next := releasedAfter(cur, vt.slotsPerDay, rule.fraction)
						if next <= cur {
							continue
						}
						var v [4]byte
						binary.BigEndian.PutUint32(v[:], uint32(next))
						if err := tx.Put(bucketReleased, []byte(key), v[:]); err != nil {
							return err
						}
						n += next - cur
					}
				}
			}
		}
		v, err := until.MarshalText()
		if err != nil {
			return err
		}
		return tx.Put(bucketMeta, keyReleasedThrough, v)
	})
	return n, err
}

// availSlot is one bookable slot.
type availSlot struct {
	id string
	at time.Time
}

// available lists the released, free slots of one consulate and visa
// type for the days from today through the booking window, in time
// order. An expired hold counts as free.
func (s *store) available(co *consulate, vt *visaType, now time.Time, daysAhead int) (out []availSlot, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		slots := tx.Bucket(bucketSlots)
		today := midnight(now.In(s.cat.loc))
		for d := 0; d <= daysAhead; d++ {
			day := today.AddDate(0, 0, d)
			r := released(tx, dayKey(co, vt, day))
			start := len(out)
			for i := range r {
				ref := slotRef{consulate: co, visa: vt, day: day, index: i}
				id := ref.id()
				if v := slots.Get([]byte(id)); v != nil {
					if expires, _ := parseHolder(v); expires.IsZero() || expires.After(now) {
						continue
					}
				}
				out = append(out, availSlot{id: id, at: ref.time()})
			}
			slices.SortFunc(out[start:], func(a, b availSlot) int {
				if c := a.at.Compare(b.at); c != 0 {
					return c
				}
				return strings.Compare(a.id, b.id)
			})
		}
		return nil
	})
	return out, err
}
