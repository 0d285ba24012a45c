package querybench

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestNewDatasetShape(t *testing.T) {
	end := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, n := range []int{500, 1000, 10_000} {
		d, err := NewDataset(n, 2*time.Hour, 15*time.Second, end, 1)
		if err != nil {
			t.Fatalf("%d series: %v", n, err)
		}
		if len(d.Series) != n {
			t.Errorf("%d series requested, %d built", n, len(d.Series))
		}
		seen := map[string]bool{}
		names := map[string]bool{}
		oneHost := false
		for _, s := range d.Series {
			k := s.Labels.String()
			if seen[k] {
				t.Fatalf("%d series: duplicate %s", n, k)
			}
			seen[k] = true
			names[s.Labels.Get("__name__")] = true
			if s.Labels.Get("bureau") != s.Bureau {
				t.Errorf("%s: bureau label differs from tenant %s", k, s.Bureau)
			}
			if s.OffsetMillis%1000 != 500 || s.OffsetMillis >= 15_000 {
				t.Errorf("%s: offset %d ms is not on a half second within the interval", k, s.OffsetMillis)
			}
			oneHost = oneHost || s.Labels.Get("instance") == d.OneHost
		}
		for _, want := range []string{"node_cpu_seconds_total", "http_requests_total", "http_request_duration_seconds_bucket",
			"node_memory_MemAvailable_bytes", "node_time_seconds", "booking_bookings_total", "booking_attempts_total", "booking_successes_total",
			"healthcode_scan_duration_seconds_bucket", "bureauhub_agent_ship_acked_samples_total"} {
			if !names[want] {
				t.Errorf("%d series: no %s", n, want)
			}
		}
		if !oneHost {
			t.Errorf("%d series: no series of the selective query's instance %s", n, d.OneHost)
		}
	}
}

// TestHistogramsCumulative checks that every classic histogram's buckets
// never decrease with le, that _count equals the +Inf bucket, and that
// buckets grow over time except at a restart.
func TestHistogramsCumulative(t *testing.T) {
	d, err := NewDataset(1000, 6*time.Hour, 15*time.Second, time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), 7)
	if err != nil {
		t.Fatal(err)
	}
	n := d.Samples()
	ts := make([]int64, n)
	// Histograms by their labels without le and suffix.
	buckets := map[string][][]float64{}
	counts := map[string][]float64{}
	for i := range d.Series {
		s := &d.Series[i]
		name := s.Labels.Get("__name__")
		base, kind, ok := strings.Cut(name, "_seconds_")
		if !ok || (kind != "bucket" && kind != "count") {
			continue
		}
		key := base + s.Labels.Get("instance") + s.Labels.Get("handler")
		vals := make([]float64, n)
		d.Timestamps(s, ts)
		d.Values(s, ts, vals)
		if kind == "count" {
			counts[key] = vals
			continue
		}
		le := s.Labels.Get("le")
		idx := -1
		for j, b := range latencyBounds {
			if formatLe(b) == le {
				idx = j
			}
		}
		if buckets[key] == nil {
			buckets[key] = make([][]float64, len(latencyBounds))
		}
		buckets[key][idx] = vals
	}
	if len(buckets) == 0 {
		t.Fatal("no histograms")
	}
	for key, bs := range buckets {
		for j := range n {
			for b := 1; b < len(bs); b++ {
				if bs[b][j] < bs[b-1][j] {
					t.Fatalf("%s: bucket %d below bucket %d at sample %d", key, b, b-1, j)
				}
			}
			if c := counts[key]; c[j] != bs[len(bs)-1][j] {
				t.Fatalf("%s: _count %g, +Inf bucket %g at sample %d", key, c[j], bs[len(bs)-1][j], j)
			}
		}
		inf := bs[len(bs)-1]
		resets := 0
		for j := 1; j < n; j++ {
			if inf[j] < inf[j-1] {
				resets++
			}
		}
		if resets > 1 {
			t.Errorf("%s: %d resets, want at most one restart", key, resets)
		}
	}
}

func TestCompare(t *testing.T) {
	series := `{bureau="alpha"}`
	tests := []struct {
		name     string
		got, prm matrix
		ok       bool
	}{
		{"equal", matrix{series: {{1000, 1}, {2000, 2}}}, matrix{series: {{1000, 1}, {2000, 2}}}, true},
		{"within tolerance", matrix{series: {{1000, 1 + 1e-9}}}, matrix{series: {{1000, 1}}}, true},
		{"NaN on both sides", matrix{series: {{1000, math.NaN()}}}, matrix{series: {{1000, math.NaN()}}}, true},
		{"value differs", matrix{series: {{1000, 1.01}}}, matrix{series: {{1000, 1}}}, false},
		{"missing point", matrix{series: {{1000, 1}}}, matrix{series: {{1000, 1}, {2000, 2}}}, false},
		{"extra series", matrix{series: {{1000, 1}}, `{bureau="beta"}`: {{1000, 1}}}, matrix{series: {{1000, 1}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := compare(tt.got, tt.prm, 1e-6)
			if a.OK() != tt.ok {
				t.Errorf("OK() = %v, want %v (%+v)", a.OK(), tt.ok, a)
			}
			if !tt.ok && a.Example == "" {
				t.Error("a difference without an example")
			}
		})
	}
}

func TestParseMetrics(t *testing.T) {
	page := parseMetrics(`# HELP x y
prometheus_rule_group_last_duration_seconds{rule_group="/a b/slis.rules.yml;bureauhub-slis"} 0.25
prometheus_rule_group_last_duration_seconds{rule_group="q\"uote;g",other="1"} 1e-3
vm_active_force_merges 0
`)
	if len(page) != 3 {
		t.Fatalf("%d samples, want 3", len(page))
	}
	if got := page[0].labels["rule_group"]; got != "/a b/slis.rules.yml;bureauhub-slis" {
		t.Errorf("rule_group = %q", got)
	}
	if got := page[1].labels["rule_group"]; got != `q"uote;g` || page[1].labels["other"] != "1" || page[1].value != 1e-3 {
		t.Errorf("escaped label: %+v", page[1])
	}
	if page.sum("vm_active_force_merges") != 0 || page[2].name != "vm_active_force_merges" {
		t.Errorf("unlabelled sample: %+v", page[2])
	}
}
