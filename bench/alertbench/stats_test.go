package alertbench

import (
	"math"
	"strings"
	"testing"
)

func TestQuantile(t *testing.T) {
	twenty := make([]float64, 20)
	for i := range twenty {
		twenty[i] = float64(20 - i) // unsorted on purpose
	}
	for _, tc := range []struct {
		name string
		xs   []float64
		q    float64
		want float64
	}{
		{"p95 of 20 is the 19th", twenty, 0.95, 19},
		{"p50 of 20 is the 10th", twenty, 0.5, 10},
		{"max", twenty, 1, 20},
		{"min", twenty, 0, 1},
		{"one value", []float64{7}, 0.95, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := quantile(tc.xs, tc.q); got != tc.want {
				t.Fatalf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
	if !math.IsNaN(quantile(nil, 0.5)) {
		t.Fatal("quantile of nothing is not NaN")
	}
}

func TestParseSums(t *testing.T) {
	in := `# HELP alertmanager_notifications_total x
# TYPE alertmanager_notifications_total counter
alertmanager_notifications_total{integration="webhook",receiver="t001"} 10
alertmanager_notifications_total{integration="webhook",receiver="a b}c"} 5
go_goroutines 42
go_memstats_heap_inuse_bytes 1.5e+06
`
	got, err := parseSums(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{"alertmanager_notifications_total": 15, "go_goroutines": 42, "go_memstats_heap_inuse_bytes": 1.5e6} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}

func TestGroupKeyOf(t *testing.T) {
	body := []byte(`{"receiver":"t001","status":"firing","alerts":[],"groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://x","version":"4","groupKey":"{}/{bureau=\"t001\"}:{alertname=\"BenchLoad\", bureau=\"t001\", instance=\"host-0001\"}","truncatedAlerts":0}`)
	want := `{}/{bureau=\"t001\"}:{alertname=\"BenchLoad\", bureau=\"t001\", instance=\"host-0001\"}`
	if got := groupKeyOf(body); got != want {
		t.Fatalf("groupKeyOf = %s, want %s", got, want)
	}
	if got := groupKeyOf([]byte(`{"version":"4"}`)); got != "" {
		t.Fatalf("groupKeyOf without a key = %q", got)
	}
}
