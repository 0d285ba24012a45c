// Package sink turns samples from every agent source (scrapes, remote_write,
// host metrics) into durable batches: it adds the agent's identity labels,
// encodes the remote_write 1.0 wire format (snappy-compressed
// prometheus.WriteRequest) and appends it to the on-disk queue.
package sink

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
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
			Help: "Samples not kept, by source and reason: native_histogram (the hub cannot store them; exemplars are not forwarded either), duplicate_series (a series exposed twice in one scrape: the first is kept).",
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

// Write labels and appends series (their label slices are not modified).
// When Write returns nil every sample is in the durable buffer. Native
// histograms (counted in bureauhub_agent_unsupported_samples_total) and
// exemplars are not kept.
func (s *Sink) Write(source string, ts []prompb.TimeSeries) error {
	b := s.NewBatch(source)
	for i := range ts {
		if n := len(ts[i].Histograms); n > 0 {
			s.Unsupported(source, "native_histogram", n)
		}
		b.add(ts[i].Labels, ts[i].Samples)
	}
	return b.Commit()
}

// Batch encodes series into buffer records as they come: each record is a
// snappy-compressed remote_write 1.0 WriteRequest of about maxBatchSamples
// samples, compressed as soon as it is full, so that a batch holds one
// record's encoding plus the compressed ones rather than every series of a
// large scrape. Nothing reaches the buffer before Commit; Discard drops it
// all. A Batch is not safe for concurrent use.
type Batch struct {
	s       *Sink
	source  string
	eb      *encodeBuf // the record being encoded; nil once committed or discarded
	n       int        // samples in it
	records []record   // compressed, waiting for Commit
	labels  []prompb.Label
	ts      prompb.TimeSeries
	sample  [1]prompb.Sample
}

type record struct {
	payload []byte
	samples int
}

// NewBatch starts a batch of series from source.
func (s *Sink) NewBatch(source string) *Batch {
	eb, _ := s.bufs.Get().(*encodeBuf)
	if eb == nil {
		eb = &encodeBuf{}
	}
	eb.raw = eb.raw[:0]
	return &Batch{s: s, source: source, eb: eb}
}

// Add appends a series with one sample; ls are its labels as scraped, to
// which the identity is added.
func (b *Batch) Add(ls labels.Labels, t int64, v float64) {
	b.labels = b.labels[:0]
	ls.Range(func(l labels.Label) { b.labels = append(b.labels, prompb.Label{Name: l.Name, Value: l.Value}) })
	b.sample[0] = prompb.Sample{Timestamp: t, Value: v}
	b.encode(b.sample[:])
}

// add appends a series with its float samples; a series without any is
// left out.
func (b *Batch) add(ls []prompb.Label, samples []prompb.Sample) {
	b.labels = append(b.labels[:0], ls...)
	b.encode(samples)
}

// encode labels b.labels and appends the series to the current record as
// a WriteRequest's field 1 (timeseries), which is how the generated
// WriteRequest.Marshal lays each out: the record decodes as one
// WriteRequest. A record closes at the series that reaches maxBatch
// samples; series are never split.
func (b *Batch) encode(samples []prompb.Sample) {
	if len(samples) == 0 {
		return
	}
	b.labels = b.s.label(b.labels)
	b.ts.Labels, b.ts.Samples = b.labels, samples
	size := b.ts.Size()
	raw := append(b.eb.raw, 0x0a) // field 1, length-delimited
	raw = binary.AppendUvarint(raw, uint64(size))
	raw = slices.Grow(raw, size)
	raw = raw[:len(raw)+size]
	// Size and marshal come from the same generated code; a mismatch is
	// a bug in it, not bad input.
	if _, err := b.ts.MarshalToSizedBuffer(raw[len(raw)-size:]); err != nil {
		panic(fmt.Sprintf("sink: marshal series: %v", err))
	}
	b.eb.raw = raw
	b.ts.Labels, b.ts.Samples = nil, nil
	b.n += len(samples)
	if b.n >= b.s.maxBatch {
		b.seal()
	}
}

// seal compresses the current record into its own slice.
func (b *Batch) seal() {
	if b.n == 0 {
		return
	}
	b.eb.compressed = snappy.Encode(b.eb.compressed[:cap(b.eb.compressed)], b.eb.raw)
	b.records = append(b.records, record{payload: bytes.Clone(b.eb.compressed), samples: b.n})
	b.eb.raw, b.n = b.eb.raw[:0], 0
}

// Commit appends the batch's records to the buffer, in order, stopping at
// the first that fails (the ones before it stay appended and counted).
func (b *Batch) Commit() error {
	if b.eb == nil {
		return errors.New("sink: batch already committed or discarded")
	}
	b.seal()
	defer b.Discard()
	for _, r := range b.records {
		if _, err := b.s.q.Append(r.payload, r.samples); err != nil {
			return fmt.Errorf("append batch to buffer: %w", err)
		}
		b.s.samples.WithLabelValues(b.source).Add(float64(r.samples))
		b.s.series.WithLabelValues(b.source).Inc()
	}
	return nil
}

// Discard drops what the batch holds.
func (b *Batch) Discard() {
	if b.eb != nil {
		b.eb.raw = b.eb.raw[:0]
		b.s.bufs.Put(b.eb)
		b.eb = nil
	}
	b.records, b.n = nil, 0
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
