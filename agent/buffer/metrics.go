package buffer

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const metricPrefix = "bureauhub_agent_buffer_"

// metrics are the queue's Prometheus collectors. The gauges are functions of
// the queue's state, read through Stats at scrape time.
type metrics struct {
	reg        prometheus.Registerer
	collectors []prometheus.Collector

	appendedSamples prometheus.Counter
	appendedRecords prometheus.Counter
	ackedSamples    prometheus.Counter
	droppedSamples  prometheus.Counter
	droppedRecords  prometheus.Counter
	fsyncs          prometheus.Counter
}

func newMetrics(stats func() Stats) *metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: metricPrefix + name, Help: help})
	}
	gauge := func(name, help string, f func(Stats) float64) prometheus.GaugeFunc {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: metricPrefix + name, Help: help},
			func() float64 { return f(stats()) })
	}
	m := &metrics{
		appendedSamples: counter("appended_samples_total", "Samples appended to the disk buffer."),
		appendedRecords: counter("appended_records_total", "Records appended to the disk buffer."),
		ackedSamples:    counter("acked_samples_total", "Samples acknowledged by the hub."),
		droppedSamples:  counter("dropped_samples_total", "Unacknowledged samples dropped because the buffer was full."),
		droppedRecords:  counter("dropped_records_total", "Unacknowledged records dropped because the buffer was full."),
		fsyncs:          counter("fsyncs_total", "fsync calls made by the disk buffer."),
	}
	m.collectors = []prometheus.Collector{
		m.appendedSamples, m.appendedRecords, m.ackedSamples, m.droppedSamples, m.droppedRecords, m.fsyncs,
		gauge("bytes", "Bytes of segment files in the disk buffer.",
			func(s Stats) float64 { return float64(s.Bytes) }),
		gauge("records", "Unacknowledged records in the disk buffer.",
			func(s Stats) float64 { return float64(s.Records) }),
		gauge("samples", "Unacknowledged samples in the disk buffer.",
			func(s Stats) float64 { return float64(s.Samples) }),
		gauge("oldest_unacked_age_seconds", "Age of the oldest unacknowledged record, 0 if there is none.",
			func(s Stats) float64 {
				if s.OldestUnacked.IsZero() {
					return 0
				}
				return time.Since(s.OldestUnacked).Seconds()
			}),
	}
	return m
}

// register registers every collector with reg, or none of them.
func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	m.reg = reg
	return nil
}

// unregister lets a later queue on the same registerer register again.
func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
	m.reg = nil
}
