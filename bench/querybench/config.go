// Package querybench measures the hub's PromQL query latency and rule
// evaluation time over a day of generated data, side by side with
// Prometheus and VictoriaMetrics holding the same samples on the same
// machine. See bench/query.sh and docs/benchmarks.md.
package querybench

import (
	"errors"
	"flag"
	"fmt"
	"regexp"
	"time"
)

// Config is one benchmark run's settings.
type Config struct {
	// OutDir receives query.md, query.json and profiles.
	OutDir string
	// WorkDir holds the stores' data, logs and configs; default
	// OutDir/query-work. Removed at the end unless Keep.
	WorkDir string
	Keep    bool
	// Reuse skips generating and loading when WorkDir already holds a
	// completed load of the same data (for iterating on queries; the rule
	// phase then evaluates at a time the data may no longer cover).
	Reuse bool
	// Command is what the report quotes as the command that ran.
	Command string
	// RenderFrom, if set, only rewrites OutDir/query.md from this
	// query.json of an earlier run.
	RenderFrom string

	// HubBinary is the hub to run; empty builds ./cmd/hub into WorkDir.
	HubBinary        string
	ClickHouseBinary string
	// PrometheusBinary, PromtoolBinary and VMBinary name the peers; empty
	// skips the peer.
	PrometheusBinary string
	PromtoolBinary   string
	VMBinary         string
	// RulesDir holds the shipped rule files; default the module's rules/.
	RulesDir string
	// HubConfigExtra is YAML appended to both hub configs, to try hub
	// settings (for example "ingest: {flush_interval: 20ms}").
	HubConfigExtra string

	// Series, Span and Interval shape the data: Series series, one sample
	// every Interval over Span, the newest Ahead past the start of the run.
	Series   int
	Span     time.Duration
	Interval time.Duration
	Ahead    time.Duration
	Seed     uint64

	// Reps is how often each query runs per system (after one unmeasured
	// warm-up run that also provides the results compared).
	Reps int
	// Step is the resolution of the full-span queries; ShortWindow and
	// ShortStep define the short-window variants (0 window: none).
	Step        time.Duration
	ShortWindow time.Duration
	ShortStep   time.Duration
	// Tolerance is the relative difference allowed between the hub's and
	// Prometheus' values.
	Tolerance float64
	// RequestTimeout bounds one query request.
	RequestTimeout time.Duration

	// RulesWindow is how long each system evaluates the rule files; 0
	// skips the rule phase.
	RulesWindow        time.Duration
	EvaluationInterval time.Duration

	// ProfileReps runs each query that many times in process
	// against the same ClickHouse under a CPU profile; 0 skips it.
	ProfileReps int
	// ProfileQueries, if set, profiles only the queries whose names it
	// matches (a regular expression).
	ProfileQueries string
	// Compact compacts every loaded day into chunks, as the hub does with
	// days older than ingest.max_age.
	Compact bool
}

// RegisterFlags registers the config's flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.OutDir, "out", "bench-out", "directory for query.md, query.json and the profile")
	fs.StringVar(&c.WorkDir, "work", "", "working directory for data and logs (default OUT/query-work)")
	fs.BoolVar(&c.Keep, "keep", false, "keep the working directory (data, logs) after the run")
	fs.BoolVar(&c.Reuse, "reuse", false, "reuse the data loaded by a previous -keep run with the same data flags")
	fs.StringVar(&c.Command, "command", "", "command line quoted in the report (default: this program's)")
	fs.StringVar(&c.RenderFrom, "render", "", "only rewrite OUT/query.md from this query.json of an earlier run")
	fs.StringVar(&c.HubBinary, "hub-binary", "", "hub binary (default: build ./cmd/hub)")
	fs.StringVar(&c.ClickHouseBinary, "clickhouse-binary", "", "clickhouse-server binary (default: from PATH or /usr/sbin)")
	fs.StringVar(&c.PrometheusBinary, "prometheus-binary", "prometheus", "prometheus binary; empty skips Prometheus")
	fs.StringVar(&c.PromtoolBinary, "promtool-binary", "promtool", "promtool binary, to write Prometheus' blocks")
	fs.StringVar(&c.VMBinary, "vm-binary", "victoria-metrics", "victoria-metrics binary; empty skips VictoriaMetrics")
	fs.StringVar(&c.RulesDir, "rules-dir", "", "directory of the shipped rule files (default: the module's rules/)")
	fs.StringVar(&c.HubConfigExtra, "hub-config-extra", "", "YAML appended to the hub's config, e.g. 'ingest: {flush_interval: 20ms}' (not rules, clickhouse or tenants)")
	fs.IntVar(&c.Series, "series", 10_000, "number of series")
	fs.DurationVar(&c.Span, "span", 24*time.Hour, "time covered by the data")
	fs.DurationVar(&c.Interval, "interval", 15*time.Second, "interval between a series' samples")
	fs.DurationVar(&c.Ahead, "ahead", 15*time.Minute, "how far past the start of the run the data ends, so that rules evaluated later still find current samples")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the generated values")
	fs.IntVar(&c.Reps, "reps", 10, "measured runs of each query per system")
	fs.DurationVar(&c.Step, "step", 90*time.Second, "step of the full-span range queries (what Grafana picks for a 1000 px panel over 24h)")
	fs.DurationVar(&c.ShortWindow, "short-window", time.Hour, "window of the short range queries; 0 runs none")
	fs.DurationVar(&c.ShortStep, "short-step", 15*time.Second, "step of the short range queries")
	fs.Float64Var(&c.Tolerance, "tolerance", 1e-6, "relative difference allowed between the hub's and Prometheus' values")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", 5*time.Minute, "timeout of one query request")
	fs.DurationVar(&c.RulesWindow, "rules-window", 80*time.Second, "how long each system evaluates the shipped rules; 0 skips the rule phase")
	fs.DurationVar(&c.EvaluationInterval, "evaluation-interval", 15*time.Second, "rule evaluation interval")
	fs.BoolVar(&c.Compact, "compact", true, "compact every loaded day into chunks (as the hub's compaction does once a day is older than ingest.max_age); false keeps the samples raw")
	fs.IntVar(&c.ProfileReps, "profile-reps", 3, "in-process runs of each query against ClickHouse under a CPU profile; 0 skips profiling")
	fs.StringVar(&c.ProfileQueries, "profile-queries", "", "profile only the queries whose names match this regular expression (default all)")
}

// Validate reports the first invalid setting, by its flag name.
func (c *Config) Validate() error {
	switch {
	case c.OutDir == "":
		return errors.New("-out: required")
	case c.Series < 500:
		return fmt.Errorf("-series: %d is below 500, too few for every metric family", c.Series)
	case c.Interval < time.Second || c.Interval%time.Second != 0:
		return errors.New("-interval: must be a whole number of seconds, at least 1s")
	case c.Span < time.Hour || c.Span%c.Interval != 0:
		return errors.New("-span: must be at least 1h and a multiple of -interval")
	case c.Ahead < 0:
		return errors.New("-ahead: must not be negative")
	case c.Reps < 1:
		return errors.New("-reps: must be at least 1")
	case c.Step < time.Second:
		return errors.New("-step: must be at least 1s")
	case c.ShortWindow < 0 || c.ShortWindow > c.Span:
		return errors.New("-short-window: must be between 0 and -span")
	case c.ShortWindow > 0 && c.ShortStep < time.Second:
		return errors.New("-short-step: must be at least 1s")
	case c.Tolerance <= 0:
		return errors.New("-tolerance: must be positive")
	case c.RequestTimeout <= 0:
		return errors.New("-request-timeout: must be positive")
	case c.RulesWindow < 0:
		return errors.New("-rules-window: must not be negative")
	case c.EvaluationInterval < time.Second:
		return errors.New("-evaluation-interval: must be at least 1s")
	case c.ProfileQueries != "" && !validRegexp(c.ProfileQueries):
		return fmt.Errorf("-profile-queries: %q is not a valid regular expression", c.ProfileQueries)
	case c.ProfileReps < 0:
		return errors.New("-profile-reps: must not be negative")
	}
	return nil
}

func validRegexp(s string) bool {
	_, err := regexp.Compile(s)
	return err == nil
}
