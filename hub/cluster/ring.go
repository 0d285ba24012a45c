package cluster

import (
	"sort"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// vnodes is how many points each member has on the ring; enough that
// items spread evenly over three or four hubs.
const vnodes = 128

// Ring is an immutable consistent-hash ring over member names: an item
// belongs to the first member point at or after the item's hash. When a
// member joins or leaves, only the items between its points and their
// predecessors move.
type Ring struct {
	points []uint64
	owner  []string
	names  []string
}

// NewRing builds the ring of members (order does not matter).
func NewRing(members []string) *Ring {
	r := &Ring{names: append([]string(nil), members...)}
	sort.Strings(r.names)
	type pt struct {
		h    uint64
		name string
	}
	pts := make([]pt, 0, len(members)*vnodes)
	for _, m := range r.names {
		for i := 0; i < vnodes; i++ {
			pts = append(pts, pt{xxhash.Sum64String(m + "#" + strconv.Itoa(i)), m})
		}
	}
	sort.Slice(pts, func(i, j int) bool {
		if pts[i].h != pts[j].h {
			return pts[i].h < pts[j].h
		}
		return pts[i].name < pts[j].name
	})
	for _, p := range pts {
		r.points = append(r.points, p.h)
		r.owner = append(r.owner, p.name)
	}
	return r
}

// Owner is the member an item key belongs to ("" on an empty ring).
func (r *Ring) Owner(key string) string {
	if len(r.points) == 0 {
		return ""
	}
	h := xxhash.Sum64String(key)
	i := sort.Search(len(r.points), func(i int) bool { return r.points[i] >= h })
	if i == len(r.points) {
		i = 0
	}
	return r.owner[i]
}

// Members are the ring's member names, sorted.
func (r *Ring) Members() []string { return append([]string(nil), r.names...) }
