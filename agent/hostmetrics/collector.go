package hostmetrics

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"
	"github.com/prometheus/procfs/blockdevice"
	"golang.org/x/sys/unix"
)

// Regexps node_exporter applies by default and that Config does not expose.
const (
	// diskDevicesExclude drops RAM, loop and floppy devices and partitions,
	// whose I/O is already counted on the whole disk.
	diskDevicesExclude = `^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$`
	// mountPointsExclude drops kernel pseudo mounts and container runtimes'
	// per-container mounts.
	mountPointsExclude = `^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)`
)

// defaultStatfsTimeout bounds one statfs(2) call; a hung NFS server must not
// hang the scrape.
const defaultStatfsTimeout = 5 * time.Second

// Collector gathers the host's metrics on each Collect, reading procfs,
// sysfs and statfs(2) afresh. It implements prometheus.Collector and is safe
// for concurrent use.
type Collector struct {
	logger *slog.Logger
	subs   []subCollector
	descs  []*prometheus.Desc
	fs     *filesystemCollector

	durationDesc, successDesc *prometheus.Desc

	mu      sync.Mutex
	failing map[string]bool // sub-collector names whose last update failed
}

var _ prometheus.Collector = (*Collector)(nil)

// subCollector is one of node_exporter's collectors: a name for the
// node_scrape_collector_* metrics and a function sending its metrics.
type subCollector struct {
	name   string
	update func(ch chan<- prometheus.Metric) error
}

// descSet builds descriptors and remembers them for Describe.
type descSet []*prometheus.Desc

// add returns the descriptor of the metric node_<name>.
func (s *descSet) add(name, help string, labels ...string) *prometheus.Desc {
	d := prometheus.NewDesc("node_"+name, help, labels, nil)
	*s = append(*s, d)
	return d
}

// New returns a Collector for the host described by cfg, with defaults
// applied to the fields cfg leaves empty. It opens the procfs and sysfs
// handles but reads no metrics; a nil logger discards logs.
func New(cfg Config, logger *slog.Logger) (*Collector, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	proc, err := procfs.NewFS(cfg.ProcPath)
	if err != nil {
		return nil, fmt.Errorf("open procfs %q: %w", cfg.ProcPath, err)
	}
	block, err := blockdevice.NewFS(cfg.ProcPath, cfg.SysPath)
	if err != nil {
		return nil, fmt.Errorf("open procfs %q and sysfs %q: %w", cfg.ProcPath, cfg.SysPath, err)
	}

	var ds descSet
	fs := &filesystemCollector{
		proc:               proc,
		rootfs:             filepath.Clean(cfg.RootfsPath),
		typesExclude:       make(map[string]bool, len(cfg.FilesystemTypesExclude)),
		mountPointsExclude: regexp.MustCompile(mountPointsExclude),
		statfs:             unix.Statfs,
		timeout:            defaultStatfsTimeout,
		stuck:              make(map[string]bool),
		logger:             logger,
	}
	for _, t := range cfg.FilesystemTypesExclude {
		fs.typesExclude[t] = true
	}
	fs.describe(&ds)
	netExclude := regexp.MustCompile(cfg.NetworkDevicesExclude) // checked by Validate

	c := &Collector{
		logger: logger,
		fs:     fs,
		subs: []subCollector{
			{"cpu", newCPUCollector(proc, &ds)},
			{"stat", newStatCollector(proc, &ds)},
			{"loadavg", newLoadavgCollector(proc, &ds)},
			{"meminfo", newMeminfoCollector(proc, &ds)},
			{"diskstats", newDiskstatsCollector(block, regexp.MustCompile(diskDevicesExclude), &ds)},
			{"filesystem", fs.update},
			{"netdev", newNetdevCollector(proc, netExclude, &ds)},
			{"uname", newUnameCollector(&ds)},
			{"time", newTimeCollector(&ds)},
		},
		durationDesc: ds.add("scrape_collector_duration_seconds",
			"node_exporter: Duration of a collector scrape.", "collector"),
		successDesc: ds.add("scrape_collector_success",
			"node_exporter: Whether a collector succeeded.", "collector"),
		failing: make(map[string]bool),
	}
	c.descs = ds
	return c, nil
}

// Describe sends the descriptors of every metric the Collector can emit.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect runs every sub-collector in turn. A failing sub-collector reports
// node_scrape_collector_success 0 and does not stop the others.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.subs {
		start := time.Now()
		err := s.update(ch)
		elapsed := time.Since(start).Seconds()
		success := 1.0
		if err != nil {
			success = 0
		}
		c.noteResult(s.name, err)
		ch <- prometheus.MustNewConstMetric(c.durationDesc, prometheus.GaugeValue, elapsed, s.name)
		ch <- prometheus.MustNewConstMetric(c.successDesc, prometheus.GaugeValue, success, s.name)
	}
}

// noteResult logs a sub-collector's failure at warn level when it starts
// failing and at debug level while it keeps failing, so a missing file does
// not fill the log at every scrape.
func (c *Collector) noteResult(name string, err error) {
	c.mu.Lock()
	wasFailing := c.failing[name]
	c.failing[name] = err != nil
	c.mu.Unlock()
	switch {
	case err != nil && !wasFailing:
		c.logger.Warn("host metrics collector failed", "collector", name, "err", err)
	case err != nil:
		c.logger.Debug("host metrics collector still failing", "collector", name, "err", err)
	case wasFailing:
		c.logger.Info("host metrics collector recovered", "collector", name)
	}
}
