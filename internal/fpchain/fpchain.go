// Package fpchain indexes series by fingerprint for lookups made in the
// order agents send series: a target's series come in the same order at
// every scrape, so the series after a given one is most often the one
// that followed it last time. Each node remembers that follower, and Next
// looks there before the map, whose random accesses miss the CPU's caches
// (hub/store/head's BenchmarkAppend: 332 -> 260-278 ns per sample;
// hub/ingest's BenchmarkAdmit: 362-386 -> 292-308).
//
// A Map is not safe for concurrent use.
package fpchain

// Node is a series' entry: its fingerprint and the caller's value.
type Node[T any] struct {
	FP    uint64
	V     T
	after *Node[T] // the node looked up after this one last time
	gone  bool     // swept: no longer in the map
}

// Map indexes nodes by fingerprint.
type Map[T any] struct {
	m map[uint64]*Node[T]
}

// Len returns the number of nodes.
func (m *Map[T]) Len() int { return len(m.m) }

// Get returns fp's node, or nil.
func (m *Map[T]) Get(fp uint64) *Node[T] { return m.m[fp] }

// Next returns fp's node (nil if none), looking first at the node that
// followed prev last time, and records it as prev's follower. prev may be
// nil.
func (m *Map[T]) Next(prev *Node[T], fp uint64) *Node[T] {
	if prev == nil {
		return m.m[fp]
	}
	if n := prev.after; n != nil && n.FP == fp {
		return n
	}
	n := m.m[fp]
	prev.after = n
	return n
}

// Add adds a node for fp, which must not be in the map, as prev's
// follower (prev may be nil).
func (m *Map[T]) Add(prev *Node[T], fp uint64, v T) *Node[T] {
	if m.m == nil {
		m.m = map[uint64]*Node[T]{}
	}
	n := &Node[T]{FP: fp, V: v}
	m.m[fp] = n
	if prev != nil {
		prev.after = n
	}
	return n
}

// Sweep removes the nodes drop reports, so that no remaining node leads
// to them, and returns how many remain.
func (m *Map[T]) Sweep(drop func(*Node[T]) bool) int {
	for fp, n := range m.m {
		if drop(n) {
			delete(m.m, fp)
			n.gone, n.after = true, nil
		}
	}
	for _, n := range m.m {
		if n.after != nil && n.after.gone {
			n.after = nil
		}
	}
	return len(m.m)
}
