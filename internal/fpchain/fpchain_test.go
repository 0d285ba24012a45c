package fpchain

import "testing"

// TestFollowers: lookups in a repeated order go to the followers; a swept
// node is reached neither through the map nor through a follower link.
func TestFollowers(t *testing.T) {
	var m Map[int]
	var prev *Node[int]
	for fp := uint64(1); fp <= 3; fp++ {
		if m.Next(prev, fp) != nil {
			t.Fatalf("%d found before it was added", fp)
		}
		prev = m.Add(prev, fp, int(fp)*10)
	}
	a, b := m.Get(1), m.Get(2)
	if a.after != b || b.after != m.Get(3) {
		t.Fatal("Add did not link each node to its predecessor")
	}
	if n := m.Next(a, 2); n != b || n.V != 20 {
		t.Errorf("Next(1, 2) = %v, want node 2", n)
	}
	// Another order relinks.
	if n := m.Next(a, 3); n == nil || n.V != 30 || a.after != n {
		t.Errorf("Next(1, 3) = %v and did not relink", n)
	}
	if left := m.Sweep(func(n *Node[int]) bool { return n.FP == 3 }); left != 2 || m.Len() != 2 {
		t.Errorf("Sweep left %d (Len %d), want 2", left, m.Len())
	}
	if n := m.Next(a, 3); n != nil {
		t.Errorf("Next(1, 3) after the sweep = %v, want nil", n)
	}
	if a.after != nil || b.after != nil {
		t.Error("a node still leads to the swept one")
	}
}
