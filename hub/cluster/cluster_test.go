package cluster

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRingSpreadsAndMovesLittle(t *testing.T) {
	three := NewRing([]string{"hub-1", "hub-2", "hub-3"})
	four := NewRing([]string{"hub-4", "hub-2", "hub-3", "hub-1"})
	counts := map[string]int{}
	moved := 0
	const n = 3000
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("tenant-%d/group", i)
		o := three.Owner(k)
		counts[o]++
		if o2 := four.Owner(k); o2 != o && o2 != "hub-4" {
			t.Fatalf("%s moved from %s to %s, not to the new hub", k, o, o2)
		} else if o2 != o {
			moved++
		}
	}
	for m, c := range counts {
		if c < n/3*7/10 || c > n/3*13/10 {
			t.Errorf("%s owns %d of %d items; want about a third", m, c, n)
		}
	}
	if moved < n/4*6/10 || moved > n/4*14/10 {
		t.Errorf("%d of %d items moved to the fourth hub; want about a quarter", moved, n)
	}
	if NewRing(nil).Owner("x") != "" {
		t.Fatal("empty ring has an owner")
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type node struct {
	c    *Cluster
	logs *syncBuf
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startNode(t *testing.T, name, keyFile, version string, join ...string) *node {
	t.Helper()
	cfg := Config{Name: name, BindAddress: freeAddr(t), Join: join, SecretKeyFile: keyFile, Insecure: keyFile == "",
		ConfigVersion: version, ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 50 * time.Millisecond,
		SuspicionMult: 2, GossipInterval: 50 * time.Millisecond, Settle: 300 * time.Millisecond}
	cfg.SetDefaults()
	if err := cfg.Validate("cluster"); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	c := New(cfg, "127.0.0.1:1", slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), prometheus.NewRegistry())
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Shutdown() })
	return &node{c: c, logs: logs}
}

func (n *node) addr() string { return n.c.cfg.BindAddress }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func aliveCount(c *Cluster) int {
	n := 0
	for _, m := range c.Members() {
		if m.State == "alive" {
			n++
		}
	}
	return n
}

// owners asks every node which items it acts on now and returns, per
// item, the nodes acting on it.
func owners(nodes []*node, items []string) map[string][]string {
	out := map[string][]string{}
	for _, it := range items {
		for _, n := range nodes {
			if n.c.Owns(it) {
				out[it] = append(out[it], n.c.Name())
			}
		}
	}
	return out
}

func writeKey(t *testing.T, key string) string {
	p := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(p, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestOwnershipAcrossJoinAndFailure checks, on three real memberlist
// members on loopback, that every item has exactly one acting owner; that
// when one member fails its items are taken over within failure detection
// plus settle; and that a fourth member's join moves items without two
// members ever acting on one item at once (sampled every 10 ms).
func TestOwnershipAcrossJoinAndFailure(t *testing.T) {
	key := writeKey(t, "0123456789abcdef0123456789abcdef")
	a := startNode(t, "hub-a", key, "1")
	b := startNode(t, "hub-b", key, "1", a.addr())
	c := startNode(t, "hub-c", key, "1", a.addr())
	nodes := []*node{a, b, c}
	waitFor(t, "3 alive members everywhere", func() bool { return aliveCount(a.c) == 3 && aliveCount(b.c) == 3 && aliveCount(c.c) == 3 })
	var items []string
	for i := 0; i < 60; i++ {
		items = append(items, fmt.Sprintf("tenant-%d", i))
	}
	waitFor(t, "every item owned by exactly one hub", func() bool {
		for _, o := range owners(nodes, items) {
			if len(o) != 1 {
				return false
			}
		}
		return len(owners(nodes, items)) == len(items)
	})

	// A fourth hub joins: sample ownership continuously; never two.
	stop := make(chan struct{})
	var doubles []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	var all []*node
	all = append(all, nodes...)
	var allMu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			allMu.Lock()
			cur := append([]*node(nil), all...)
			allMu.Unlock()
			for it, o := range owners(cur, items) {
				if len(o) > 1 {
					mu.Lock()
					doubles = append(doubles, fmt.Sprintf("%s: %v", it, o))
					mu.Unlock()
				}
			}
		}
	}()
	d := startNode(t, "hub-d", key, "1", a.addr())
	// A joining hub acts on nothing before Settle, even on the items it
	// owns from the start: the previous owners may not know of it yet.
	for _, it := range items {
		if d.c.Owns(it) {
			t.Fatalf("hub-d acts on %s right after joining, before settle", it)
		}
	}
	allMu.Lock()
	all = append(all, d)
	allMu.Unlock()
	waitFor(t, "the fourth hub to act on some items", func() bool {
		for _, it := range items {
			if d.c.Owns(it) {
				return true
			}
		}
		return false
	})
	close(stop)
	wg.Wait()
	if len(doubles) > 0 {
		t.Fatalf("items acted on by two hubs at once during the join: %v", doubles[:min(5, len(doubles))])
	}

	// hub-b fails (no leave): its items move to the others.
	failedAt := time.Now()
	_ = b.c.Shutdown()
	rest := []*node{a, c, d}
	waitFor(t, "hub-b's items taken over", func() bool {
		o := owners(rest, items)
		for _, it := range items {
			if len(o[it]) != 1 {
				return false
			}
		}
		return true
	})
	t.Logf("takeover after failure: %v (probe 100ms, suspicion mult 2, settle 300ms)", time.Since(failedAt).Round(time.Millisecond))
	waitFor(t, "hub-b shown dead", func() bool {
		for _, m := range a.c.Members() {
			if m.Name == "hub-b" {
				return m.State == "dead"
			}
		}
		return false
	})
	if v := testutil.ToFloat64(a.c.members.WithLabelValues("dead")); v != 1 {
		t.Fatalf("bureauhub_cluster_members{state=dead} = %v, want 1", v)
	}
	if v := testutil.ToFloat64(a.c.changes); v < 2 {
		t.Fatalf("ring changes counted %v, want at least 2 (join, failure)", v)
	}
}

func TestWrongGossipKeyIsRefused(t *testing.T) {
	a := startNode(t, "hub-a", writeKey(t, "0123456789abcdef0123456789abcdef"), "1")
	b := startNode(t, "hub-b", writeKey(t, "fedcba9876543210fedcba9876543210"), "1", a.addr())
	if n := aliveCount(b.c); n != 1 {
		t.Fatalf("hub with the wrong key sees %d members", n)
	}
	if n := aliveCount(a.c); n != 1 {
		t.Fatalf("hub with the right key admitted the wrong-key hub: %d members", n)
	}
	waitFor(t, "the refusal in the log", func() bool {
		return strings.Contains(a.logs.String()+b.logs.String(), "decrypt") || strings.Contains(b.logs.String(), "joined no cluster peer")
	})
}

func TestIncompatibleConfigVersionIsRefused(t *testing.T) {
	a := startNode(t, "hub-a", "", "7")
	b := startNode(t, "hub-b", "", "8", a.addr())
	waitFor(t, "the refusal logged", func() bool {
		return strings.Contains(a.logs.String()+b.logs.String(), "incompatible config version")
	})
	for _, n := range []*node{a, b} {
		for _, m := range n.c.Members() {
			if !m.Self && m.State == "alive" {
				t.Fatalf("%s admitted %s with another config version", n.c.Name(), m.Name)
			}
		}
	}
	if testutil.ToFloat64(a.c.refused.WithLabelValues("config_version"))+testutil.ToFloat64(b.c.refused.WithLabelValues("config_version")) == 0 {
		t.Fatal("refusal not counted")
	}
}

func TestChannelGossip(t *testing.T) {
	a := startNode(t, "hub-a", "", "1")
	var mu sync.Mutex
	got := map[string]bool{}
	mergeInto := func(b []byte) error { mu.Lock(); got[string(b)] = true; mu.Unlock(); return nil }
	b := &node{}
	// Register on b before it starts: channels are fixed at Start.
	cfg := Config{Name: "hub-b", BindAddress: freeAddr(t), Join: []string{a.addr()}, Insecure: true,
		ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 50 * time.Millisecond, GossipInterval: 50 * time.Millisecond}
	cfg.SetDefaults()
	b.c = New(cfg, "", slog.New(slog.DiscardHandler), nil)
	b.c.AddChannel("test", mergeInto, nil)
	chA := a.c.AddChannel("test", func([]byte) error { return nil }, nil)
	if err := b.c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.c.Shutdown() })
	waitFor(t, "join", func() bool { return aliveCount(a.c) == 2 })
	chA.Broadcast([]byte("silence-1"))
	waitFor(t, "the broadcast merged on the peer", func() bool { mu.Lock(); defer mu.Unlock(); return got["silence-1"] })
}

func TestConfigValidateNamesField(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no port", Config{BindAddress: "127.0.0.1", Insecure: true}, "cluster.bind_address"},
		{"port 0", Config{BindAddress: "127.0.0.1:0", Insecure: true}, "cluster.bind_address"},
		{"no key", Config{BindAddress: "127.0.0.1:7946"}, "cluster.secret_key_file"},
		{"wildcard without advertise", Config{BindAddress: "0.0.0.0:7946", Insecure: true}, "cluster.advertise_address"},
		{"bad key", Config{BindAddress: "127.0.0.1:7946", SecretKeyFile: "/nonexistent"}, "cluster.secret_key_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.SetDefaults()
			err := tt.cfg.Validate("cluster")
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %s", err, tt.want)
			}
		})
	}
}
