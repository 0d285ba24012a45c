package head

import (
	"math"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	appended      prometheus.Counter
	failures      *prometheus.CounterVec
	full          prometheus.Counter
	reads         *prometheus.CounterVec
	refillSeconds prometheus.Gauge
	refilled      prometheus.Counter
	openReads     prometheus.Gauge
	unheld        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, h *Head) (*metrics, error) {
	m := &metrics{
		appended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bureauhub_head_appended_samples_total",
			Help: "Samples stored in ClickHouse by this hub and appended to its in-memory head.",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_head_append_failures_total",
			Help: "Samples stored in ClickHouse that the head could not append, by reason; reads overlapping them go to ClickHouse.",
		}, []string{"reason"}),
		full: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bureauhub_head_tenants_over_max_series_total",
			Help: "Tenants whose series went over query.head.max_series; their reads go to ClickHouse until the hub restarts.",
		}),
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_head_reads_total",
			Help: "Series selections of recent data, by where they were read (head or clickhouse) and why not from the head.",
		}, []string{"source", "reason"}),
		refillSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bureauhub_head_refill_duration_seconds",
			Help: "How long the last refill of the head from ClickHouse took.",
		}),
		refilled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bureauhub_head_refilled_samples_total",
			Help: "Samples read from ClickHouse into the head when the hub started.",
		}),
		unheld: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bureauhub_head_unheld_samples_total",
			Help: "Samples stored during the refill beyond query.head.max_held_samples, appended at once rather than after the refill (out of order for the TSDB).",
		}),
		openReads: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bureauhub_head_open_reads",
			Help: "Reads of the head whose queries have not finished; the head cannot drop what they read until they do.",
		}),
	}
	for _, c := range []prometheus.Collector{m.appended, m.failures, m.full, m.reads, m.refillSeconds, m.refilled, m.openReads, m.unheld, tenantCollector{h}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

var (
	seriesDesc = prometheus.NewDesc("bureauhub_head_series", "Series in the head, by tenant.", []string{"tenant"}, nil)
	fromDesc   = prometheus.NewDesc("bureauhub_head_covered_from_timestamp_seconds",
		"The head holds every sample of the tenant from this time on (outside its hole); absent until the head is refilled.", []string{"tenant"}, nil)
)

// tenantCollector reports each tenant's head at scrape time.
type tenantCollector struct{ h *Head }

func (c tenantCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- seriesDesc
	ch <- fromDesc
}

func (c tenantCollector) Collect(ch chan<- prometheus.Metric) {
	c.h.mu.RLock()
	defer c.h.mu.RUnlock()
	for name, t := range c.h.tenants {
		ch <- prometheus.MustNewConstMetric(seriesDesc, prometheus.GaugeValue, float64(t.db.Head().NumSeries()), name)
		t.mu.Lock()
		from := t.from
		t.mu.Unlock()
		if from != math.MaxInt64 {
			ch <- prometheus.MustNewConstMetric(fromDesc, prometheus.GaugeValue, float64(from)/1000, name)
		}
	}
}
