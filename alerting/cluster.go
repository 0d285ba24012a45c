package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cespare/xxhash/v2"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/notify"

	"github.com/bureauhub/bureauhub/hub/cluster"
)

// Gossip channel names.
const (
	channelSilences = "sil"
	channelNflog    = "nfl"
	channelAlerts   = "alr"
)

// JoinCluster makes this alerting one of several hubs' (call it before
// Run and before the cluster starts):
//
//   - silences and the notification log are gossiped, merged with
//     Alertmanager's own merge functions (last update of an entry wins:
//     idempotent, commutative, associative), so a silence created on one
//     hub applies on all, and a new owner knows what the previous one sent;
//   - every alert received (from this hub's rules or its v2 API) is sent to
//     every peer, as Prometheus sends to every Alertmanager of an HA pair,
//     so every hub holds every alert;
//   - only the owner of a notification group (on the cluster's ring) runs
//     the notification pipeline for it, and only the owner of an alert
//     records its state changes in the history.
func (a *Alerting) JoinCluster(c *cluster.Cluster) {
	a.peers = c
	sil := c.AddChannel(channelSilences, a.silences.Merge, func() []byte {
		b, _ := a.silences.MarshalBinary()
		return b
	})
	a.silences.SetBroadcast(sil.Broadcast)
	nfl := c.AddChannel(channelNflog, a.nflog.Merge, func() []byte {
		b, _ := a.nflog.MarshalBinary()
		return b
	})
	a.nflog.SetBroadcast(nfl.Broadcast)
	a.alertsCh = c.AddChannel(channelAlerts, a.mergeAlerts, nil)
}

// owns is true on a single hub, or on the owner of key in a cluster.
func (a *Alerting) owns(key string) bool { return a.peers == nil || a.peers.Owns(key) }

// alertsMessage carries alerts between hubs.
type alertsMessage struct {
	Alerts []*alert.Alert `json:"alerts"`
}

// share sends alerts this hub received to its peers.
func (a *Alerting) share(alerts []*alert.Alert) {
	if a.alertsCh == nil || len(alerts) == 0 {
		return
	}
	b, err := json.Marshal(alertsMessage{Alerts: alerts})
	if err != nil {
		a.logger.Error("encode alerts for peers", "err", err)
		return
	}
	a.alertsCh.Broadcast(b)
}

// mergeAlerts stores alerts a peer received. Putting the same alert twice
// is a no-op beyond its update time, so duplicates are harmless.
func (a *Alerting) mergeAlerts(b []byte) error {
	var m alertsMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("decode alerts from a peer: %w", err)
	}
	rt := a.rt.Load()
	if rt == nil {
		a.m.notRunningDrop.Add(float64(len(m.Alerts)))
		return nil
	}
	valid := m.Alerts[:0]
	for _, al := range m.Alerts {
		if al.Validate() == nil {
			valid = append(valid, al)
		}
	}
	return rt.alerts.Put(context.Background(), valid...)
}

// ownerGate runs the notification pipeline only on the owner of the
// notification group; elsewhere the flush does nothing (and records
// nothing in the notification log). It also runs one flush of a group at a
// time: the group's own timer and an immediate resolved flush
// (send_resolved_immediately) may fire together, and the second must see
// what the first wrote to the notification log, or both would send.
type ownerGate struct {
	next  notify.Stage
	owns  func(string) bool
	locks *[256]sync.Mutex
}

func newOwnerGate(next notify.Stage, owns func(string) bool) ownerGate {
	return ownerGate{next: next, owns: owns, locks: new([256]sync.Mutex)}
}

func (g ownerGate) Exec(ctx context.Context, l *slog.Logger, alerts ...*alert.Alert) (context.Context, []*alert.Alert, error) {
	gk, ok := notify.GroupKey(ctx)
	if !ok {
		return g.next.Exec(ctx, l, alerts...)
	}
	if !g.owns("notify/" + gk) {
		return ctx, nil, nil
	}
	mu := &g.locks[xxhash.Sum64String(gk)%uint64(len(g.locks))]
	mu.Lock()
	defer mu.Unlock()
	return g.next.Exec(ctx, l, alerts...)
}
