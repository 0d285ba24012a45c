// Package clusterbench measures what running hubs as a cluster costs and
// how fast it fails over: ingest throughput and rule-evaluation latency of
// one hub alone beside the same hub in a three-hub cluster, and the time
// from a SIGKILL of a rule group's owner to the first evaluation of that
// group by its new owner. See bench/cluster.sh and docs/benchmarks.md.
package clusterbench

import (
	"errors"
	"flag"
	"time"
)

// Config is one benchmark run's settings.
type Config struct {
	// OutDir receives cluster.md and cluster.json.
	OutDir string
	// WorkDir holds configs, data and logs; default a new temporary
	// directory, removed at the end unless Keep or the run failed.
	WorkDir string
	Keep    bool
	// Command is what the report quotes as the command that ran.
	Command string
	// RenderFrom, if set, only rewrites OutDir/cluster.md from this
	// cluster.json of an earlier run.
	RenderFrom string
	// Short shrinks every phase for a quick check of the harness; its
	// numbers are not for the report.
	Short bool

	// HubBinary is the hub; empty builds ./cmd/hub into WorkDir.
	HubBinary        string
	ClickHouseBinary string

	// Cost phase: Rounds pairs of runs (alone, cluster), the order
	// alternating from one round to the next.
	SkipCost bool
	Rounds   int
	// Series, Streams, Inflight and BatchSize shape the ingest load sent
	// to the measured hub as fast as it acknowledges, as ingestbench's.
	Series    int
	Streams   int
	Inflight  int
	BatchSize int
	Warmup    time.Duration
	Window    time.Duration
	// RuleInterval is the shipped rules' evaluation interval in the cost
	// phase, RuleWindow how long their evaluations are watched.
	RuleInterval time.Duration
	RuleWindow   time.Duration

	// Bureaus are the bureau tenants the shipped rules are evaluated
	// for; each gets LiveSeries node_exporter-like series, the last
	// LiveHistory of them stored before the first phase and then kept
	// current (one scrape round every 15 s) for the whole run.
	Bureaus     int
	LiveSeries  int
	LiveHistory time.Duration

	// Failover phase.
	SkipFailover bool
	Trials       int
	// Interval is the evaluation interval of every group in the failover
	// phase.
	Interval time.Duration
	// TrialTimeout bounds the wait for the new owner's first evaluation.
	TrialTimeout time.Duration
	Seed         uint64
}

// RegisterFlags registers the config's flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.OutDir, "out", "bench-out", "directory for cluster.md and cluster.json")
	fs.StringVar(&c.WorkDir, "work", "", "working directory for configs, data and logs (default: a new temporary directory)")
	fs.BoolVar(&c.Keep, "keep", false, "keep the working directory after the run")
	fs.StringVar(&c.Command, "command", "", "command line quoted in the report (default: this program's)")
	fs.StringVar(&c.RenderFrom, "render", "", "only rewrite OUT/cluster.md from this cluster.json of an earlier run")
	fs.BoolVar(&c.Short, "short", false, "quick check of the harness: one round with short windows, 3 failover trials")
	fs.StringVar(&c.HubBinary, "hub-binary", "", "hub binary (default: build ./cmd/hub)")
	fs.StringVar(&c.ClickHouseBinary, "clickhouse-binary", "", "clickhouse-server binary (default: from PATH or /usr/sbin)")

	fs.BoolVar(&c.SkipCost, "skip-cost", false, "skip the cost phase (alone vs cluster)")
	fs.IntVar(&c.Rounds, "rounds", 2, "cost phase: pairs of runs (alone, cluster), the order alternating")
	fs.IntVar(&c.Series, "series", 100_000, "cost phase: node_exporter-like series of the ingest load")
	fs.IntVar(&c.Streams, "streams", 4, "cost phase: federation streams to the measured hub, one agent_id each")
	fs.IntVar(&c.Inflight, "inflight", 32, "cost phase: batches in flight per stream")
	fs.IntVar(&c.BatchSize, "batch-size", 10_000, "cost phase: samples per batch")
	fs.DurationVar(&c.Warmup, "warmup", 5*time.Second, "cost phase: ingest load before the measurement window")
	fs.DurationVar(&c.Window, "window", 20*time.Second, "cost phase: ingest measurement window")
	fs.DurationVar(&c.RuleInterval, "rule-interval", 5*time.Second, "cost phase: evaluation interval of the shipped rules")
	fs.DurationVar(&c.RuleWindow, "rule-window", 20*time.Second, "cost phase: how long rule evaluations are watched")

	fs.IntVar(&c.Bureaus, "bureaus", 3, "bureau tenants the rules are evaluated for")
	fs.IntVar(&c.LiveSeries, "live-series", 4000, "series per bureau kept current for the rules")
	fs.DurationVar(&c.LiveHistory, "live-history", time.Hour, "history of the bureaus' series stored before the first phase")

	fs.BoolVar(&c.SkipFailover, "skip-failover", false, "skip the failover phase")
	fs.IntVar(&c.Trials, "trials", 20, "failover trials (SIGKILL of the owner, restart)")
	fs.DurationVar(&c.Interval, "interval", 15*time.Second, "failover phase: evaluation interval of every rule group")
	fs.DurationVar(&c.TrialTimeout, "trial-timeout", 90*time.Second, "failover phase: wait for the new owner's first evaluation")
	fs.Uint64Var(&c.Seed, "seed", 0, "seed of the kill phases within their strata (0: from the clock)")
}

// ApplyDefaults applies -short.
func (c *Config) ApplyDefaults() {
	if c.Short {
		c.Rounds = min(c.Rounds, 1)
		c.Series = min(c.Series, 20_000)
		c.Warmup = min(c.Warmup, 3*time.Second)
		c.Window = min(c.Window, 8*time.Second)
		c.RuleWindow = min(c.RuleWindow, 12*time.Second)
		c.LiveSeries = min(c.LiveSeries, 1000)
		c.LiveHistory = min(c.LiveHistory, 10*time.Minute)
		c.Trials = min(c.Trials, 3)
	}
}

// Validate reports the first invalid setting, by its flag name.
func (c *Config) Validate() error {
	switch {
	case c.OutDir == "":
		return errors.New("-out: required")
	case c.Rounds < 1:
		return errors.New("-rounds: must be at least 1")
	case c.Series < 1 || c.Streams < 1 || c.Streams > c.Series:
		return errors.New("-series, -streams: at least one series per stream")
	case c.Inflight < 1 || c.Inflight > 64:
		return errors.New("-inflight: must be between 1 and 64 (the hub's limit per stream)")
	case c.BatchSize < 1:
		return errors.New("-batch-size: must be positive")
	case c.Warmup < 0 || c.Window < time.Second:
		return errors.New("-warmup, -window: window at least 1s, warm-up not negative")
	case c.RuleInterval < time.Second || c.RuleWindow < 2*c.RuleInterval:
		return errors.New("-rule-interval, -rule-window: interval at least 1s, window at least two intervals")
	case c.Bureaus < 1 || c.Bureaus > 26:
		return errors.New("-bureaus: between 1 and 26")
	case c.LiveSeries < 1 || c.LiveSeries > 50_000:
		return errors.New("-live-series: between 1 and 50000")
	case c.LiveHistory < 0:
		return errors.New("-live-history: must not be negative")
	case c.Trials < 1:
		return errors.New("-trials: must be at least 1")
	case c.Interval < time.Second:
		return errors.New("-interval: must be at least 1s")
	case c.TrialTimeout < 2*c.Interval:
		return errors.New("-trial-timeout: must be at least twice -interval")
	}
	return nil
}
