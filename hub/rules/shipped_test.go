package rules

import (
	"cmp"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	promrules "github.com/prometheus/prometheus/rules"
)

// shippedFiles are the product's rule files in the repository's rules/.
func shippedFiles(tb testing.TB) []string {
	files, err := filepath.Glob("../../rules/*.yml")
	if err != nil || len(files) == 0 {
		tb.Fatalf("no rule files in rules/ (%v)", err)
	}
	return files
}

// TestShippedRuleFilesAreValid checks every file in rules/ as `promtool
// check rules` does (parse, valid expressions, unique group names, valid
// record names), plus our own conventions: alerts carry summary,
// description and a runbook_url whose anchor is documented.
func TestShippedRuleFilesAreValid(t *testing.T) {
	runbooks, err := os.ReadFile("../../docs/runbooks.md")
	if err != nil {
		t.Fatal(err)
	}
	recordRE := regexp.MustCompile(`^[a-zA-Z_]+:[a-zA-Z0-9_]+:[a-zA-Z0-9_]+$`)
	for _, f := range shippedFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			groups, errs := rulefmt.ParseFile(f, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
			if len(errs) > 0 {
				t.Fatalf("%v", errs)
			}
			for _, g := range groups.Groups {
				for _, r := range g.Rules {
					if r.Record != "" {
						if !recordRE.MatchString(r.Record) {
							t.Errorf("record %q does not follow level:metric:operations", r.Record)
						}
						continue
					}
					for _, a := range []string{"summary", "description", "runbook_url"} {
						if r.Annotations[a] == "" {
							t.Errorf("alert %s has no %s annotation", r.Alert, a)
						}
					}
					anchor := r.Annotations["runbook_url"][strings.LastIndex(r.Annotations["runbook_url"], "#")+1:]
					if !strings.Contains(string(runbooks), "<a id=\""+anchor+"\"></a>") {
						t.Errorf("alert %s: runbook anchor %q is not in docs/runbooks.md", r.Alert, anchor)
					}
					if r.Labels["severity"] == "" {
						t.Errorf("alert %s has no severity label", r.Alert)
					}
				}
			}
		})
	}
}

// alertCase drives one alerting rule: series in promqltest's load notation
// (1m steps from time 0), and times at which it must and must not fire.
type alertCase struct {
	alert     string
	load      string
	firing    []time.Duration
	notFiring []time.Duration
}

var alertCases = []alertCase{
	{
		alert: "AgentDown",
		// vm-1 reports for 10 minutes, is silent for 10, then comes back;
		// vm-2 keeps reporting.
		load: `load 1m
  node_time_seconds{job="node",bureau="b1",cloud="c",cluster="k",instance="vm-1"} 0+60x10 _x10 1260+60x10
  node_time_seconds{job="node",bureau="b1",cloud="c",cluster="k",instance="vm-2"} 0+60x30`,
		firing:    []time.Duration{17 * time.Minute, 20 * time.Minute},
		notFiring: []time.Duration{10 * time.Minute, 15 * time.Minute, 22 * time.Minute},
	},
	{
		alert: "BookingSuccessBelowObjective",
		// 99% success for 10m, 50% for 20m, then 100%.
		load: `load 1m
  booking_successes_total{bureau="consular",replica="booking-1"} 0+99x10 990+50x20 1990+100x20
  booking_attempts_total{bureau="consular",replica="booking-1"} 0+100x10 1000+100x20 3000+100x20`,
		firing:    []time.Duration{22 * time.Minute, 29 * time.Minute},
		notFiring: []time.Duration{10 * time.Minute, 14 * time.Minute, 45 * time.Minute},
	},
	{
		alert: "ScanLatencyAboveObjective",
		// All scans under 100 ms for 10m; then most take 0.5-1 s for 20m.
		load: `load 1m
  healthcode_scan_duration_seconds_bucket{bureau="health",le="0.1"}  0+100x10 1000+10x20  1200+100x20
  healthcode_scan_duration_seconds_bucket{bureau="health",le="0.5"}  0+100x10 1000+10x20  1200+100x20
  healthcode_scan_duration_seconds_bucket{bureau="health",le="1"}    0+100x10 1000+100x20 3000+100x20
  healthcode_scan_duration_seconds_bucket{bureau="health",le="+Inf"} 0+100x10 1000+100x20 3000+100x20`,
		firing:    []time.Duration{22 * time.Minute, 29 * time.Minute},
		notFiring: []time.Duration{10 * time.Minute, 14 * time.Minute, 45 * time.Minute},
	},
	{
		alert: "HubIngestRejections",
		load: `load 1m
  bureauhub_ingest_rejected_samples_total{tenant="health",reason="series_limit",instance="hub-1"} 0x5 0+10x20 200x30`,
		firing:    []time.Duration{20 * time.Minute},
		notFiring: []time.Duration{5 * time.Minute, 12 * time.Minute, 40 * time.Minute},
	},
	{
		alert: "ClickHouseWriteErrors",
		load: `load 1m
  bureauhub_clickhouse_write_errors_total{instance="hub-1",table="samples"} 0x5 0+3x20 60x30`,
		firing:    []time.Duration{15 * time.Minute, 24 * time.Minute},
		notFiring: []time.Duration{5 * time.Minute, 8 * time.Minute, 40 * time.Minute},
	},
}

// TestShippedAlertsFireAndResolve evaluates the shipped rule groups (recording
// rules first, as the hub does) every 15 s over each case's series with
// Prometheus's own rule manager, and checks when each alert fires.
func TestShippedAlertsFireAndResolve(t *testing.T) {
	var all []string
	for _, f := range shippedFiles(t) {
		groups, _ := rulefmt.ParseFile(f, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				if r.Alert != "" {
					all = append(all, r.Alert)
				}
			}
		}
	}
	var tested []string
	for _, c := range alertCases {
		tested = append(tested, c.alert)
	}
	slices.Sort(all)
	slices.Sort(tested)
	if !slices.Equal(all, tested) {
		t.Errorf("alerting rules %v, but test cases for %v: every alert needs a case", all, tested)
	}
	for _, c := range alertCases {
		t.Run(c.alert, func(t *testing.T) {
			st := promqltest.LoadedStorage(t, c.load)
			engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
			mgr := promrules.NewManager(&promrules.ManagerOptions{
				QueryFunc:  promrules.EngineQueryFunc(engine, st),
				Appendable: st,
				Queryable:  st,
				Context:    context.Background(),
				Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
				NotifyFunc: func(context.Context, string, ...*promrules.Alert) {},
			})
			groups, errs := mgr.LoadGroups(15*time.Second, labels.EmptyLabels(), "", nil, false, shippedFiles(t)...)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			// Recording rules before alerts, as in evaluation order.
			keys := make([]string, 0, len(groups))
			for k := range groups {
				keys = append(keys, k)
			}
			recordingFirst := func(k string) int {
				if strings.Contains(k, "slis") {
					return 0
				}
				return 1
			}
			slices.SortFunc(keys, func(a, b string) int {
				return cmp.Or(cmp.Compare(recordingFirst(a), recordingFirst(b)), strings.Compare(a, b))
			})
			firingAt := map[time.Duration]bool{}
			var end time.Duration
			for _, d := range append(append([]time.Duration{}, c.firing...), c.notFiring...) {
				end = max(end, d)
			}
			for ts := time.Duration(0); ts <= end; ts += 15 * time.Second {
				firing := false
				for _, k := range keys {
					g := groups[k]
					g.Eval(context.Background(), time.Unix(0, 0).Add(ts))
					for _, r := range g.AlertingRules() {
						if r.Name() != c.alert {
							continue
						}
						for _, a := range r.ActiveAlerts() {
							if a.State == promrules.StateFiring {
								firing = true
							}
						}
					}
				}
				firingAt[ts] = firing
			}
			for _, d := range c.firing {
				if !firingAt[d] {
					t.Errorf("%s is not firing at %s", c.alert, d)
				}
			}
			for _, d := range c.notFiring {
				if firingAt[d] {
					t.Errorf("%s is firing at %s, it should not", c.alert, d)
				}
			}
		})
	}
}
