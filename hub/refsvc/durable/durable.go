// Package durable is what the hosted services' bbolt stores share to make
// their state survive the loss of the hub running them: transactions whose
// changes are captured and handed to a refsvc.Journal in commit order, and
// a restore that replaces a store's buckets with the journal's state.
package durable

import (
	"context"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/bureauhub/bureauhub/hub/refsvc"
)

// DB is a bbolt database whose Update transactions are journaled once a
// journal is set. Safe for concurrent use.
type DB struct {
	*bolt.DB
	// Timeout bounds waiting for the journal after a commit.
	Timeout time.Duration

	mu      sync.Mutex // held from a write's start to its Enqueue: commit order is journal order
	journal refsvc.Journal
	last    refsvc.Ticket // the latest ticket Enqueue gave
	queued  bool          // whether last is set
}

// New wraps db; with no journal set, Update is bolt's.
func New(db *bolt.DB) *DB { return &DB{DB: db, Timeout: 10 * time.Second} }

// SetJournal journals every later Update.
func (d *DB) SetJournal(j refsvc.Journal) {
	d.mu.Lock()
	d.journal = j
	d.mu.Unlock()
}

// Tx is a write transaction whose Put and Delete are recorded.
type Tx struct {
	*bolt.Tx
	changes []refsvc.Change
}

// Put sets key in bucket (which must exist) and records it.
func (t *Tx) Put(bucket, key, value []byte) error {
	if err := t.Bucket(bucket).Put(key, value); err != nil {
		return err
	}
	t.changes = append(t.changes, refsvc.Change{Bucket: string(bucket),
		Key: append([]byte(nil), key...), Value: append([]byte{}, value...)})
	return nil
}

// Delete removes key from bucket and records it.
func (t *Tx) Delete(bucket, key []byte) error {
	if err := t.Bucket(bucket).Delete(key); err != nil {
		return err
	}
	t.changes = append(t.changes, refsvc.Change{Bucket: string(bucket), Key: append([]byte(nil), key...), Deleted: true})
	return nil
}

// Update runs fn in a write transaction. Once it has committed, its
// changes are queued on the journal (if set) and Update waits until they
// are durable; if they are not, it returns an error wrapping
// refsvc.ErrNotDurable (the change stays committed here and queued). A
// transaction that changed nothing waits for every change queued before
// it, so an answer never reports state (an earlier, unconfirmed booking
// found by its idempotency key) that is not durable yet.
func (d *DB) Update(fn func(tx *Tx) error) error {
	d.mu.Lock()
	var changes []refsvc.Change
	err := d.DB.Update(func(btx *bolt.Tx) error {
		tx := &Tx{Tx: btx}
		if err := fn(tx); err != nil {
			return err
		}
		changes = tx.changes
		return nil
	})
	j := d.journal
	if err != nil || j == nil || (len(changes) == 0 && !d.queued) {
		d.mu.Unlock()
		return err
	}
	ticket := d.last
	if len(changes) > 0 {
		ticket, err = j.Enqueue(changes)
		if err == nil {
			d.last, d.queued = ticket, true
		}
	}
	d.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: %w", refsvc.ErrNotDurable, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.Timeout)
	defer cancel()
	if err := j.Wait(ctx, ticket); err != nil {
		return fmt.Errorf("%w: %w", refsvc.ErrNotDurable, err)
	}
	return nil
}

// Restore empties the buckets named in wipe, then applies the changes load
// passes (to buckets that exist; others are ignored, counted in skipped),
// all in one transaction, journaling nothing.
func (d *DB) Restore(wipe [][]byte, load func(apply func(refsvc.Change) error) error) (applied, skipped int, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	err = d.DB.Update(func(tx *bolt.Tx) error {
		for _, name := range wipe {
			if tx.Bucket(name) != nil {
				if err := tx.DeleteBucket(name); err != nil {
					return fmt.Errorf("wipe bucket %s: %w", name, err)
				}
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return fmt.Errorf("recreate bucket %s: %w", name, err)
			}
		}
		return load(func(c refsvc.Change) error {
			b := tx.Bucket([]byte(c.Bucket))
			if b == nil {
				skipped++
				return nil
			}
			applied++
			if c.Deleted {
				return b.Delete(c.Key)
			}
			// bbolt keeps the slices until the commit: copy.
			return b.Put(append([]byte(nil), c.Key...), append([]byte{}, c.Value...))
		})
	})
	return applied, skipped, err
}
