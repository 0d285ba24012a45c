// Package alertbench measures the hub's alerting: the latency from a
// surge in scraped data to the webhook notification (agent, hub, rules,
// alerting) beside Prometheus and Alertmanager fed by the same target,
// and the notifications per second the alerting module sustains with
// many active alerts, beside Alertmanager. See bench/alerting.sh and
// docs/benchmarks.md.
package alertbench

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"
)

// Config is one benchmark run's settings.
type Config struct {
	// OutDir receives alerting.md and alerting.json.
	OutDir string
	// WorkDir holds configs, data and logs; default a new temporary
	// directory. Removed at the end unless Keep or the run failed.
	WorkDir string
	Keep    bool
	// Command is what the report quotes as the command that ran.
	Command string
	// RenderFrom, if set, only rewrites OutDir/alerting.md from this
	// alerting.json of an earlier run.
	RenderFrom string
	// Short shrinks every phase for a quick check of the harness; its
	// numbers are not for the report.
	Short bool

	// HubBinary and AgentBinary are bureauhub's binaries; empty builds
	// ./cmd/hub and ./cmd/agent into WorkDir.
	HubBinary        string
	AgentBinary      string
	ClickHouseBinary string
	// PrometheusBinary and AlertmanagerBinary are the baseline; empty
	// skips it.
	PrometheusBinary   string
	AlertmanagerBinary string

	// Latency phase.
	SkipLatency bool
	// Interval is both the scrape and the rule evaluation interval.
	Interval time.Duration
	// Trials are measured; one more unmeasured warm-up trial runs first.
	Trials int
	// Targets is how many scrape targets the trials' gauges are spread
	// over: each target has its own scrape phase, so several sample
	// more alignments of scrape and evaluation.
	Targets int
	// A trial starts TrialGap plus a random part of TrialJitter after the
	// previous one.
	TrialGap    time.Duration
	TrialJitter time.Duration
	// TrialTimeout is how long after its start a trial's notification
	// may arrive before it counts as missing.
	TrialTimeout time.Duration
	Seed         uint64

	// Throughput phase.
	SkipThroughput  bool
	Tenants         int
	AlertsPerTenant int
	// GroupIntervals are the route's group_interval values tried; each
	// sets the offered rate (groups / group_interval).
	GroupIntervals []time.Duration
	GroupWait      time.Duration
	// Warmup runs after the first notification of every group arrived;
	// Window is measured.
	Warmup time.Duration
	Window time.Duration
}

// RegisterFlags registers the config's flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.OutDir, "out", "bench-out", "directory for alerting.md and alerting.json")
	fs.StringVar(&c.WorkDir, "work", "", "working directory for configs, data and logs (default: a new temporary directory)")
	fs.BoolVar(&c.Keep, "keep", false, "keep the working directory after the run")
	fs.StringVar(&c.Command, "command", "", "command line quoted in the report (default: this program's)")
	fs.StringVar(&c.RenderFrom, "render", "", "only rewrite OUT/alerting.md from this alerting.json of an earlier run")
	fs.BoolVar(&c.Short, "short", false, "quick check of the harness: 3 trials, 5 tenants x 40 alerts, one group_interval, short windows")
	fs.StringVar(&c.HubBinary, "hub-binary", "", "hub binary (default: build ./cmd/hub)")
	fs.StringVar(&c.AgentBinary, "agent-binary", "", "agent binary (default: build ./cmd/agent)")
	fs.StringVar(&c.ClickHouseBinary, "clickhouse-binary", "", "clickhouse-server binary (default: from PATH or /usr/sbin)")
	fs.StringVar(&c.PrometheusBinary, "prometheus-binary", "prometheus", "prometheus binary of the baseline; empty skips the baseline")
	fs.StringVar(&c.AlertmanagerBinary, "alertmanager-binary", "prometheus-alertmanager", "alertmanager binary of the baseline (Debian names it prometheus-alertmanager); empty skips the baseline")
	fs.BoolVar(&c.SkipLatency, "skip-latency", false, "skip the pipeline latency phase")
	fs.DurationVar(&c.Interval, "interval", 5*time.Second, "scrape and rule evaluation interval of the latency phase")
	fs.IntVar(&c.Trials, "trials", 30, "measured latency trials (after one warm-up trial)")
	fs.IntVar(&c.Targets, "targets", 4, "scrape targets the trials are spread over (each has its own scrape phase)")
	fs.DurationVar(&c.TrialGap, "trial-gap", 3*time.Second, "fixed part of the time between two trials' starts")
	fs.DurationVar(&c.TrialJitter, "trial-jitter", 0, "random part of the time between two trials' starts, uniform in [0, this) (default: -interval, so the start phase is uniform)")
	fs.DurationVar(&c.TrialTimeout, "trial-timeout", time.Minute, "how long a trial waits for its notifications")
	fs.Uint64Var(&c.Seed, "seed", 0, "seed of the trial schedule (0: from the clock)")
	fs.BoolVar(&c.SkipThroughput, "skip-throughput", false, "skip the notification throughput phase")
	fs.IntVar(&c.Tenants, "tenants", 50, "tenants posting alerts in the throughput phase")
	fs.IntVar(&c.AlertsPerTenant, "alerts-per-tenant", 200, "active alerts per tenant in the throughput phase (one group each)")
	fs.Func("group-intervals", "comma-separated group_interval values of the throughput phase (default 10s,1s)", func(s string) error {
		c.GroupIntervals = nil
		for _, f := range strings.Split(s, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(f))
			if err != nil {
				return err
			}
			c.GroupIntervals = append(c.GroupIntervals, d)
		}
		return nil
	})
	fs.DurationVar(&c.GroupWait, "group-wait", time.Second, "group_wait of the throughput phase's routes")
	fs.DurationVar(&c.Warmup, "warmup", 10*time.Second, "throughput: time after every group's first notification before the window")
	fs.DurationVar(&c.Window, "window", 30*time.Second, "throughput: measured window")
}

// ApplyDefaults fills what depends on other settings and applies -short.
func (c *Config) ApplyDefaults() {
	if c.GroupIntervals == nil {
		c.GroupIntervals = []time.Duration{10 * time.Second, time.Second}
	}
	if c.TrialJitter == 0 {
		c.TrialJitter = c.Interval
	}
	if c.Short {
		c.Trials = min(c.Trials, 3)
		c.Tenants = min(c.Tenants, 5)
		c.AlertsPerTenant = min(c.AlertsPerTenant, 40)
		c.GroupIntervals = c.GroupIntervals[len(c.GroupIntervals)-1:]
		c.Warmup = min(c.Warmup, 3*time.Second)
		c.Window = min(c.Window, 10*time.Second)
	}
}

// Validate reports the first invalid setting, by its flag name.
func (c *Config) Validate() error {
	switch {
	case c.OutDir == "":
		return errors.New("-out: required")
	case c.Interval < time.Second:
		return errors.New("-interval: must be at least 1s")
	case c.Trials < 1:
		return errors.New("-trials: must be at least 1")
	case c.Targets < 1:
		return errors.New("-targets: must be at least 1")
	case c.TrialGap < 0 || c.TrialJitter < 0:
		return errors.New("-trial-gap, -trial-jitter: must not be negative")
	case c.TrialTimeout < 2*c.Interval:
		return errors.New("-trial-timeout: must be at least twice -interval")
	case c.Tenants < 1 || c.Tenants > 999:
		return errors.New("-tenants: must be between 1 and 999")
	case c.AlertsPerTenant < 1:
		return errors.New("-alerts-per-tenant: must be at least 1")
	case len(c.GroupIntervals) == 0:
		return errors.New("-group-intervals: at least one")
	case c.GroupWait < 0:
		return errors.New("-group-wait: must not be negative")
	case c.Warmup < 0 || c.Window < time.Second:
		return errors.New("-warmup, -window: window at least 1s, warm-up not negative")
	}
	for _, d := range c.GroupIntervals {
		if d < 100*time.Millisecond {
			return fmt.Errorf("-group-intervals: %s is below 100ms", d)
		}
	}
	return nil
}
