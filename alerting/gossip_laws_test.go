package alerting

import (
	"context"
	"fmt"
	"log/slog"
	goruntime "runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/nflog"
	"github.com/prometheus/alertmanager/nflog/nflogpb"
	"github.com/prometheus/alertmanager/silence"
	pb "github.com/prometheus/alertmanager/silence/silencepb"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The hub cluster gossips silences and the notification log with
// Alertmanager's own merge functions (JoinCluster). These tests check the
// laws a gossiped state must obey, on states that overlap and conflict:
// idempotent (a message delivered twice changes nothing), commutative
// (order of delivery does not matter) and associative (merging merged
// states equals merging the originals).

func newSilences(t *testing.T) *silence.Silences {
	t.Helper()
	s, err := silence.New(silence.Options{Retention: time.Hour, Logger: slog.New(slog.DiscardHandler), Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func marshalSilences(t *testing.T, s *silence.Silences) []byte {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// silencesView is a canonical text of a silences state.
func silencesView(t *testing.T, s *silence.Silences) string {
	t.Helper()
	all, _, err := s.Query(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, x := range all {
		var ms []string
		for _, m := range x.Matchers {
			ms = append(ms, m.Name+"="+m.Pattern)
		}
		lines = append(lines, fmt.Sprintf("%s %v %d %d", x.Id, ms, x.EndsAt.AsTime().UnixNano(), x.UpdatedAt.AsTime().UnixNano()))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func mergeSilences(t *testing.T, states ...[]byte) *silence.Silences {
	t.Helper()
	s := newSilences(t)
	for _, b := range states {
		if err := s.Merge(b); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func TestSilenceGossipMergeLaws(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	newSil := func(bureau string) *pb.Silence {
		return &pb.Silence{Matchers: []*pb.Matcher{{Type: pb.Matcher_EQUAL, Name: "bureau", Pattern: bureau}},
			StartsAt: timestamppb.New(now), EndsAt: timestamppb.New(now.Add(time.Hour)), CreatedBy: "ops", Comment: "maintenance"}
	}
	// a: two silences; b: one of its own plus a's first, expired later
	// (same ID, newer update: a conflict the merge must resolve the same
	// way in any order); c: one of its own.
	a, b, c := newSilences(t), newSilences(t), newSilences(t)
	s1, s2 := newSil("health"), newSil("consular")
	if err := a.Set(ctx, s1); err != nil {
		t.Fatal(err)
	}
	if err := a.Set(ctx, s2); err != nil {
		t.Fatal(err)
	}
	if err := b.Merge(marshalSilences(t, a)); err != nil {
		t.Fatal(err)
	}
	clockMoved(t) // a distinct, later update time
	if err := b.Expire(ctx, s1.Id); err != nil {
		t.Fatal(err)
	}
	if err := b.Set(ctx, newSil("transport")); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, newSil("databureau")); err != nil {
		t.Fatal(err)
	}
	A, B, C := marshalSilences(t, a), marshalSilences(t, b), marshalSilences(t, c)

	once := silencesView(t, mergeSilences(t, A, B, C))
	if got := silencesView(t, mergeSilences(t, A, A, B, B, C, C, A)); got != once {
		t.Errorf("not idempotent:\n%s\nvs\n%s", got, once)
	}
	for _, order := range [][][]byte{{B, A, C}, {C, B, A}, {A, C, B}} {
		if got := silencesView(t, mergeSilences(t, order...)); got != once {
			t.Errorf("not commutative:\n%s\nvs\n%s", got, once)
		}
	}
	ab := marshalSilences(t, mergeSilences(t, A, B))
	bc := marshalSilences(t, mergeSilences(t, B, C))
	if l, r := silencesView(t, mergeSilences(t, ab, C)), silencesView(t, mergeSilences(t, A, bc)); l != r || l != once {
		t.Errorf("not associative:\n(A+B)+C:\n%s\nA+(B+C):\n%s", l, r)
	}
	// The conflict resolved to the newer update: s1 expired.
	got, _, err := mergeSilences(t, A, B).Query(ctx, silence.QIDs(s1.Id))
	if err != nil || len(got) != 1 || !got[0].EndsAt.AsTime().Before(now.Add(time.Hour)) {
		t.Fatalf("conflicting versions of %s: %v %v", s1.Id, got, err)
	}
}

func newLog(t *testing.T) *nflog.Log {
	t.Helper()
	l, err := nflog.New(nflog.Options{Retention: time.Hour, Logger: slog.New(slog.DiscardHandler), Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestNotificationLogGossipMergeLaws(t *testing.T) {
	recv := &nflogpb.Receiver{GroupName: "health", Integration: "webhook", Idx: 0}
	groups := []string{"{}:{bureau=\"health\"}", "{}:{bureau=\"consular\"}", "{}:{bureau=\"transport\"}"}
	marshal := func(l *nflog.Log) []byte {
		b, err := l.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	merge := func(states ...[]byte) *nflog.Log {
		l := newLog(t)
		for _, b := range states {
			if err := l.Merge(b); err != nil {
				t.Fatal(err)
			}
		}
		return l
	}
	view := func(l *nflog.Log) string {
		var lines []string
		for _, g := range groups {
			es, err := l.Query(nflog.QReceiver(recv), nflog.QGroupKey(g))
			if err != nil {
				continue // not in this log
			}
			for _, e := range es {
				lines = append(lines, fmt.Sprintf("%s %v %v %d", g, e.FiringAlerts, e.ResolvedAlerts, e.Timestamp.AsTime().UnixNano()))
			}
		}
		sort.Strings(lines)
		return strings.Join(lines, "\n")
	}
	// Three hubs' logs; the first group notified by a and, later, again by b
	// (the newer entry must win whatever the order).
	a, b, c := newLog(t), newLog(t), newLog(t)
	if err := a.Log(recv, groups[0], []uint64{1}, nil, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := a.Log(recv, groups[1], []uint64{2}, nil, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	clockMoved(t)
	if err := b.Log(recv, groups[0], []uint64{1, 3}, nil, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := c.Log(recv, groups[2], nil, []uint64{4}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	A, B, C := marshal(a), marshal(b), marshal(c)
	once := view(merge(A, B, C))
	if !strings.Contains(once, "[1 3]") || strings.Count(once, "\n") != 2 {
		t.Fatalf("merged log:\n%s", once)
	}
	if got := view(merge(A, B, A, C, B, C)); got != once {
		t.Errorf("not idempotent:\n%s\nvs\n%s", got, once)
	}
	for _, order := range [][][]byte{{B, A, C}, {C, B, A}, {C, A, B}} {
		if got := view(merge(order...)); got != once {
			t.Errorf("not commutative:\n%s\nvs\n%s", got, once)
		}
	}
	if l, r := view(merge(marshal(merge(A, B)), C)), view(merge(A, marshal(merge(B, C)))); l != r || l != once {
		t.Errorf("not associative:\n(A+B)+C:\n%s\nA+(B+C):\n%s", l, r)
	}
}

// clockMoved returns once the wall clock has advanced a millisecond, so
// that the next update carries a later timestamp than the previous ones.
func clockMoved(t *testing.T) {
	t.Helper()
	start := time.Now()
	for time.Since(start) < time.Millisecond {
		goruntime.Gosched()
	}
}
