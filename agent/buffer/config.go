package buffer

import (
	"errors"
	"fmt"
	"time"
)

// Defaults applied by Config.SetDefaults.
const (
	defaultMaxBytes      int64         = 1 << 30
	defaultSegmentBytes  int64         = 16 << 20
	defaultFsyncInterval time.Duration = time.Second

	// minSegmentBytes keeps segments large enough to hold a useful record.
	minSegmentBytes int64 = 4096
	// maxSegmentBytes keeps every offset and payload length within uint32.
	maxSegmentBytes int64 = 1 << 30
)

// Config configures a Queue.
type Config struct {
	// Dir holds the segment files, the ack file and the incarnation ID.
	// Only one Queue may use a Dir at a time; Open locks it.
	Dir string `yaml:"dir"`
	// MaxBytes bounds the total size of the segment files. When an Append
	// would exceed it, the oldest segments are dropped, acknowledged or not.
	MaxBytes int64 `yaml:"max_bytes"`
	// SegmentBytes is the size at which a new segment file is started. It
	// also bounds the size of a single record (header plus payload).
	SegmentBytes int64 `yaml:"segment_bytes"`
	// FsyncInterval is the minimum time between periodic fsyncs of the
	// active segment, which protect against power loss (every Append is
	// written to the file before it returns, which is enough for a process
	// crash). SetDefaults turns 0 into 1s; a negative value disables periodic
	// fsync, leaving only the fsyncs on segment roll and Close.
	FsyncInterval time.Duration `yaml:"fsync_interval"`
}

// SetDefaults fills zero fields with their defaults.
func (c *Config) SetDefaults() {
	if c.MaxBytes == 0 {
		c.MaxBytes = defaultMaxBytes
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = defaultSegmentBytes
	}
	if c.FsyncInterval == 0 {
		c.FsyncInterval = defaultFsyncInterval
	}
}

// Validate reports every invalid field; each error names the field.
func (c *Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("buffer.dir: must not be empty"))
	}
	switch {
	case c.SegmentBytes < minSegmentBytes:
		errs = append(errs, fmt.Errorf("buffer.segment_bytes: must be at least %d, got %d", minSegmentBytes, c.SegmentBytes))
	case c.SegmentBytes > maxSegmentBytes:
		errs = append(errs, fmt.Errorf("buffer.segment_bytes: must be at most %d, got %d", maxSegmentBytes, c.SegmentBytes))
	case c.MaxBytes < 2*c.SegmentBytes:
		errs = append(errs, fmt.Errorf("buffer.max_bytes: must be at least 2*segment_bytes (%d), got %d", 2*c.SegmentBytes, c.MaxBytes))
	}
	return errors.Join(errs...)
}
