package history

import (
	"context"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"

	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chtest"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func testConfig() Config {
	c := Config{FlushInterval: 50 * time.Millisecond}
	c.SetDefaults()
	return c
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"default", func(*Config) {}, ""},
		{"table", func(c *Config) { c.Table = "x; DROP TABLE y" }, "history.table"},
		{"queue", func(c *Config) { c.QueueSize = -1 }, "history.queue_size"},
		{"batch", func(c *Config) { c.BatchSize = -1 }, "history.batch_size"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig()
			c.edit(&cfg)
			err := cfg.Validate()
			if (c.field == "") != (err == nil) || (err != nil && !strings.HasPrefix(err.Error(), c.field)) {
				t.Errorf("got %v, want error naming %q", err, c.field)
			}
		})
	}
}

func TestWriteAndQuery(t *testing.T) {
	db := chtest.NewDatabase(t)
	conn := chtest.Open(t, db)
	s := New(testConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), conn, db)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond).UTC()
	rec := func(min int, tenant string, ev Event, ls ...string) Record {
		l := model.LabelSet{}
		for i := 0; i+1 < len(ls); i += 2 {
			l[model.LabelName(ls[i])] = model.LabelValue(ls[i+1])
		}
		return Record{Time: base.Add(time.Duration(min) * time.Minute), Tenant: tenant, Event: ev, Fingerprint: l.Fingerprint().String(),
			Labels: l, Annotations: model.LabelSet{"summary": "s"}, StartsAt: base, Status: "firing"}
	}
	rows := []Record{
		rec(0, "a", EventFiring, "alertname", "Disk", "severity", "warning"),
		rec(1, "a", EventSilenced, "alertname", "Disk", "severity", "warning"),
		rec(2, "b", EventFiring, "alertname", "CPU", "severity", "critical"),
		rec(3, "a", EventResolved, "alertname", "CPU", "severity", "critical"),
	}
	rows[1].SuppressedBy = []string{"sil-1"}
	n := rec(4, "a", EventNotification, "alertname", "Disk")
	n.Receiver, n.Integration, n.Success, n.Error = "team", "webhook[0]", false, "boom"
	rows = append(rows, n)
	for _, r := range rows {
		s.Record(r)
	}
	all := Query{Start: base.Add(-time.Minute), End: base.Add(time.Hour)}
	waitRows(t, s, all, len(rows))

	ms := func(sel ...string) [][]*labels.Matcher {
		var out [][]*labels.Matcher
		for _, x := range sel {
			m, err := labels.ParseMatchers(x)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
		return out
	}
	cases := []struct {
		name string
		q    Query
		want string // minutes of the rows, in order
	}{
		{"all", all, "0 1 2 3 4"},
		{"tenant", Query{Tenant: "b", Start: all.Start, End: all.End}, "2"},
		{"equal", Query{Matchers: ms(`{alertname="Disk"}`), Start: all.Start, End: all.End}, "0 1 4"},
		{"not equal and tenant", Query{Tenant: "a", Matchers: ms(`{alertname!="Disk"}`), Start: all.Start, End: all.End}, "3"},
		{"regex", Query{Matchers: ms(`{severity=~"crit.*"}`), Start: all.Start, End: all.End}, "2 3"},
		{"not regex", Query{Matchers: ms(`{severity!~"crit.*|warn.*"}`), Start: all.Start, End: all.End}, "4"},
		{"missing label equals empty", Query{Matchers: ms(`{severity=""}`), Start: all.Start, End: all.End}, "4"},
		{"or of sets", Query{Matchers: ms(`{severity="warning"}`, `{alertname="CPU",severity="critical"}`), Start: all.Start, End: all.End}, "0 1 2 3"},
		{"time range", Query{Start: base.Add(time.Minute), End: base.Add(3 * time.Minute)}, "1 2 3"},
		{"limit", Query{Start: all.Start, End: all.End, Limit: 2}, "0 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := s.Query(context.Background(), c.q)
			if err != nil {
				t.Fatal(err)
			}
			var mins []string
			for _, r := range got {
				mins = append(mins, strconv.Itoa(int(r.Time.Sub(base)/time.Minute)))
			}
			if g := strings.Join(mins, " "); g != c.want {
				t.Errorf("got rows at minutes %q, want %q", g, c.want)
			}
		})
	}
	got, err := s.Query(context.Background(), Query{Start: all.Start, End: all.End, Matchers: ms(`{alertname="Disk"}`)})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(got, func(i, j int) bool { return got[i].Time.Before(got[j].Time) })
	if r := got[1]; r.Event != EventSilenced || len(r.SuppressedBy) != 1 || r.SuppressedBy[0] != "sil-1" ||
		r.Annotations["summary"] != "s" || !r.StartsAt.Equal(base) || r.Labels["severity"] != "warning" {
		t.Errorf("silenced row read back as %+v", r)
	}
	if r := got[2]; r.Receiver != "team" || r.Integration != "webhook[0]" || r.Success || r.Error != "boom" {
		t.Errorf("notification row read back as %+v", r)
	}
}

func waitRows(tb testing.TB, s *Store, q Query, n int) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := s.Query(context.Background(), q)
		if err == nil && len(got) >= n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("waiting for %d history rows: got %d, err %v", n, len(got), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestQueueBound checks that records beyond the queue are dropped and
// counted rather than blocking.
func TestQueueBound(t *testing.T) {
	cfg := testConfig()
	cfg.QueueSize = 3
	s := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), nil, "db")
	for range 5 {
		s.Record(Record{Time: time.Now()}) // Run is not running: nothing drains
	}
	if got := testutil.ToFloat64(s.dropped.WithLabelValues("queue_full")); got != 2 {
		t.Errorf("dropped %v records, want 2", got)
	}
}
