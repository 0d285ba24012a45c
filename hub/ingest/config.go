// Package ingest receives agents' batches over gRPC, validates them, enforces
// per-tenant limits, deduplicates resent batches and writes them to the store
// through a bounded queue, acknowledging only what the store has accepted.
package ingest

import (
	"errors"
	"fmt"
	"time"
)

// Limits are per-tenant ingest limits. Zero means unlimited.
type Limits struct {
	// SamplesPerSecond is the sustained rate; bursts of two seconds' worth
	// (or one batch, if larger) pass.
	SamplesPerSecond float64 `yaml:"samples_per_second"`
	// MaxActiveSeries bounds the series seen within ActiveSeriesWindow.
	MaxActiveSeries int `yaml:"max_active_series"`
}

// Config configures ingestion.
type Config struct {
	// MaxFuture rejects samples stamped further ahead of the hub's clock.
	MaxFuture time.Duration `yaml:"max_future"`
	// MaxAge rejects samples older than this; it must cover the longest
	// hub outage an agent's buffer rides out.
	MaxAge              time.Duration `yaml:"max_age"`
	MaxLabelsPerSeries  int           `yaml:"max_labels_per_series"`
	MaxLabelNameLength  int           `yaml:"max_label_name_length"`
	MaxLabelValueLength int           `yaml:"max_label_value_length"`
	// MaxBatchBytes bounds one batch's decompressed size.
	MaxBatchBytes int `yaml:"max_batch_bytes"`
	// QueueSamples bounds the samples accepted but not yet written; when
	// full, streams stop reading (backpressure) instead of growing memory.
	QueueSamples int `yaml:"queue_samples"`
	// FlushSamples is the target size of one ClickHouse insert.
	FlushSamples int `yaml:"flush_samples"`
	// FlushInterval bounds how long a sample waits for a fuller insert.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// Writers is the number of concurrent inserts.
	Writers int `yaml:"writers"`
	// ActiveSeriesWindow is how long a series counts as active after its
	// last sample.
	ActiveSeriesWindow time.Duration `yaml:"active_series_window"`
	// DefaultLimits apply to tenants without an entry in TenantLimits.
	DefaultLimits Limits            `yaml:"default_limits"`
	TenantLimits  map[string]Limits `yaml:"tenant_limits"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defd := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	defd(&c.MaxFuture, 10*time.Minute)
	defd(&c.MaxAge, 7*24*time.Hour)
	def(&c.MaxLabelsPerSeries, 64)
	def(&c.MaxLabelNameLength, 1024)
	def(&c.MaxLabelValueLength, 4096)
	def(&c.MaxBatchBytes, 64<<20)
	def(&c.QueueSamples, 4_000_000)
	def(&c.FlushSamples, 500_000)
	defd(&c.FlushInterval, 200*time.Millisecond)
	def(&c.Writers, 2)
	defd(&c.ActiveSeriesWindow, time.Hour)
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch {
	case c.MaxFuture <= 0:
		return errors.New("ingest.max_future: must be positive")
	case c.MaxAge <= 0:
		return errors.New("ingest.max_age: must be positive")
	case c.MaxLabelsPerSeries < 2:
		return errors.New("ingest.max_labels_per_series: must be at least 2")
	case c.QueueSamples < c.FlushSamples:
		return fmt.Errorf("ingest.queue_samples: %d is below ingest.flush_samples (%d)", c.QueueSamples, c.FlushSamples)
	case c.FlushSamples < 1:
		return errors.New("ingest.flush_samples: must be positive")
	case c.FlushInterval <= 0:
		return errors.New("ingest.flush_interval: must be positive")
	case c.Writers < 1:
		return errors.New("ingest.writers: must be at least 1")
	}
	check := func(name string, l Limits) error {
		if l.SamplesPerSecond < 0 {
			return fmt.Errorf("ingest.%s.samples_per_second: must not be negative", name)
		}
		if l.MaxActiveSeries < 0 {
			return fmt.Errorf("ingest.%s.max_active_series: must not be negative", name)
		}
		return nil
	}
	if err := check("default_limits", c.DefaultLimits); err != nil {
		return err
	}
	for t, l := range c.TenantLimits {
		if err := check("tenant_limits."+t, l); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) limitsFor(tenant string) Limits {
	if l, ok := c.TenantLimits[tenant]; ok {
		return l
	}
	return c.DefaultLimits
}
