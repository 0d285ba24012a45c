// Package buffer is the agent's durable on-disk queue: the agent appends
// compressed batches, a shipper reads them in order and acknowledges them
// once the hub has stored them. It survives a crash of the process at any
// moment, bounds its disk usage, and keeps only a small per-segment index in
// memory.
package buffer

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrTooLarge is returned by Append for a record that can never fit in a
// segment. It is wrapped with the sizes involved.
var ErrTooLarge = errors.New("record too large")

// ErrClosed is returned by every method of a closed Queue.
var ErrClosed = errors.New("queue closed")

// Record is one appended batch as returned by Next.
type Record struct {
	// Seq is the record's sequence number, unique for the queue's ID.
	Seq uint64
	// Samples is the sample count given to Append.
	Samples int
	// Appended is when Append was called, with millisecond precision.
	Appended time.Time
	// Payload is the appended bytes; it is owned by the caller after Next
	// returns.
	Payload []byte
}

// Stats describes the queue's content.
type Stats struct {
	// Bytes is the total size of the segment files.
	Bytes int64
	// Records is the number of stored records that are not acknowledged.
	Records int
	// Samples is the sum of the sample counts of those records.
	Samples int64
	// Acked is the highest acknowledged sequence number.
	Acked uint64
	// LastSeq is the sequence number of the last appended record.
	LastSeq uint64
	// OldestUnacked is when the oldest unacknowledged record was appended,
	// zero if there is none.
	OldestUnacked time.Time
}

// Queue is a durable FIFO of records stored in segment files in one
// directory.
//
// Append may be called from many goroutines concurrently. Next and Ack are
// meant for a single shipper goroutine, although they are safe to call
// concurrently with everything else. Stats, Acked and ID may be called from
// anywhere. After Close, Append, Next and Ack return ErrClosed.
//
// Every record whose Append returned nil survives a crash of the process;
// power loss can lose what was written since the last fsync (see
// Config.FsyncInterval). A record is delivered until it is acknowledged or
// dropped because the queue reached Config.MaxBytes.
type Queue struct {
	cfg    Config
	logger *slog.Logger
	m      *metrics
	id     string
	lock   *os.File
	done   chan struct{} // closed by Close

	// ackMu serializes Ack and Close so that the ack file is written
	// without holding mu.
	ackMu sync.Mutex

	mu      sync.Mutex
	closed  bool
	segs    []*segment // oldest first
	w       *os.File   // the last segment, open for appending; nil when the next Append must start a new one
	rf      *os.File   // a sealed segment open for reading
	rfFirst uint64     // which segment rf is
	hbuf    [headerSize]byte
	wbuf    []byte
	// readHint and ackHint remember where Next and Ack stopped, so that
	// finding the next record rarely scans a segment from its start.
	readHint, ackHint position

	acked   uint64
	nextSeq uint64
	bytes   int64
	records int64 // not acknowledged
	samples int64 // not acknowledged
	oldest  int64 // unix ms of the oldest unacknowledged record, 0 if none

	dirty    bool // the active segment has writes that are not fsynced
	lastSync time.Time
	notify   chan struct{} // closed and replaced by Append when waiting is set
	waiting  bool
	onWait   func() // test hook, called when Next is about to block
}

// position is the byte offset of record seq in the segment whose first seq
// is seg.
type position struct {
	seg, seq uint64
	off      int64
}

// Open opens the queue in cfg.Dir, creating it if needed. Zero fields of cfg
// get their defaults. It truncates torn records left by a crash, deletes
// fully acknowledged segments and locks the directory against other
// processes. logger and reg may be nil.
func Open(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Queue, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create buffer dir: %w", err)
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("lock buffer dir: %w", err)
	}
	q := &Queue{
		cfg:      cfg,
		logger:   logger,
		lock:     lock,
		done:     make(chan struct{}),
		notify:   make(chan struct{}),
		lastSync: time.Now(),
	}
	q.m = newMetrics(q.Stats)
	if err := q.load(); err != nil {
		return nil, errors.Join(err, q.closeFiles())
	}
	if err := q.m.register(reg); err != nil {
		return nil, errors.Join(err, q.closeFiles())
	}
	return q, nil
}

// load reads the state files and indexes the segments.
func (q *Queue) load() error {
	dir := q.cfg.Dir
	tmps, _ := filepath.Glob(filepath.Join(dir, "*"+tmpSuffix))
	for _, t := range tmps {
		os.Remove(t)
	}

	acked, err := readAcked(dir)
	newIncarnation := false
	if errors.Is(err, errCorrupt) {
		// Without the ack position, fresh records could reuse seqs the hub
		// already holds; a new ID keeps them apart.
		q.logger.Warn("buffer ack file is unreadable, starting a new incarnation", "dir", dir, "err", err)
		acked, newIncarnation = 0, true
		if err := q.writeFileAtomic(ackedFile, []byte("0\n")); err != nil {
			return fmt.Errorf("reset ack file: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("read ack file: %w", err)
	}
	if !newIncarnation {
		if q.id, err = readID(dir); err != nil {
			return fmt.Errorf("read id file: %w", err)
		}
	}
	if q.id == "" {
		q.id = newID()
		if err := q.writeFileAtomic(idFile, []byte(q.id+"\n")); err != nil {
			return fmt.Errorf("write id file: %w", err)
		}
		q.logger.Info("buffer started a new incarnation", "dir", dir, "id", q.id)
	}
	q.acked = acked

	entries, err := os.ReadDir(dir) // sorted by name, so by first seq
	if err != nil {
		return fmt.Errorf("list buffer dir: %w", err)
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), segmentSuffix)
		first, err := strconv.ParseUint(name, 16, 64)
		if !ok || len(name) != 16 || err != nil || first == 0 {
			continue
		}
		path := filepath.Join(dir, e.Name())
		seg, torn, err := scanSegment(path, first, acked)
		if err != nil {
			return fmt.Errorf("scan segment %s: %w", path, err)
		}
		if torn != "" {
			q.logger.Warn("buffer truncated a torn or corrupt segment tail", "segment", path, "reason", torn, "kept_bytes", seg.size)
		}
		var prevLast uint64
		if len(q.segs) > 0 {
			prevLast = q.segs[len(q.segs)-1].last
		}
		if seg.last < seg.first || seg.last <= acked || seg.first <= prevLast {
			if seg.first <= prevLast && seg.last >= seg.first {
				q.logger.Warn("buffer removed a segment overlapping its predecessor", "segment", path)
			}
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("remove segment: %w", err)
			}
			continue
		}
		q.segs = append(q.segs, &seg)
		q.bytes += seg.size
		q.records += seg.unacked(acked)
		q.samples += seg.samples
	}

	q.nextSeq = acked + 1
	if n := len(q.segs); n > 0 {
		last := q.segs[n-1]
		q.nextSeq = max(q.nextSeq, last.last+1)
		if last.size < q.cfg.SegmentBytes {
			if q.w, err = os.OpenFile(q.path(last.first), os.O_RDWR|os.O_APPEND, 0); err != nil {
				return fmt.Errorf("open active segment: %w", err)
			}
		}
	}
	q.refreshOldest()
	return nil
}

// Append stores payload as the next record and returns its sequence number.
// The record is written to the segment file before Append returns. samples
// is the number of samples in payload, kept for accounting.
func (q *Queue) Append(payload []byte, samples int) (seq uint64, err error) {
	size := headerSize + int64(len(payload))
	if size > q.cfg.SegmentBytes {
		return 0, fmt.Errorf("%w: %d bytes with header, limit is segment_bytes %d (max_bytes %d)",
			ErrTooLarge, size, q.cfg.SegmentBytes, q.cfg.MaxBytes)
	}
	if samples < 0 || int64(samples) > math.MaxUint32 {
		return 0, fmt.Errorf("sample count %d out of range", samples)
	}
	now := time.Now()

	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0, ErrClosed
	}
	if q.w == nil || q.segs[len(q.segs)-1].size+size > q.cfg.SegmentBytes {
		if err := q.roll(now); err != nil {
			return 0, fmt.Errorf("start segment %d: %w", q.nextSeq, err)
		}
	}
	// The active segment plus this record fit in SegmentBytes, which is at
	// most MaxBytes/2, so dropping sealed segments always makes room.
	for q.bytes+size > q.cfg.MaxBytes && len(q.segs) > 1 {
		q.dropOldest()
	}

	seg, seq, ms := q.segs[len(q.segs)-1], q.nextSeq, now.UnixMilli()
	q.wbuf = encodeRecord(q.wbuf[:0], seq, uint32(samples), ms, payload)
	_, err = q.w.Write(q.wbuf)
	if cap(q.wbuf) > 1<<20 {
		q.wbuf = nil // don't keep a rare huge record's buffer
	}
	if err != nil {
		q.abortWrite()
		return 0, fmt.Errorf("append record %d: %w", seq, err)
	}
	q.nextSeq++
	seg.last = seq
	seg.size += size
	seg.samples += int64(samples)
	q.bytes += size
	if q.records == 0 {
		q.oldest = ms
	}
	q.records++
	q.samples += int64(samples)
	q.dirty = true
	q.m.appendedRecords.Inc()
	q.m.appendedSamples.Add(float64(samples))
	if q.waiting {
		close(q.notify)
		q.notify, q.waiting = make(chan struct{}), false
	}
	if q.cfg.FsyncInterval > 0 && now.Sub(q.lastSync) >= q.cfg.FsyncInterval {
		q.syncActive(now)
	}
	return seq, nil
}

// Next returns the first still-stored record with Seq > after that is not
// acknowledged. Records may have been dropped by the size bound, so Seq may
// skip. It blocks until such a record exists, ctx ends (returning
// ctx.Err()) or the queue closes (returning ErrClosed).
//
// While it waits with unsynced writes pending, Next also performs the
// periodic fsync, so an idle agent does not leave them unsynced.
func (q *Queue) Next(ctx context.Context, after uint64) (Record, error) {
	for {
		if err := ctx.Err(); err != nil {
			return Record{}, err
		}
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return Record{}, ErrClosed
		}
		rec, ok, err := q.nextLocked(max(after, q.acked) + 1)
		if ok || err != nil {
			q.mu.Unlock()
			return rec, err
		}
		wake, hook := q.notify, q.onWait
		q.waiting = true
		syncIn := time.Duration(-1) // no fsync pending
		if q.dirty && q.cfg.FsyncInterval > 0 {
			syncIn = max(0, q.cfg.FsyncInterval-time.Since(q.lastSync))
		}
		q.mu.Unlock()

		if hook != nil {
			hook()
		}
		if err := q.wait(ctx, wake, syncIn); err != nil {
			return Record{}, err
		}
	}
}

// wait blocks until wake is closed, ctx ends or the queue closes. If syncIn
// is not negative, it fsyncs the active segment once that much time passes.
func (q *Queue) wait(ctx context.Context, wake <-chan struct{}, syncIn time.Duration) error {
	var syncC <-chan time.Time
	if syncIn >= 0 {
		t := time.NewTimer(syncIn)
		defer t.Stop()
		syncC = t.C
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-q.done:
		return ErrClosed
	case <-wake:
	case <-syncC:
		q.mu.Lock()
		if !q.closed {
			q.syncActive(time.Now())
		}
		q.mu.Unlock()
	}
	return nil
}

func (q *Queue) nextLocked(seq uint64) (Record, bool, error) {
	s, p, err := q.locate(seq)
	if err != nil {
		return Record{}, false, fmt.Errorf("find record %d: %w", seq, err)
	}
	if s == nil {
		return Record{}, false, nil
	}
	h, err := q.readHeader(s, p)
	if err != nil {
		return Record{}, false, fmt.Errorf("read record %d: %w", p.seq, err)
	}
	payload := make([]byte, h.length)
	f, err := q.reader(s)
	if err == nil {
		_, err = f.ReadAt(payload, p.off+headerSize)
	}
	if err == nil && crc32.Update(headerCRC(q.hbuf[:]), castagnoli(), payload) != h.crc {
		err = fmt.Errorf("checksum mismatch in %s at offset %d: %w", q.path(s.first), p.off, errCorrupt)
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("read record %d: %w", p.seq, err)
	}
	q.readHint = position{seg: s.first, seq: p.seq + 1, off: p.off + headerSize + int64(h.length)}
	return Record{Seq: h.seq, Samples: int(h.samples), Appended: time.UnixMilli(h.ms), Payload: payload}, true, nil
}

// Ack acknowledges every record with Seq <= seq. The position is persisted
// before Ack returns, and segments holding only acknowledged records are
// deleted. Acknowledging an already acknowledged seq is a no-op; a seq that
// was never appended is an error.
func (q *Queue) Ack(seq uint64) error {
	q.ackMu.Lock()
	defer q.ackMu.Unlock()
	q.mu.Lock()
	closed, acked, last := q.closed, q.acked, q.nextSeq-1
	q.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case seq <= acked:
		return nil
	case seq > last:
		return fmt.Errorf("ack %d: beyond last appended seq %d", seq, last)
	}
	if err := q.writeFileAtomic(ackedFile, fmt.Appendf(nil, "%d\n", seq)); err != nil {
		return fmt.Errorf("persist ack %d: %w", seq, err)
	}

	q.mu.Lock()
	defer q.mu.Unlock()
	var records, samples int64
	var err error
	for _, s := range q.segs {
		if s.first > seq {
			break
		}
		n := s.unacked(acked) - s.unacked(seq)
		if n == 0 {
			continue
		}
		records += n
		if s.last <= seq {
			samples += s.samples
			s.samples = 0
			continue
		}
		var part int64
		part, err = q.sumSamples(s, max(acked+1, s.first), seq)
		samples += part
		s.samples -= part
	}
	q.acked = seq
	q.records -= records
	q.samples -= samples
	q.m.ackedSamples.Add(float64(samples))
	q.deleteAcked()
	q.refreshOldest()
	if err != nil {
		return fmt.Errorf("count acknowledged samples: %w", err)
	}
	return nil
}

// sumSamples adds up the sample counts of records from..to, all in s.
func (q *Queue) sumSamples(s *segment, from, to uint64) (int64, error) {
	_, p, err := q.locate(from)
	var sum int64
	for err == nil && p.seq <= to {
		var h header
		if h, err = q.readHeader(s, p); err == nil {
			sum += int64(h.samples)
			p.off += headerSize + int64(h.length)
			p.seq++
		}
	}
	q.ackHint = p
	return sum, err
}

// Acked returns the highest acknowledged sequence number.
func (q *Queue) Acked() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.acked
}

// ID returns the queue's incarnation ID: 32 hex digits generated when the
// directory was first used. Together with Seq it identifies a record.
func (q *Queue) ID() string { return q.id }

// Stats returns the queue's current content.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := Stats{
		Bytes:   q.bytes,
		Records: int(q.records),
		Samples: q.samples,
		Acked:   q.acked,
		LastSeq: q.nextSeq - 1,
	}
	if q.oldest != 0 {
		s.OldestUnacked = time.UnixMilli(q.oldest)
	}
	return s
}

// Close fsyncs the active segment, closes the files, unlocks the directory
// and unregisters the metrics. Blocked Next calls return ErrClosed.
func (q *Queue) Close() error {
	q.ackMu.Lock()
	defer q.ackMu.Unlock()
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	close(q.done)
	err := q.closeFiles()
	q.mu.Unlock()
	// Outside mu: a concurrent scrape holds the registry while it calls
	// Stats.
	q.m.unregister()
	return err
}

func (q *Queue) closeFiles() error {
	var errs []error
	if q.w != nil {
		if err := q.fsync(q.w); err != nil {
			errs = append(errs, fmt.Errorf("sync segment: %w", err))
		}
		errs = append(errs, q.w.Close())
		q.w = nil
	}
	if q.rf != nil {
		errs = append(errs, q.rf.Close())
		q.rf = nil
	}
	errs = append(errs, q.lock.Close()) // releases the flock
	return errors.Join(errs...)
}

func (q *Queue) path(first uint64) string { return filepath.Join(q.cfg.Dir, segmentName(first)) }

// roll seals the active segment and starts a new one at nextSeq.
func (q *Queue) roll(now time.Time) error {
	if q.w != nil {
		err := q.fsync(q.w)
		if cerr := q.w.Close(); err == nil {
			err = cerr
		}
		q.w = nil
		if err != nil {
			return fmt.Errorf("seal segment: %w", err)
		}
		q.deleteAcked()
	}
	path := q.path(q.nextSeq)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if err := q.syncDir(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	q.segs = append(q.segs, &segment{first: q.nextSeq, last: q.nextSeq - 1})
	q.w, q.dirty, q.lastSync = f, false, now
	return nil
}

// abortWrite cuts a failed write off the active segment and seals it, so
// that the next Append starts a clean segment.
func (q *Queue) abortWrite() {
	seg := q.segs[len(q.segs)-1]
	if err := q.w.Truncate(seg.size); err != nil {
		q.logger.Error("buffer could not truncate a failed write; reopening will", "segment", q.path(seg.first), "err", err)
	}
	q.w.Close()
	q.w = nil
	if seg.last < seg.first {
		os.Remove(q.path(seg.first))
		q.segs = q.segs[:len(q.segs)-1]
	}
}

// syncActive fsyncs the active segment if it has unsynced writes.
func (q *Queue) syncActive(now time.Time) {
	if q.w == nil || !q.dirty {
		return
	}
	if err := q.fsync(q.w); err != nil {
		q.logger.Error("buffer fsync failed", "err", err)
	}
	q.dirty, q.lastSync = false, now
}

// dropOldest deletes the oldest segment to make room, counting what was not
// yet acknowledged as dropped.
func (q *Queue) dropOldest() {
	s := q.segs[0]
	q.removeOldest()
	records := s.unacked(q.acked)
	if records == 0 {
		return
	}
	q.records -= records
	q.samples -= s.samples
	q.m.droppedRecords.Add(float64(records))
	q.m.droppedSamples.Add(float64(s.samples))
	q.logger.Warn("buffer full, dropped unacknowledged records",
		"first_seq", max(s.first, q.acked+1), "last_seq", s.last, "records", records, "samples", s.samples)
	q.refreshOldest()
}

// deleteAcked deletes the sealed segments whose records are all
// acknowledged.
func (q *Queue) deleteAcked() {
	for len(q.segs) > 0 && q.segs[0].last <= q.acked && !(q.w != nil && len(q.segs) == 1) {
		q.removeOldest()
	}
}

func (q *Queue) removeOldest() {
	s := q.segs[0]
	if q.rf != nil && q.rfFirst == s.first {
		q.rf.Close()
		q.rf = nil
	}
	if err := os.Remove(q.path(s.first)); err != nil {
		q.logger.Error("buffer could not remove a segment", "err", err)
	}
	q.bytes -= s.size
	q.segs = slices.Delete(q.segs, 0, 1)
}

// refreshOldest reads the append time of the first unacknowledged record.
func (q *Queue) refreshOldest() {
	q.oldest = 0
	s, p, err := q.locate(q.acked + 1)
	if err == nil && s != nil {
		var h header
		if h, err = q.readHeader(s, p); err == nil {
			q.oldest = h.ms
			q.ackHint = p
		}
	}
	if err != nil {
		q.logger.Warn("buffer could not read the oldest unacknowledged record", "err", err)
	}
}

// locate finds the first stored record with Seq >= seq, returning its
// segment and position, or a nil segment if there is none. It starts from
// a hint when one is in the right segment and scans headers from there.
func (q *Queue) locate(seq uint64) (*segment, position, error) {
	for _, s := range q.segs {
		if s.last < seq || s.last < s.first {
			continue
		}
		p := position{seg: s.first, seq: s.first}
		for _, h := range [...]position{q.readHint, q.ackHint} {
			if h.seg == s.first && h.seq <= seq && h.seq > p.seq {
				p = h
			}
		}
		for p.seq < seq {
			h, err := q.readHeader(s, p)
			if err != nil {
				return nil, position{}, err
			}
			p.off += headerSize + int64(h.length)
			p.seq++
		}
		return s, p, nil
	}
	return nil, position{}, nil
}

// readHeader reads into q.hbuf and decodes the header of the record at p,
// checking that it is the record expected there.
func (q *Queue) readHeader(s *segment, p position) (header, error) {
	f, err := q.reader(s)
	if err != nil {
		return header{}, err
	}
	if _, err := f.ReadAt(q.hbuf[:], p.off); err != nil {
		return header{}, err
	}
	h, err := parseHeader(q.hbuf[:])
	if err == nil && (h.seq != p.seq || p.off+headerSize+int64(h.length) > s.size) {
		err = fmt.Errorf("record at offset %d has seq %d and length %d, want seq %d within %d bytes: %w",
			p.off, h.seq, h.length, p.seq, s.size, errCorrupt)
	}
	if err != nil {
		return header{}, fmt.Errorf("%s: %w", q.path(s.first), err)
	}
	return h, nil
}

// reader returns a file to read s from: the active segment's own handle,
// or a cached read-only handle on a sealed one.
func (q *Queue) reader(s *segment) (*os.File, error) {
	if q.w != nil && s == q.segs[len(q.segs)-1] {
		return q.w, nil
	}
	if q.rf != nil && q.rfFirst == s.first {
		return q.rf, nil
	}
	if q.rf != nil {
		q.rf.Close()
		q.rf = nil
	}
	f, err := os.Open(q.path(s.first))
	if err != nil {
		return nil, err
	}
	q.rf, q.rfFirst = f, s.first
	return f, nil
}
