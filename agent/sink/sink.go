// Package sink turns samples from every agent source (scrapes, remote_write,
// host metrics) into durable batches: it adds the agent's identity labels,
// encodes the remote_write 1.0 wire format (snappy-compressed
// prometheus.WriteRequest) and appends it to the on-disk queue.
package sink

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
)

// Queue is where encoded batches go; *buffer.Queue implements it. Append
// must make the payload durable against a crash of this process before it
// returns.
type Queue interface {
	Append(payload []byte, samples int) (seq uint64, err error)
}

// Identity labels every series with where it came from.
type Identity struct {
	Bureau   string `yaml:"bureau"`
	Cloud    string `yaml:"cloud"`
	Cluster  string `yaml:"cluster"`
	Instance string `yaml:"instance"`
}

// Validate reports a missing or invalid field.
func (id *Identity) Validate() error {
	for _, f := range []struct{ name, v string }{{"bureau", id.Bureau}, {"cloud", id.Cloud}, {"cluster", id.Cluster}, {"instance", id.Instance}} {
		if f.v == "" {
			return fmt.Errorf("identity.%s: must not be empty", f.name)
		}
		if strings.ContainsAny(f.v, "\n\x00") {
			return fmt.Errorf("identity.%s: contains a control character", f.name)
		}
	}
	return nil
}

// Sink encodes and appends batches. It is safe for concurrent use.
type Sink struct {
	q        Queue
	id       Identity
	maxBatch int

	bufs sync.Pool // *encodeBuf

	series  *prometheus.CounterVec
	samples *prometheus.CounterVec
	dropped *prometheus.CounterVec
}

type encodeBuf struct {
	raw, compressed []byte
}

// New returns a Sink appending to q. maxBatchSamples splits large writes
// (one scrape of a huge target) into several batches. reg may be nil.
func New(q Queue, id Identity, maxBatchSamples int, reg prometheus.Registerer) (*Sink, error) {
	if maxBatchSamples <= 0 {
		return nil, errors.New("max batch samples must be positive")
	}
	s := &Sink{
		q: q, id: id, maxBatch: maxBatchSamples,
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_agent_collected_samples_total",
			Help: "Samples written to the durable buffer, by source.",
		}, []string{"source"}),
		series: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_agent_collected_batches_total",
			Help: "Batches written to the durable buffer, by source.",
		}, []string{"source"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_agent_unsupported_samples_total",
			Help: "Samples not kept because the hub cannot store them, by source and reason (native histograms, exemplars are not forwarded).",
		}, []string{"source", "reason"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.samples, s.series, s.dropped} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// Unsupported counts samples a source could not keep.
func (s *Sink) Unsupported(source, reason string, n int) {
	s.dropped.WithLabelValues(source, reason).Add(float64(n))
}

// Write labels and appends series. It may reorder and modify the label
// slices of ts (the caller must not reuse them concurrently). When Write
// returns nil every sample is in the durable buffer.
func (s *Sink) Write(source string, ts []prompb.TimeSeries) error {
	for i := range ts {
		ts[i].Labels = s.label(ts[i].Labels)
		if n := len(ts[i].Histograms); n > 0 {
			s.Unsupported(source, "native_histogram", n)
			ts[i].Histograms = nil
		}
		ts[i].Exemplars = nil
	}
	start, n := 0, 0
	for i := range ts {
		n += len(ts[i].Samples)
		if n >= s.maxBatch {
			if err := s.append(source, ts[start:i+1], n); err != nil {
				return err
			}
			start, n = i+1, 0
		}
	}
	if n > 0 {
		return s.append(source, ts[start:], n)
	}
	return nil
}

func (s *Sink) append(source string, ts []prompb.TimeSeries, samples int) error {
	eb, _ := s.bufs.Get().(*encodeBuf)
	if eb == nil {
		eb = &encodeBuf{}
	}
	defer s.bufs.Put(eb)
	wr := prompb.WriteRequest{Timeseries: ts}
	size := wr.Size()
	if cap(eb.raw) < size {
		eb.raw = make([]byte, size)
	}
	eb.raw = eb.raw[:size]
	if _, err := wr.MarshalToSizedBuffer(eb.raw); err != nil {
		return fmt.Errorf("encode batch: %w", err)
	}
	eb.compressed = snappy.Encode(eb.compressed[:cap(eb.compressed)], eb.raw)
	if _, err := s.q.Append(eb.compressed, samples); err != nil {
		return fmt.Errorf("append batch to buffer: %w", err)
	}
	s.samples.WithLabelValues(source).Add(float64(samples))
	s.series.WithLabelValues(source).Inc()
	return nil
}

// label applies the identity: bureau always (the hub enforces it too);
// cloud, cluster and instance only where absent, as Prometheus's
// external_labels do, so a federated Prometheus keeps its own.
func (s *Sink) label(ls []prompb.Label) []prompb.Label {
	set := func(name, value string, override bool) {
		for i := range ls {
			if ls[i].Name == name {
				if override || ls[i].Value == "" {
					ls[i].Value = value
				}
				return
			}
		}
		ls = append(ls, prompb.Label{Name: name, Value: value})
	}
	set("bureau", s.id.Bureau, true)
	set("cloud", s.id.Cloud, false)
	set("cluster", s.id.Cluster, false)
	set("instance", s.id.Instance, false)
	slices.SortFunc(ls, func(a, b prompb.Label) int { return strings.Compare(a.Name, b.Name) })
	return ls
}
