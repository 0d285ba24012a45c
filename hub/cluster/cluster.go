// Package cluster makes several hubs one: they find each other with
// hashicorp/memberlist (encrypted gossip), and every piece of work that
// must be done once (a tenant's rule evaluation and alert notifications,
// a forecast signal, an autoscale target) is owned by exactly one live hub,
// chosen on a consistent-hash ring over the live members. When a hub
// joins, leaves or fails, the ring changes and the work moves; a hub that
// gains an item waits Settle before acting on it, a hub that loses one
// stops at once, so two hubs act on one item only while their views of
// the membership disagree for longer than Settle.
//
// Gossip also carries state that every hub must hold (silences and the
// alert notification log) through named channels whose merges must be
// idempotent, commutative and associative.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// Member is one hub as this hub sees it.
type Member struct {
	Name          string `json:"name"`
	Address       string `json:"address"`
	State         string `json:"state"`
	HTTPAddress   string `json:"http_address"`
	ConfigVersion string `json:"config_version"`
	Self          bool   `json:"self"`
	// Services are the load-balancer addresses of the hosted services
	// this hub serves, by service name.
	Services map[string]string `json:"services,omitempty"`
}

// meta is what each hub publishes about itself in its alive messages.
type meta struct {
	ConfigVersion string            `json:"v"`
	HTTPAddress   string            `json:"h"`
	Services      map[string]string `json:"s,omitempty"`
}

// Cluster is this hub's membership. Owns and Owner are safe for concurrent
// use and cheap (a ring lookup).
type Cluster struct {
	cfg      Config
	httpAddr string
	logger   *slog.Logger
	now      func() time.Time

	ml         *memberlist.Memberlist
	broadcasts *memberlist.TransmitLimitedQueue
	// kick asks the rebuild loop to recompute the ring: memberlist calls
	// its event delegate with its own lock held, so the delegate must not
	// call back into it.
	kick chan struct{}
	done chan struct{}
	// reliable queues messages too big for a gossip packet; they go to
	// every peer over TCP.
	reliable chan []byte

	mu        sync.RWMutex
	ring      *Ring
	prevRing  *Ring     // the ring before the last change
	changedAt time.Time // when the ring last changed
	// prevChangedAt is when prevRing took effect.
	prevChangedAt time.Time
	// gone remembers hubs that left or failed, for the member list and
	// metrics: memberlist's Members lists live ones only.
	gone     map[string]Member
	acquired map[string]time.Time // item key -> when this hub became its owner
	channels map[string]*Channel
	services map[string]string // hosted service -> its load balancer's address, published in meta

	members  *prometheus.GaugeVec
	changes  prometheus.Counter
	refused  *prometheus.CounterVec
	received *prometheus.CounterVec
	dropped  prometheus.Counter
}

// New builds the membership for a validated config; httpAddr is this hub's
// HTTP address, published to peers. Nothing runs until Start.
func New(cfg Config, httpAddr string, logger *slog.Logger, reg prometheus.Registerer) *Cluster {
	c := &Cluster{cfg: cfg, httpAddr: httpAddr, logger: logger, now: time.Now,
		kick: make(chan struct{}, 1), done: make(chan struct{}), reliable: make(chan []byte, 1024), gone: map[string]Member{},
		ring: NewRing(nil), prevRing: NewRing(nil), acquired: map[string]time.Time{}, channels: map[string]*Channel{},
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bureauhub_cluster_members", Help: "Hubs in the cluster as this hub sees them, by state (alive, suspect, dead, left).",
		}, []string{"state"}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bureauhub_cluster_ring_changes_total", Help: "Times the ownership ring changed (a hub joined, left or failed).",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_cluster_refused_peers_total", Help: "Peers refused, by reason (config_version).",
		}, []string{"reason"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_cluster_gossip_messages_total", Help: "Gossiped state messages received, by channel and result (merged, failed).",
		}, []string{"channel", "result"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bureauhub_cluster_reliable_messages_dropped_total", Help: "Large messages to peers dropped because the send queue was full.",
		}),
	}
	if reg != nil {
		reg.MustRegister(c.members, c.changes, c.refused, c.received, c.dropped)
	}
	return c
}

// Name is this hub's member name.
func (c *Cluster) Name() string { return c.cfg.Name }

// Start creates the memberlist and joins the configured peers. A join
// that reaches nobody is not an error: this hub runs alone and the others
// join it. Channels must be registered before Start.
func (c *Cluster) Start() error {
	host, portStr, _ := net.SplitHostPort(c.cfg.BindAddress)
	port, _ := strconv.Atoi(portStr)
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.cfg.Name
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = host, port
	if c.cfg.AdvertiseAddress != "" {
		ah, ap, _ := net.SplitHostPort(c.cfg.AdvertiseAddress)
		mc.AdvertiseAddr = ah
		mc.AdvertisePort, _ = strconv.Atoi(ap)
	}
	mc.ProbeInterval, mc.ProbeTimeout = c.cfg.ProbeInterval, c.cfg.ProbeTimeout
	mc.SuspicionMult = c.cfg.SuspicionMult
	mc.GossipInterval = c.cfg.GossipInterval
	mc.PushPullInterval = 10 * c.cfg.ProbeInterval
	mc.Delegate = (*delegate)(c)
	mc.Events = (*events)(c)
	mc.Alive = (*alive)(c)
	mc.Logger = nil
	mc.LogOutput = &logWriter{logger: c.logger}
	if c.cfg.SecretKeyFile != "" {
		key, err := LoadKey(c.cfg.SecretKeyFile)
		if err != nil {
			return fmt.Errorf("cluster.secret_key_file: %w", err)
		}
		mc.SecretKey = key
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	c.broadcasts = &memberlist.TransmitLimitedQueue{NumNodes: c.numMembers, RetransmitMult: 3}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("start cluster membership on %s: %w", c.cfg.BindAddress, err)
	}
	c.ml = ml
	c.rebuild()
	go func() {
		for {
			select {
			case <-c.done:
				return
			case <-c.kick:
				c.rebuild()
			}
		}
	}()
	go func() {
		for {
			select {
			case <-c.done:
				return
			case msg := <-c.reliable:
				for _, n := range c.ml.Members() {
					if n.Name == c.cfg.Name || n.State != memberlist.StateAlive {
						continue
					}
					if err := c.ml.SendReliable(n, msg); err != nil {
						c.logger.Warn("send to peer", "peer", n.Name, "err", err)
					}
				}
			}
		}
	}()
	if len(c.cfg.Join) > 0 {
		n, err := ml.Join(c.cfg.Join)
		if err != nil {
			c.logger.Warn("joined no cluster peer; running alone until peers join", "join", c.cfg.Join, "err", err)
		} else {
			c.logger.Info("joined cluster", "contacted", n, "members", len(ml.Members()))
		}
	}
	return nil
}

// Run rejoins the configured peers while this hub is alone (a peer may
// have started later), until ctx ends; then it leaves the cluster so the
// others take over at once rather than after failure detection.
func (c *Cluster) Run(ctx context.Context) error {
	t := time.NewTicker(5 * c.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := c.ml.Leave(2 * time.Second); err != nil {
				c.logger.Warn("leave cluster", "err", err)
			}
			return c.Shutdown()
		case <-t.C:
			if len(c.cfg.Join) > 0 && c.ml.NumMembers() < 2 {
				_, _ = c.ml.Join(c.cfg.Join)
			}
		}
	}
}

// Shutdown stops gossip at once, without telling the peers (they detect
// the failure); Run's end leaves gracefully instead.
func (c *Cluster) Shutdown() error {
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	return c.ml.Shutdown()
}

func (c *Cluster) numMembers() int {
	if c.ml == nil {
		return 1
	}
	return c.ml.NumMembers()
}

// rebuild recomputes the ring from the alive members.
func (c *Cluster) rebuild() {
	if c.ml == nil {
		return
	}
	// memberlist's Members are the live hubs (alive or suspect; its Node
	// does not say which).
	var names []string
	for _, n := range c.ml.Members() {
		names = append(names, n.Name)
	}
	c.mu.Lock()
	for _, n := range names {
		delete(c.gone, n)
	}
	counts := map[string]int{"alive": len(names)}
	for _, m := range c.gone {
		counts[m.State]++
	}
	c.mu.Unlock()
	for _, s := range []string{"alive", "dead", "left"} {
		c.members.WithLabelValues(s).Set(float64(counts[s]))
	}
	r := NewRing(names)
	c.mu.Lock()
	same := strings.Join(r.Members(), ",") == strings.Join(c.ring.Members(), ",")
	if !same {
		now := c.now()
		c.prevRing, c.prevChangedAt = c.ring, c.changedAt
		c.ring, c.changedAt = r, now
		for k := range c.acquired {
			if r.Owner(k) != c.cfg.Name {
				delete(c.acquired, k)
			}
		}
	}
	c.mu.Unlock()
	if !same {
		c.changes.Inc()
		c.logger.Info("cluster ring changed", "members", names)
	}
}

// Owner is the hub an item belongs to now.
func (c *Cluster) Owner(key string) string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.ring.Owner(key)
}

// Owns reports whether this hub should act on the item now: it owns it,
// and either owned it before the last ring change too or the change is
// at least Settle old. A hub that loses an item stops at once; one that
// gains it waits Settle, the time gossip needs to tell the previous owner.
func (c *Cluster) Owns(key string) bool {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ring.Owner(key) != c.cfg.Name {
		delete(c.acquired, key)
		return false
	}
	at, ok := c.acquired[key]
	if !ok {
		// Ours before the change as well, under a ring that held for at
		// least Settle (a hub's first ring, of itself alone before it
		// joins, does not count): act at once. Otherwise wait Settle
		// from the change.
		if c.prevRing.Owner(key) == c.cfg.Name && !c.prevChangedAt.IsZero() && c.changedAt.Sub(c.prevChangedAt) >= c.cfg.Settle {
			at = time.Time{}
		} else {
			at = c.changedAt
		}
		c.acquired[key] = at
	}
	return now.Sub(at) >= c.cfg.Settle
}

// Members lists the hubs this hub knows, by name: the live ones ("alive";
// memberlist does not expose which of them are suspected) and those that
// left ("left") or failed ("dead") since this hub started.
func (c *Cluster) Members() []Member {
	var out []Member
	if c.ml == nil {
		return out
	}
	live := map[string]bool{}
	for _, n := range c.ml.Members() {
		var m meta
		_ = json.Unmarshal(n.Meta, &m)
		live[n.Name] = true
		out = append(out, Member{Name: n.Name, Address: n.Address(), State: "alive",
			HTTPAddress: m.HTTPAddress, ConfigVersion: m.ConfigVersion, Self: n.Name == c.cfg.Name, Services: m.Services})
	}
	c.mu.RLock()
	for name, m := range c.gone {
		if !live[name] {
			out = append(out, m)
		}
	}
	c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// SetServiceAddress publishes the address other hubs forward a hosted
// service's requests to while this hub runs it. Safe before and after
// Start (peers learn of a change through memberlist's node updates).
func (c *Cluster) SetServiceAddress(service, address string) {
	c.mu.Lock()
	if c.services == nil {
		c.services = map[string]string{}
	}
	c.services[service] = address
	ml := c.ml
	c.mu.Unlock()
	if ml != nil {
		if err := ml.UpdateNode(5 * time.Second); err != nil {
			c.logger.Warn("publishing a service address to peers failed", "service", service, "err", err)
		}
	}
}

// ServiceOwner is the hub that owns key now and the address it published
// for service ("" when the owner published none, or is unknown).
func (c *Cluster) ServiceOwner(key, service string) (hub, address string) {
	hub = c.Owner(key)
	if hub == "" || c.ml == nil {
		return hub, ""
	}
	for _, n := range c.ml.Members() {
		if n.Name == hub {
			var m meta
			_ = json.Unmarshal(n.Meta, &m)
			return hub, m.Services[service]
		}
	}
	return hub, ""
}

// Handler serves GET /api/v1/cluster: the members, their states, and who
// owns the given items (?item=key, repeatable).
func (c *Cluster) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		owners := map[string]string{}
		for _, k := range r.URL.Query()["item"] {
			owners[k] = c.Owner(k)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{
			"self": c.cfg.Name, "config_version": c.cfg.ConfigVersion, "members": c.Members(), "owners": owners}})
	})
}

// Channel carries one kind of gossiped state. Merge must be idempotent,
// commutative and associative, because messages arrive more than once and
// in any order.
type Channel struct {
	name  string
	c     *Cluster
	merge func([]byte) error
	state func() []byte
}

// AddChannel registers a gossip channel before Start: merge applies a
// message from a peer; state, if not nil, returns this hub's full state,
// sent to peers on join and on periodic full syncs.
func (c *Cluster) AddChannel(name string, merge func([]byte) error, state func() []byte) *Channel {
	ch := &Channel{name: name, c: c, merge: merge, state: state}
	c.mu.Lock()
	c.channels[name] = ch
	c.mu.Unlock()
	return ch
}

// maxGossip is the largest message sent by UDP gossip; larger ones go to
// every peer over TCP.
const maxGossip = 1000

// Broadcast sends b to every peer: small messages by gossip (eventually,
// retransmitted), large ones over TCP to each live peer (queued; dropped
// and counted when the queue is full).
func (ch *Channel) Broadcast(b []byte) {
	if ch.c.broadcasts == nil {
		return
	}
	msg := frame(ch.name, b)
	if len(msg) <= maxGossip {
		ch.c.broadcasts.QueueBroadcast(simpleBroadcast(msg))
		return
	}
	select {
	case ch.c.reliable <- msg:
	default:
		ch.c.dropped.Inc()
	}
}

func frame(name string, b []byte) []byte {
	out := make([]byte, 0, 1+len(name)+len(b))
	out = append(out, byte(len(name)))
	out = append(out, name...)
	return append(out, b...)
}

func unframe(b []byte) (string, []byte, error) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", nil, errors.New("short gossip message")
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], nil
}

type simpleBroadcast []byte

func (b simpleBroadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b simpleBroadcast) Message() []byte                       { return b }
func (b simpleBroadcast) Finished()                             {}

type delegate Cluster

func (d *delegate) NodeMeta(limit int) []byte {
	d.mu.RLock()
	b, _ := json.Marshal(meta{ConfigVersion: d.cfg.ConfigVersion, HTTPAddress: d.httpAddr, Services: d.services})
	d.mu.RUnlock()
	if len(b) > limit {
		return nil
	}
	return b
}

func (d *delegate) NotifyMsg(b []byte) {
	name, payload, err := unframe(b)
	if err != nil {
		return
	}
	d.mu.RLock()
	ch := d.channels[name]
	d.mu.RUnlock()
	if ch == nil {
		return
	}
	if err := ch.merge(append([]byte(nil), payload...)); err != nil {
		d.received.WithLabelValues(name, "failed").Inc()
		d.logger.Warn("merge gossiped state", "channel", name, "err", err)
		return
	}
	d.received.WithLabelValues(name, "merged").Inc()
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	if d.broadcasts == nil {
		return nil
	}
	return d.broadcasts.GetBroadcasts(overhead, limit)
}

// LocalState is every channel's full state, for a push/pull sync.
func (d *delegate) LocalState(bool) []byte {
	d.mu.RLock()
	defer d.mu.RUnlock()
	all := map[string][]byte{}
	for name, ch := range d.channels {
		if ch.state != nil {
			all[name] = ch.state()
		}
	}
	b, _ := json.Marshal(all)
	return b
}

func (d *delegate) MergeRemoteState(b []byte, _ bool) {
	var all map[string][]byte
	if err := json.Unmarshal(b, &all); err != nil {
		return
	}
	for name, payload := range all {
		d.NotifyMsg(frame(name, payload))
	}
}

type events Cluster

func (e *events) NotifyJoin(n *memberlist.Node) {
	e.logger.Info("hub joined the cluster", "member", n.Name, "address", n.Address())
	e.changed()
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	// memberlist's Node.State is not maintained in v0.6, so a graceful
	// leave and a failure both show as "dead" here.
	e.logger.Warn("hub left or failed", "member", n.Name, "address", n.Address())
	var m meta
	_ = json.Unmarshal(n.Meta, &m)
	e.mu.Lock()
	e.gone[n.Name] = Member{Name: n.Name, Address: n.Address(), State: "dead", HTTPAddress: m.HTTPAddress, ConfigVersion: m.ConfigVersion}
	e.mu.Unlock()
	e.changed()
}

func (e *events) NotifyUpdate(*memberlist.Node) { e.changed() }

func (e *events) changed() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

type alive Cluster

// NotifyAlive refuses a peer whose shared configuration differs: two hubs
// with different tenants or rules must not divide work between them.
func (a *alive) NotifyAlive(n *memberlist.Node) error {
	if n.Name == a.cfg.Name {
		return nil
	}
	var m meta
	if err := json.Unmarshal(n.Meta, &m); err != nil {
		a.refused.WithLabelValues("bad_meta").Inc()
		a.logger.Error("refusing cluster peer: unreadable metadata (not a bureauhub hub?)", "peer", n.Name, "address", n.Address())
		return fmt.Errorf("peer %s: unreadable metadata", n.Name)
	}
	if m.ConfigVersion != a.cfg.ConfigVersion {
		a.refused.WithLabelValues("config_version").Inc()
		a.logger.Error("refusing cluster peer with an incompatible config version", "peer", n.Name, "address", n.Address(),
			"peer_config_version", m.ConfigVersion, "config_version", a.cfg.ConfigVersion)
		return fmt.Errorf("peer %s has config_version %q, this hub %q", n.Name, m.ConfigVersion, a.cfg.ConfigVersion)
	}
	return nil
}

// logWriter turns memberlist's log lines into slog records, keeping its
// [DEBUG]/[WARN]/[ERR] levels.
type logWriter struct{ logger *slog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	if i := strings.Index(line, "["); i >= 0 {
		line = line[i:]
	}
	switch {
	case strings.HasPrefix(line, "[DEBUG]"):
		w.logger.Debug(strings.TrimSpace(strings.TrimPrefix(line, "[DEBUG] memberlist:")), "component", "memberlist")
	case strings.HasPrefix(line, "[WARN]"):
		w.logger.Warn(strings.TrimSpace(strings.TrimPrefix(line, "[WARN] memberlist:")), "component", "memberlist")
	case strings.HasPrefix(line, "[ERR]"):
		w.logger.Error(strings.TrimSpace(strings.TrimPrefix(line, "[ERR] memberlist:")), "component", "memberlist")
	default:
		w.logger.Info(line, "component", "memberlist")
	}
	return len(p), nil
}
