package ingest

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	received          *prometheus.CounterVec
	rejected          *prometheus.CounterVec
	written           *prometheus.CounterVec
	batches           *prometheus.CounterVec
	duplicates        *prometheus.CounterVec
	activeSeries      *prometheus.GaugeVec
	queueSamples      prometheus.Gauge
	batchSamples      prometheus.Histogram
	writeRetries      prometheus.Counter
	backpressureWaits prometheus.Counter
	streams           prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, queueCap int) (*metrics, error) {
	m := &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_ingest_received_samples_total",
			Help: "Samples received from agents, by tenant, before validation.",
		}, []string{"tenant"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_ingest_rejected_samples_total",
			Help: "Samples refused, by tenant and reason.",
		}, []string{"tenant", "reason"}),
		written: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_ingest_written_samples_total",
			Help: "Samples stored in ClickHouse and acknowledged, by tenant.",
		}, []string{"tenant"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_ingest_batches_total",
			Help: "Batches received, by tenant and outcome (stored, duplicate, stored_before: resent after a lost acknowledgement and found already stored, invalid, rate_limited, failed).",
		}, []string{"tenant", "outcome"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_ingest_duplicate_samples_total",
			Help: "Samples of resent batches that were already stored and so not stored again.",
		}, []string{"tenant"}),
		activeSeries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bureauhub_ingest_active_series",
			Help: "Series seen within the active series window, by tenant.",
		}, []string{"tenant"}),
		queueSamples: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bureauhub_ingest_queue_samples",
			Help: "Samples accepted and waiting to be written to ClickHouse.",
		}),
		batchSamples: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bureauhub_ingest_insert_samples",
			Help:    "Samples per ClickHouse insert.",
			Buckets: prometheus.ExponentialBuckets(100, 4, 9),
		}),
		writeRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bureauhub_ingest_write_retries_total",
			Help: "ClickHouse inserts retried after an error.",
		}),
		backpressureWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bureauhub_ingest_backpressure_waits_total",
			Help: "Times a stream waited because the write queue was full.",
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bureauhub_ingest_streams",
			Help: "Open agent streams.",
		}),
	}
	capacity := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "bureauhub_ingest_queue_capacity_samples",
		Help: "Configured bound of the write queue.",
	})
	capacity.Set(float64(queueCap))
	if reg != nil {
		for _, c := range []prometheus.Collector{m.received, m.rejected, m.written, m.batches, m.duplicates,
			m.activeSeries, m.queueSamples, m.batchSamples, m.writeRetries, m.backpressureWaits, m.streams, capacity} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
