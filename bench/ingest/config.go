package ingest

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// HubSetting is one ingest configuration of the hub to measure.
type HubSetting struct {
	FlushSamples int `json:"flush_samples"`
	Writers      int `json:"writers"`
}

func (h HubSetting) String() string { return fmt.Sprintf("%dx%d", h.FlushSamples, h.Writers) }

// ParseHubSettings parses "FLUSH_SAMPLESxWRITERS,..." such as
// "500000x2,1000000x4".
func ParseHubSettings(s string) ([]HubSetting, error) {
	var out []HubSetting
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		a, b, ok := strings.Cut(f, "x")
		flush, err1 := strconv.Atoi(a)
		writers, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || flush < 1 || writers < 1 {
			return nil, fmt.Errorf("%q is not FLUSH_SAMPLESxWRITERS", f)
		}
		out = append(out, HubSetting{FlushSamples: flush, Writers: writers})
	}
	return out, nil
}

// Config is the benchmark's configuration.
type Config struct {
	// Series is the number of node_exporter-like series; every one gets a
	// sample per scrape round.
	Series    int
	BatchSize int
	// Streams and Inflight shape the federation load: one agent stream
	// each, with up to Inflight batches awaiting their Ack.
	Streams  int
	Inflight int
	// Senders is the number of remote_write shards for the peers, each with
	// one request in flight, as Prometheus sends.
	Senders int
	// MaxSkew bounds how many scrape rounds a partition may run ahead of
	// the slowest one.
	MaxSkew int

	Warmup   time.Duration
	Duration time.Duration
	// Sweep lists hub settings to compare in shorter runs before the main
	// run, which uses the fastest; empty measures Hub only.
	Sweep         []HubSetting
	SweepWarmup   time.Duration
	SweepDuration time.Duration
	Hub           HubSetting
	// HubFlushInterval is the hub's ingest.flush_interval in every run.
	HubFlushInterval time.Duration
	// Drain bounds the wait for outstanding acks once the load stops.
	Drain time.Duration

	HubBinary        string // empty: go build ./cmd/hub into the work dir
	ClickHouseBinary string // empty: chserver's default lookup
	VMBinary         string // empty or not found: skip VictoriaMetrics
	PromBinary       string // empty or not found: skip Prometheus
	// PeerTLS serves the peers over TLS with the same certificate as the
	// hub, so every target pays for encryption.
	PeerTLS bool
	// ZSTD also measures ClickHouse's bytes per sample with ZSTD.
	ZSTD bool
	// PerfHub records the hub with perf(1) during the main run's window.
	PerfHub bool
	// Recent starts the data 30 minutes ago instead of yesterday and lets
	// the hub take samples up to a day ahead, so that every sample lands in
	// the hub's head (query.head) as live data does.
	Recent bool
	// HubHead keeps the hub's head; false sets query.head.disabled.
	HubHead bool

	WorkDir string // empty: a temporary directory, removed at the end
	Keep    bool   // keep WorkDir's data
	OutDir  string // ingest.json and ingest.md go here
	// Only lists targets to run ("bureauhub", "victoria-metrics",
	// "prometheus"); empty runs all.
	Only []string
}

// RegisterFlags binds c's fields to flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.Series, "series", 100_000, "node_exporter-like series; each gets one sample per 15 s scrape round")
	fs.IntVar(&c.BatchSize, "batch-size", 10_000, "samples per batch (federation Batch or remote_write request)")
	fs.IntVar(&c.Streams, "streams", 4, "concurrent federation streams to the hub, one agent_id each")
	fs.IntVar(&c.Inflight, "inflight", 32, "batches in flight per federation stream (the hub allows 64)")
	fs.IntVar(&c.Senders, "senders", 8, "concurrent remote_write senders to the peers, one request in flight each")
	fs.IntVar(&c.MaxSkew, "max-skew", 4, "scrape rounds a sender may run ahead of the slowest")
	fs.DurationVar(&c.Warmup, "warmup", 10*time.Second, "load before the measurement window")
	fs.DurationVar(&c.Duration, "duration", 60*time.Second, "measurement window of each main run")
	fs.Func("sweep", "hub settings FLUSH_SAMPLESxWRITERS,... to compare in short runs before the main run, which takes the fastest (default 500000x2,1000000x2,1000000x4; \"\" to skip)", func(s string) error {
		h, err := ParseHubSettings(s)
		c.Sweep = h
		return err
	})
	c.Sweep = []HubSetting{{500_000, 2}, {1_000_000, 2}, {1_000_000, 4}}
	fs.DurationVar(&c.SweepWarmup, "sweep-warmup", 5*time.Second, "warm-up of each sweep run")
	fs.DurationVar(&c.SweepDuration, "sweep-duration", 20*time.Second, "measurement window of each sweep run")
	fs.IntVar(&c.Hub.FlushSamples, "hub-flush-samples", 500_000, "hub ingest.flush_samples when there is no sweep")
	fs.IntVar(&c.Hub.Writers, "hub-writers", 2, "hub ingest.writers when there is no sweep")
	fs.DurationVar(&c.HubFlushInterval, "hub-flush-interval", time.Second, "hub ingest.flush_interval: how long samples may wait for a fuller insert")
	fs.DurationVar(&c.Drain, "drain", 60*time.Second, "wait for outstanding acks after the load stops")
	fs.StringVar(&c.HubBinary, "hub-binary", "", "hub binary (default: go build ./cmd/hub)")
	fs.StringVar(&c.ClickHouseBinary, "clickhouse-binary", "", "clickhouse-server binary (default: PATH or /usr/sbin)")
	fs.StringVar(&c.VMBinary, "vm-binary", "victoria-metrics", "VictoriaMetrics single-node binary; empty skips it")
	fs.StringVar(&c.PromBinary, "prometheus-binary", "prometheus", "Prometheus binary; empty skips it")
	fs.BoolVar(&c.PeerTLS, "peer-tls", true, "serve the peers over TLS too")
	fs.BoolVar(&c.ZSTD, "zstd", true, "also measure ClickHouse bytes per sample with ZSTD compression")
	fs.BoolVar(&c.Recent, "recent", true, "start the data 30 minutes ago and let the hub take samples up to a day ahead (ingest.max_future: 24h), so that every sample lands in the hub's head (query.head) as live data does; false starts it yesterday, older than the head's window, which the head skips")
	fs.BoolVar(&c.HubHead, "hub-head", true, "keep the hub's in-memory head of recent samples (query.head); false disables it")
	fs.BoolVar(&c.PerfHub, "perf-hub", false, "record the hub with perf during the main run's window (writes hub.perf.data and hub.perf.txt)")
	fs.StringVar(&c.WorkDir, "workdir", "", "directory for the servers' data (default: a temporary directory)")
	fs.BoolVar(&c.Keep, "keep", false, "keep the servers' data")
	fs.StringVar(&c.OutDir, "out", "bench-out", "directory for ingest.json and ingest.md")
	fs.Func("only", "comma-separated targets to run: bureauhub, victoria-metrics, prometheus (default all)", func(s string) error {
		c.Only = nil
		for _, t := range strings.Split(s, ",") {
			switch t = strings.TrimSpace(t); t {
			case "":
			case targetHub, targetVM, targetProm:
				c.Only = append(c.Only, t)
			default:
				return fmt.Errorf("unknown target %q", t)
			}
		}
		return nil
	})
}

// Validate reports the first invalid setting, by flag name.
func (c *Config) Validate() error {
	switch {
	case c.Series < 1:
		return errors.New("-series: must be positive")
	case c.BatchSize < 1:
		return errors.New("-batch-size: must be positive")
	case c.Streams < 1 || c.Streams > c.Series:
		return errors.New("-streams: must be between 1 and -series")
	case c.Inflight < 1 || c.Inflight > 64:
		return errors.New("-inflight: must be between 1 and 64 (the hub's limit per stream)")
	case c.Senders < 1 || c.Senders > c.Series:
		return errors.New("-senders: must be between 1 and -series")
	case c.MaxSkew < 1:
		return errors.New("-max-skew: must be at least 1")
	case c.Warmup < 0 || c.SweepWarmup < 0:
		return errors.New("-warmup: must not be negative")
	case c.Duration < time.Second || (len(c.Sweep) > 0 && c.SweepDuration < time.Second):
		return errors.New("-duration: must be at least 1s")
	case c.Hub.FlushSamples < 1 || c.Hub.Writers < 1:
		return errors.New("-hub-flush-samples: must be positive, and so must -hub-writers")
	case c.OutDir == "":
		return errors.New("-out: required")
	}
	return nil
}

func (c *Config) runs(target string) bool {
	if len(c.Only) == 0 {
		return true
	}
	for _, t := range c.Only {
		if t == target {
			return true
		}
	}
	return false
}
