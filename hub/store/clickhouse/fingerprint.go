package clickhouse

import (
	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"
)

// Hasher computes series fingerprints, the series id of both tables:
// xxhash64 over each label's name, 0xff, value, 0xff, in label-name order,
// __name__ included. It is part of the storage format (changing it would
// split every stored series), which is why it is defined here rather than
// borrowed from labels.Labels.Hash, whose input is an internal encoding
// that differs between Prometheus build variants.
//
// It gathers the bytes and hashes them once: four small streaming writes
// per label cost a quarter of the hub's ingest CPU (BenchmarkAdmit).
type Hasher struct{ buf []byte }

// Reset starts a new fingerprint, keeping the buffer.
func (h *Hasher) Reset() { h.buf = h.buf[:0] }

// Add adds one label; labels must be added in name order.
func (h *Hasher) Add(name, value string) {
	h.buf = append(h.buf, name...)
	h.buf = append(h.buf, 0xff)
	h.buf = append(h.buf, value...)
	h.buf = append(h.buf, 0xff)
}

// Sum returns the fingerprint.
func (h *Hasher) Sum() uint64 { return xxhash.Sum64(h.buf) }

// Fingerprint returns the fingerprint of a label set.
func Fingerprint(ls labels.Labels) uint64 {
	var h Hasher
	h.Reset()
	ls.Range(func(l labels.Label) { h.Add(l.Name, l.Value) })
	return h.Sum()
}
