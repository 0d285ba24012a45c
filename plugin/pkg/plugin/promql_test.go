package plugin

import (
	"strings"
	"testing"
	"time"

	"github.com/bureauhub/bureauhub/hub/autoscale"
)

func TestRestrictToBureaus(t *testing.T) {
	cases := []struct {
		name, expr string
		bureaus    []string
		want       string
		err        string
	}{
		{"none leaves the expression alone", `sum(rate(x[5m]))`, nil, `sum(rate(x[5m]))`, ""},
		{"none does not even parse", `sum(`, nil, `sum(`, ""},
		{"one bureau", `up`, []string{"health"}, `up{bureau=~"health"}`, ""},
		{"sorted alternatives", `up{job="a"}`, []string{"transport", "consular"}, `up{bureau=~"consular|transport",job="a"}`, ""},
		{"every selector, range ones too", `sum by (bureau) (rate(a_total[5m])) / on (bureau) b`, []string{"x"},
			`sum by (bureau) (rate(a_total{bureau=~"x"}[5m])) / on (bureau) b{bureau=~"x"}`, ""},
		{"subquery", `max_over_time(up[10m:1m])`, []string{"x"}, `max_over_time(up{bureau=~"x"}[10m:1m])`, ""},
		{"existing bureau matcher intersects", `up{bureau="a"}`, []string{"b"}, `up{bureau="a",bureau=~"b"}`, ""},
		{"metacharacters are quoted", `up`, []string{"a.b"}, `up{bureau=~"a\\.b"}`, ""},
		{"bad PromQL with bureaus", `sum(`, []string{"a"}, "", "parse PromQL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := RestrictToBureaus(c.expr, c.bureaus)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestInterpolateAndStep(t *testing.T) {
	from := time.Unix(0, 0)
	cases := []struct {
		name      string
		rng, intv time.Duration
		maxPoints int64
		expr      string
		want      string
	}{
		{"interval and rate interval", time.Hour, 15 * time.Second, 1000, `rate(x[$__rate_interval]) + rate(x[${__interval}])`, `rate(x[60s]) + rate(x[15s])`},
		{"max points coarsen the step", 24 * time.Hour, 15 * time.Second, 100, `rate(x[$__rate_interval])`, `rate(x[3456s])`},
		{"range", 6 * time.Hour, time.Minute, 1000, `increase(x[$__range])`, `increase(x[21600s])`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			step := stepFor(from, from.Add(c.rng), c.intv, c.maxPoints)
			if got := interpolate(c.expr, step, c.rng); got != c.want {
				t.Fatalf("got %q, want %q (step %v)", got, c.want, step)
			}
		})
	}
}

func TestLegend(t *testing.T) {
	ls := map[string]string{"__name__": "up", "bureau": "health", "job": "app"}
	for format, want := range map[string]string{
		"":                       `up{bureau="health", job="app"}`,
		"{{bureau}}":             "health",
		"{{ bureau }} / {{job}}": "health / app",
		"{{missing}}x":           "x",
	} {
		if got := legend(format, ls); got != want {
			t.Errorf("legend(%q) = %q, want %q", format, got, want)
		}
	}
}

func TestExplain(t *testing.T) {
	cases := []struct {
		name string
		ev   autoscale.Event
		want []string
	}{
		{"no explanation", autoscale.Event{}, nil},
		{"forecast decided", autoscale.Event{Recommended: 4, Explanation: `{"signal":"s","observed_rate":5,"capacity_per_replica":1,"capacity_learned":false,"target_utilization":0.7,
			"forecast":{"model":"holt_winters","peak":5.3,"peak_upper":6,"bound":"upper","mape":0.08,"trusted":false},"forecast_replicas":9,"reactive_floor":8,"bounds":["max=4"],"term":"max"}`},
			[]string{"max decided 4 replicas", "forecast peak 5.3 req/s (holt_winters, MAPE 8%, untrusted, sized for upper bound 6) needs 9",
				"observed 5 req/s needs 8", "1 req/s per replica (default) at 70% utilization", "bounds max=4"}},
		{"no forecast, unknown rate", autoscale.Event{Recommended: 2, Explanation: `{"observed_rate":null,"capacity_per_replica":40,"capacity_learned":true,"target_utilization":0.7,"forecast_replicas":-1,"term":"hold","notes":["rate unknown: holding"]}`},
			[]string{"hold decided 2", "no forecast signal", "observed unknown req/s", "(learned)", "rate unknown: holding"}},
		{"ignored forecast", autoscale.Event{Explanation: `{"signal":"s","forecast":{"ignored":"MAPE 3 above 1"},"term":"reactive"}`},
			[]string{"forecast ignored: MAPE 3 above 1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Explain(c.ev)
			if c.want == nil && got != "" {
				t.Fatalf("got %q, want nothing", got)
			}
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("%q lacks %q", got, w)
				}
			}
		})
	}
}
