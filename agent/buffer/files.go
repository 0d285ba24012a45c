package buffer

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Small state files kept next to the segments.
const (
	idFile    = "id"
	ackedFile = "acked"
	lockFile  = "lock"
	tmpSuffix = ".tmp"
)

// lockDir takes an exclusive flock on Dir/lock so that two processes never
// share a queue. The kernel drops the lock when the process dies.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is in use by another queue: %w", dir, err)
	}
	return f, nil
}

// readAcked returns the persisted acknowledged seq, 0 if there is none yet.
// A file that exists but does not parse is reported with errCorrupt.
func readAcked(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, ackedFile))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %v: %w", ackedFile, err, errCorrupt)
	}
	return n, nil
}

// readID returns the persisted incarnation ID, "" if there is none or it is
// unusable.
func readID(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, idFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(b))
	if raw, err := hex.DecodeString(id); err != nil || len(raw) != 16 {
		return "", nil
	}
	return id, nil
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails, see crypto/rand.Read
	return hex.EncodeToString(b[:])
}

// writeFileAtomic replaces dir/name with data so that after a crash the file
// holds either the old or the new content: write a temp file, fsync it,
// rename it over the old one and fsync the directory.
func (q *Queue) writeFileAtomic(name string, data []byte) error {
	tmp := filepath.Join(q.cfg.Dir, name+tmpSuffix)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = q.fsync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(q.cfg.Dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return q.syncDir()
}

// syncDir makes created, renamed and removed directory entries durable.
func (q *Queue) syncDir() error {
	d, err := os.Open(q.cfg.Dir)
	if err != nil {
		return err
	}
	err = q.fsync(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// fsync is the single place that calls fsync(2), so that it is counted.
func (q *Queue) fsync(f *os.File) error {
	q.m.fsyncs.Inc()
	return f.Sync()
}
