package ingest

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// ScrapeIntervalMillis is the logical time between two samples of a series.
const ScrapeIntervalMillis = 15_000

// valueKind says how a series' value moves from one scrape to the next.
type valueKind uint8

const (
	// kindConst never changes (node_memory_MemTotal_bytes, mtu, limits).
	kindConst valueKind = iota
	// kindCounter grows by rate*15s per scrape, ±20%, rounded to quantum.
	kindCounter
	// kindDrift is a gauge that usually keeps its value and now and then
	// moves a few quanta (free memory, free disk space).
	kindDrift
	// kindNoise is a gauge that takes a new value around its mean every
	// scrape (load average, temperatures, scrape durations).
	kindNoise
	// kindClock is node_time_seconds: the scrape time in seconds.
	kindClock
)

// model is how one series' values evolve.
type model struct {
	kind    valueKind
	start   float64 // first value (mean for kindNoise)
	rate    float64 // per second (kindCounter); relative amplitude (kindNoise)
	quantum float64 // values are multiples of this; 0 keeps full precision
	prob    float64 // chance per scrape that a kindDrift gauge moves
}

// Series is one generated series: its labels, sorted by name, and the model
// of its values.
type Series struct {
	Labels [][2]string
	Host   int // index of the host, which fixes its scrape offset
	model  model
}

// host is the target labels that node_exporter's series share after the
// usual relabelling.
type host struct {
	idx         int
	instance    string
	datacenter  string
	environment string
	rack        string
	role        string
}

var roles = []string{"web", "api", "db", "cache", "queue", "batch"}

func newHost(i int) host {
	env := "prod"
	if i%10 == 9 {
		env = "staging"
	}
	return host{
		idx:         i,
		instance:    fmt.Sprintf("host-%d", i),
		datacenter:  fmt.Sprintf("dc-%d", i%4),
		environment: env,
		rack:        fmt.Sprintf("r%02d", (i/4)%40),
		role:        roles[(i/7)%len(roles)],
	}
}

// family is one node_exporter metric and the label sets it has per host.
type family struct {
	name  string
	dims  []map[string]string // extra labels per series; nil: one series
	model func(h, d int) model
}

// rnd returns a deterministic pseudo-random number in [0,1) for its inputs.
func rnd(a, b, c uint64) float64 {
	return float64(mix(a*0x9e3779b97f4a7c15^b*0xc2b2ae3d27d4eb4f^c)>>11) / (1 << 53)
}

// mix is splitmix64's finaliser.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func dimsOf(label string, values ...string) []map[string]string {
	out := make([]map[string]string, len(values))
	for i, v := range values {
		out[i] = map[string]string{label: v}
	}
	return out
}

func cross(a, b []map[string]string) []map[string]string {
	var out []map[string]string
	for _, x := range a {
		for _, y := range b {
			m := make(map[string]string, len(x)+len(y))
			for k, v := range x {
				m[k] = v
			}
			for k, v := range y {
				m[k] = v
			}
			out = append(out, m)
		}
	}
	return out
}

const (
	gib    = 1 << 30
	uptime = 40 * 86400.0 // seconds the hosts have been up when the run starts
)

// families is the node_exporter-like metric set: 124 metric names, 256
// series per host.
func families() []family {
	cpus := dimsOf("cpu", "0", "1", "2", "3")
	modes := dimsOf("mode", "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user")
	modeShare := map[int]float64{0: 0.82, 1: 0.01, 2: 0.001, 3: 0.002, 4: 0.006, 5: 0.001, 6: 0.04, 7: 0.12}
	netdevs := dimsOf("device", "eth0", "eth1", "lo")
	disks := dimsOf("device", "sda", "sdb")
	var filesystems []map[string]string
	for _, fs := range [][3]string{{"/dev/sda1", "ext4", "/"}, {"/dev/sda2", "ext4", "/boot"}, {"/dev/sdb1", "xfs", "/var/lib/data"}} {
		filesystems = append(filesystems, map[string]string{"device": fs[0], "fstype": fs[1], "mountpoint": fs[2]})
	}
	collectors := dimsOf("collector", "cpu", "diskstats", "filesystem", "loadavg", "meminfo", "netdev", "netstat", "sockstat", "vmstat", "time")
	sensors := cross(dimsOf("chip", "platform_coretemp_0"), dimsOf("sensor", "temp1", "temp2", "temp3", "temp4", "temp5"))

	counter := func(rate, quantum float64) func(h, d int) model {
		return func(h, d int) model {
			r := rate * (0.5 + rnd(uint64(h), uint64(d), 1))
			return model{kind: kindCounter, start: r * uptime, rate: r, quantum: quantum}
		}
	}
	constant := func(v float64) func(h, d int) model {
		return func(int, int) model { return model{kind: kindConst, start: v} }
	}
	drift := func(v, quantum, prob float64) func(h, d int) model {
		return func(h, d int) model {
			start := math.Round(v*(0.5+rnd(uint64(h), uint64(d), 2))/quantum) * quantum
			return model{kind: kindDrift, start: start, quantum: quantum, prob: prob}
		}
	}
	noise := func(mean, amp, quantum float64) func(h, d int) model {
		return func(h, d int) model {
			return model{kind: kindNoise, start: mean * (0.5 + rnd(uint64(h), uint64(d), 3)), rate: amp, quantum: quantum}
		}
	}

	fs := []family{
		{name: "node_cpu_seconds_total", dims: cross(cpus, modes), model: func(h, d int) model {
			share := modeShare[d%8] * (0.8 + 0.4*rnd(uint64(h), uint64(d), 4))
			return model{kind: kindCounter, start: share * uptime, rate: share, quantum: 0.01}
		}},
		{name: "node_cpu_guest_seconds_total", dims: cross(cpus, dimsOf("mode", "nice", "user")), model: constant(0)},
		{name: "node_cpu_scaling_frequency_hertz", dims: cpus, model: noise(2.8e9, 0.15, 1000)},
	}
	for _, n := range []struct {
		name string
		rate float64
	}{
		{"receive_bytes", 2e6}, {"receive_packets", 2500}, {"receive_errs", 0.001}, {"receive_drop", 0.01},
		{"receive_multicast", 0.5}, {"receive_compressed", 0}, {"receive_fifo", 0}, {"receive_frame", 0},
		{"transmit_bytes", 1.5e6}, {"transmit_packets", 2000}, {"transmit_errs", 0}, {"transmit_drop", 0.001},
		{"transmit_colls", 0}, {"transmit_carrier", 0}, {"transmit_compressed", 0}, {"transmit_fifo", 0},
	} {
		fs = append(fs, family{name: "node_network_" + n.name + "_total", dims: netdevs, model: counter(n.rate, 1)})
	}
	fs = append(fs,
		family{name: "node_network_up", dims: netdevs, model: constant(1)},
		family{name: "node_network_carrier", dims: netdevs, model: constant(1)},
		family{name: "node_network_mtu_bytes", dims: netdevs, model: constant(1500)},
		family{name: "node_network_speed_bytes", dims: netdevs, model: constant(1.25e9)},
		family{name: "node_network_transmit_queue_length", dims: netdevs, model: constant(1000)},
	)
	for _, n := range []struct {
		name    string
		rate    float64
		quantum float64
	}{
		{"reads_completed", 40, 1}, {"reads_merged", 5, 1}, {"read_bytes", 1.2e6, 512}, {"read_time_seconds", 0.02, 0.001},
		{"writes_completed", 120, 1}, {"writes_merged", 60, 1}, {"written_bytes", 3e6, 512}, {"write_time_seconds", 0.08, 0.001},
		{"io_time_seconds", 0.05, 0.001}, {"io_time_weighted_seconds", 0.1, 0.001}, {"discards_completed", 0.2, 1}, {"discarded_sectors", 50, 1},
	} {
		fs = append(fs, family{name: "node_disk_" + n.name + "_total", dims: disks, model: counter(n.rate, n.quantum)})
	}
	fs = append(fs, family{name: "node_disk_io_now", dims: disks, model: noise(1, 1, 1)})
	fs = append(fs,
		family{name: "node_filesystem_size_bytes", dims: filesystems, model: constant(500 * gib)},
		family{name: "node_filesystem_free_bytes", dims: filesystems, model: drift(200*gib, 4096, 0.3)},
		family{name: "node_filesystem_avail_bytes", dims: filesystems, model: drift(180*gib, 4096, 0.3)},
		family{name: "node_filesystem_files", dims: filesystems, model: constant(32768000)},
		family{name: "node_filesystem_files_free", dims: filesystems, model: drift(3e7, 1, 0.2)},
		family{name: "node_filesystem_readonly", dims: filesystems, model: constant(0)},
		family{name: "node_filesystem_device_error", dims: filesystems, model: constant(0)},
	)
	for _, n := range []struct {
		name string
		v    float64
		cst  bool
	}{
		{"MemTotal_bytes", 64 * gib, true}, {"MemFree_bytes", 8 * gib, false}, {"MemAvailable_bytes", 40 * gib, false},
		{"Buffers_bytes", 1 * gib, false}, {"Cached_bytes", 30 * gib, false}, {"SwapTotal_bytes", 0, true},
		{"SwapFree_bytes", 0, true}, {"SwapCached_bytes", 0, true}, {"Active_bytes", 20 * gib, false},
		{"Inactive_bytes", 25 * gib, false}, {"Active_anon_bytes", 10 * gib, false}, {"Inactive_anon_bytes", 2 * gib, false},
		{"Active_file_bytes", 10 * gib, false}, {"Inactive_file_bytes", 23 * gib, false}, {"Unevictable_bytes", 0, true},
		{"Mlocked_bytes", 0, true}, {"Dirty_bytes", 2e6, false}, {"Writeback_bytes", 0, true},
		{"AnonPages_bytes", 12 * gib, false}, {"Mapped_bytes", 1 * gib, false}, {"Shmem_bytes", 0.2 * gib, false},
		{"Slab_bytes", 2 * gib, false}, {"SReclaimable_bytes", 1.5 * gib, false}, {"SUnreclaim_bytes", 0.5 * gib, false},
		{"KernelStack_bytes", 3e7, false}, {"PageTables_bytes", 1e8, false}, {"CommitLimit_bytes", 32 * gib, true},
		{"Committed_AS_bytes", 30 * gib, false}, {"VmallocUsed_bytes", 1e8, false}, {"HugePages_Total", 0, true},
		{"Hugepagesize_bytes", 2 << 20, true},
	} {
		m := drift(n.v, 4096, 0.7)
		if n.cst {
			m = constant(n.v)
		}
		fs = append(fs, family{name: "node_memory_" + n.name, model: m})
	}
	for _, n := range []struct {
		name string
		rate float64
	}{{"pgfault", 5000}, {"pgmajfault", 0.5}, {"pgpgin", 1200}, {"pgpgout", 3000}, {"pswpin", 0}, {"pswpout", 0}, {"oom_kill", 0}} {
		fs = append(fs, family{name: "node_vmstat_" + n.name, model: counter(n.rate, 1)})
	}
	for _, n := range []struct {
		name string
		rate float64
	}{{"Tcp_ActiveOpens", 20}, {"Tcp_PassiveOpens", 30}, {"Tcp_RetransSegs", 2}, {"Tcp_InSegs", 3000}, {"Tcp_OutSegs", 2800},
		{"Udp_InDatagrams", 50}, {"Udp_OutDatagrams", 50}, {"TcpExt_ListenDrops", 0}} {
		fs = append(fs, family{name: "node_netstat_" + n.name, model: counter(n.rate, 1)})
	}
	fs = append(fs, family{name: "node_netstat_Tcp_CurrEstab", model: noise(200, 0.1, 1)})
	for _, n := range []string{"TCP_inuse", "TCP_tw", "TCP_alloc", "UDP_inuse", "sockets_used"} {
		fs = append(fs, family{name: "node_sockstat_" + n, model: noise(150, 0.1, 1)})
	}
	fs = append(fs,
		family{name: "node_load1", model: noise(1.5, 0.3, 0.01)},
		family{name: "node_load5", model: noise(1.5, 0.1, 0.01)},
		family{name: "node_load15", model: noise(1.5, 0.05, 0.01)},
		family{name: "node_boot_time_seconds", model: func(h, _ int) model {
			return model{kind: kindConst, start: 1.7e9 + float64(h*7919%86400)}
		}},
		family{name: "node_time_seconds", model: func(int, int) model { return model{kind: kindClock} }},
		family{name: "node_procs_running", model: noise(3, 0.5, 1)},
		family{name: "node_procs_blocked", model: noise(0.2, 1, 1)},
		family{name: "node_context_switches_total", model: counter(15000, 1)},
		family{name: "node_intr_total", model: counter(9000, 1)},
		family{name: "node_forks_total", model: counter(8, 1)},
		family{name: "node_entropy_available_bits", model: constant(256)},
		family{name: "node_filefd_allocated", model: drift(3000, 1, 0.5)},
		family{name: "node_filefd_maximum", model: constant(9.223372036854776e18)},
		family{name: "node_nf_conntrack_entries", model: noise(800, 0.2, 1)},
		family{name: "node_nf_conntrack_entries_limit", model: constant(262144)},
		family{name: "node_timex_offset_seconds", model: noise(1e-5, 1, 1e-6)},
		family{name: "node_timex_sync_status", model: constant(1)},
		family{name: "node_uname_info", model: constant(1)},
		family{name: "node_exporter_build_info", model: constant(1)},
		family{name: "up", model: constant(1)},
		family{name: "scrape_duration_seconds", model: noise(0.03, 0.3, 0)},
		family{name: "scrape_samples_scraped", model: constant(255)},
		family{name: "process_cpu_seconds_total", model: counter(0.004, 0.01)},
		family{name: "process_resident_memory_bytes", model: drift(2.2e7, 4096, 0.6)},
		family{name: "go_goroutines", model: noise(8, 0.1, 1)},
		family{name: "node_scrape_collector_duration_seconds", dims: collectors, model: noise(0.002, 0.4, 0)},
		family{name: "node_scrape_collector_success", dims: collectors, model: constant(1)},
		family{name: "node_hwmon_temp_celsius", dims: sensors, model: noise(45, 0.05, 1)},
	)
	return fs
}

// GenerateSeries returns n node_exporter-like series: whole hosts of
// series each (SeriesPerHost), the last one cut short.
func GenerateSeries(n int) []Series {
	fams := families()
	out := make([]Series, 0, n)
	for h := 0; len(out) < n; h++ {
		hst := newHost(h)
		base := [][2]string{
			{"datacenter", hst.datacenter}, {"environment", hst.environment}, {"instance", hst.instance},
			{"job", "node"}, {"rack", hst.rack}, {"role", hst.role},
		}
		for _, f := range fams {
			dims := f.dims
			if dims == nil {
				dims = []map[string]string{nil}
			}
			for d, extra := range dims {
				if len(out) == n {
					return out
				}
				ls := make([][2]string, 0, len(base)+1+len(extra))
				ls = append(ls, [2]string{"__name__", f.name})
				ls = append(ls, base...)
				for k, v := range extra {
					ls = append(ls, [2]string{k, v})
				}
				slices.SortFunc(ls, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
				out = append(out, Series{Labels: ls, Host: h, model: f.model(h, d)})
			}
		}
	}
	return out
}

// SeriesPerHost is how many series one generated host has.
func SeriesPerHost() int {
	n := 0
	for _, f := range families() {
		n += max(1, len(f.dims))
	}
	return n
}

// MetricNames is how many distinct metric names the generated hosts have.
func MetricNames() int { return len(families()) }

// timestamp is when host h's scrape number round happened: the hosts'
// scrapes are spread over the interval, as Prometheus spreads its targets,
// and each is late by a few milliseconds.
func timestamp(base int64, h, round int) int64 {
	offset := int64(mix(uint64(h)+1) % ScrapeIntervalMillis)
	jitter := int64(mix(uint64(h)<<32|uint64(round)) % 5)
	return base + int64(round)*ScrapeIntervalMillis + offset + jitter
}

// next returns the value of scrape round given the previous value.
func (m *model) next(prev float64, id, round int, ts int64) float64 {
	switch m.kind {
	case kindCounter:
		if round == 0 {
			return quantize(m.start, m.quantum)
		}
		inc := m.rate * ScrapeIntervalMillis / 1000 * (0.8 + 0.4*rnd(uint64(id), uint64(round), 5))
		// Rounded again: a sum of decimals is not the float nearest to the
		// decimal sum, and an exporter's counter is.
		return quantize(prev+quantize(inc, m.quantum), m.quantum)
	case kindDrift:
		if round == 0 {
			return m.start
		}
		if rnd(uint64(id), uint64(round), 6) >= m.prob {
			return prev
		}
		steps := math.Floor(rnd(uint64(id), uint64(round), 7)*41) - 20 // -20..20 quanta
		return max(0, prev+steps*m.quantum)
	case kindNoise:
		v := m.start * (1 + m.rate*(2*rnd(uint64(id), uint64(round), 8)-1))
		return max(0, quantize(v, m.quantum))
	case kindClock:
		return float64(ts) / 1000
	default:
		return m.start
	}
}

// quantize rounds v to a multiple of q. A fractional q gives the float64
// nearest to the decimal (k/100, not k*0.01), which is what an exporter's
// value is after the text format: node_exporter divides integer ticks by
// USER_HZ, and Prometheus parses the decimal it prints.
func quantize(v, q float64) float64 {
	switch {
	case q == 0:
		return v
	case q < 1:
		inv := math.Round(1 / q)
		return math.Round(v*inv) / inv
	default:
		return math.Round(v/q) * q
	}
}
