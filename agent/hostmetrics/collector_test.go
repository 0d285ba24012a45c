package hostmetrics

import (
	"bytes"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"
)

// fixtureFiles returns a small fake procfs, keyed by path under /proc.
func fixtureFiles() map[string]string {
	return map[string]string{
		"stat": `cpu  300 20 100 1000 10 5 3 2 0 0
cpu0 100 10 50 500 5 2 1 1 0 0
cpu1 200 10 50 500 5 3 2 1 0 0
intr 12345 1 2 3
ctxt 67890
btime 1700000000
processes 4242
procs_running 3
procs_blocked 1
softirq 10 1 2 3 4 0 0 0 0 0 0
`,
		"loadavg": "0.50 1.25 2.00 2/345 6789\n",
		"meminfo": `MemTotal:       16384 kB
MemFree:         4096 kB
MemAvailable:    8192 kB
Buffers:          512 kB
Cached:          2048 kB
SwapCached:         0 kB
Active:          3000 kB
Inactive:        1000 kB
SwapTotal:       1024 kB
SwapFree:        1000 kB
Dirty:             12 kB
Shmem:             64 kB
Slab:             256 kB
`,
		"net/dev": `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0:  123456     789    1    2    0     0          0         3    65432     321    4    5    0     0       0          0
 veth1:       7       1    0    0    0     0          0         0        7       1    0    0    0     0       0          0
`,
		"diskstats": `   7       0 loop0 1 0 2 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 100 10 2000 300 50 5 1000 400 2 600 700 0 0 0 0 0 0
 254       1 vda1 90 10 1800 290 50 5 1000 400 0 590 690 0 0 0 0 0 0
 253       0 zram0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 259       0 nvme0n1 5 0 8 1 2 0 16 3 0 4 4
`,
		// Only self/mountinfo, so reading 1/mountinfo fails and falls back.
		"self/mountinfo": `22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
28 27 254:1 / /boot ro,relatime - ext4 /dev/vda1 ro
29 27 0:40 / /mnt/my\040disk rw - xfs /dev/sdb rw
30 27 0:41 / /data rw - tmpfs tmpfs rw
31 27 0:42 / /data rw - ext4 /dev/sdd rw
32 27 0:43 / /mnt/gone rw - ext4 /dev/sdc rw
33 27 0:44 / /dev/shm rw - tmpfs tmpfs rw
34 27 0:45 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
35 27 0:46 / /snap/core/1 ro - squashfs /dev/loop0 ro
`,
	}
}

// fakeStatfs answers statfs for the fixture's mount points; blocks are 4 KiB.
func fakeStatfs(path string, buf *unix.Statfs_t) error {
	sizes := map[string][5]uint64{ // blocks, free, avail, files, files free
		"/":            {1000, 500, 400, 100, 50},
		"/boot":        {200, 100, 90, 20, 10},
		"/mnt/my disk": {300, 300, 300, 30, 30},
		"/data":        {10, 1, 0, 5, 1},
	}
	s, ok := sizes[path]
	if !ok {
		return unix.ENOENT
	}
	*buf = unix.Statfs_t{Bsize: 4096, Blocks: s[0], Bfree: s[1], Bavail: s[2], Files: s[3], Ffree: s[4]}
	return nil
}

// newFixtureCollector writes files as a fake /proc and returns a Collector
// reading it, with statfs faked.
func newFixtureCollector(tb testing.TB, files map[string]string, logger *slog.Logger) *Collector {
	tb.Helper()
	dir := tb.TempDir()
	proc, sys := filepath.Join(dir, "proc"), filepath.Join(dir, "sys")
	if err := os.MkdirAll(sys, 0o755); err != nil {
		tb.Fatal(err)
	}
	for name, content := range files {
		path := filepath.Join(proc, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	c, err := New(Config{ProcPath: proc, SysPath: sys, NetworkDevicesExclude: "^veth"}, logger)
	if err != nil {
		tb.Fatalf("New() error = %v", err)
	}
	c.fs.statfs = fakeStatfs
	return c
}

// gather registers c in a pedantic registry and returns its series as
// `name{label="value",...}` mapped to their values.
func gather(tb testing.TB, c prometheus.Collector) map[string]float64 {
	tb.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatalf("Gather() error = %v", err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			out[seriesKey(mf.GetName(), m)] = value(m)
		}
	}
	return out
}

func seriesKey(name string, m *dto.Metric) string {
	var labels []string
	for _, l := range m.GetLabel() {
		labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	return name + "{" + strings.Join(labels, ",") + "}"
}

func value(m *dto.Metric) float64 {
	if m.GetCounter() != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

func TestCollectorFixture(t *testing.T) {
	got := gather(t, newFixtureCollector(t, fixtureFiles(), nil))

	const kib = 1024
	want := map[string]float64{
		`node_context_switches_total{}`: 67890,
		`node_intr_total{}`:             12345,
		`node_forks_total{}`:            4242,
		`node_boot_time_seconds{}`:      1700000000,
		`node_procs_running{}`:          3,
		`node_procs_blocked{}`:          1,
		`node_load1{}`:                  0.5,
		`node_load5{}`:                  1.25,
		`node_load15{}`:                 2,
	}
	for cpu, modes := range map[string][8]float64{
		"0": {1, 0.1, 0.5, 5, 0.05, 0.02, 0.01, 0.01},
		"1": {2, 0.1, 0.5, 5, 0.05, 0.03, 0.02, 0.01},
	} {
		for i, mode := range []string{"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"} {
			want[fmt.Sprintf(`node_cpu_seconds_total{cpu=%q,mode=%q}`, cpu, mode)] = modes[i]
		}
	}
	for field, v := range map[string]float64{
		"MemTotal": 16384, "MemFree": 4096, "MemAvailable": 8192, "Buffers": 512, "Cached": 2048,
		"SwapTotal": 1024, "SwapFree": 1000, "Active": 3000, "Inactive": 1000, "Dirty": 12,
		"Shmem": 64, "Slab": 256,
	} {
		want["node_memory_"+field+"_bytes{}"] = v * kib
	}
	for dev, v := range map[string][8]float64{
		"vda":     {100, 50, 2000 * 512, 1000 * 512, 0.3, 0.4, 0.6, 2},
		"nvme0n1": {5, 2, 8 * 512, 16 * 512, 0.001, 0.003, 0.004, 0},
	} {
		for i, name := range []string{"reads_completed_total", "writes_completed_total", "read_bytes_total",
			"written_bytes_total", "read_time_seconds_total", "write_time_seconds_total", "io_time_seconds_total", "io_now"} {
			want[fmt.Sprintf(`node_disk_%s{device=%q}`, name, dev)] = v[i]
		}
	}
	for dev, v := range map[string][8]float64{
		"lo":   {1000, 1000, 10, 10, 0, 0, 0, 0},
		"eth0": {123456, 65432, 789, 321, 1, 4, 2, 5},
	} {
		for i, name := range []string{"receive_bytes", "transmit_bytes", "receive_packets", "transmit_packets",
			"receive_errs", "transmit_errs", "receive_drop", "transmit_drop"} {
			want[fmt.Sprintf(`node_network_%s_total{device=%q}`, name, dev)] = v[i]
		}
	}
	for _, fs := range []struct {
		device, mountpoint, fstype string
		stats                      [6]float64 // size, free, avail, files, files free, readonly
	}{
		{"/dev/vda", "/", "ext4", [6]float64{1000 * 4096, 500 * 4096, 400 * 4096, 100, 50, 0}},
		{"/dev/vda1", "/boot", "ext4", [6]float64{200 * 4096, 100 * 4096, 90 * 4096, 20, 10, 1}},
		{"/dev/sdb", "/mnt/my disk", "xfs", [6]float64{300 * 4096, 300 * 4096, 300 * 4096, 30, 30, 0}},
		{"/dev/sdd", "/data", "ext4", [6]float64{10 * 4096, 1 * 4096, 0, 5, 1, 0}},
	} {
		labels := fmt.Sprintf(`{device=%q,fstype=%q,mountpoint=%q}`, fs.device, fs.fstype, fs.mountpoint)
		want["node_filesystem_device_error"+labels] = 0
		for i, name := range []string{"size_bytes", "free_bytes", "avail_bytes", "files", "files_free", "readonly"} {
			want["node_filesystem_"+name+labels] = fs.stats[i]
		}
	}
	want[`node_filesystem_device_error{device="/dev/sdc",fstype="ext4",mountpoint="/mnt/gone"}`] = 1
	for _, name := range []string{"cpu", "stat", "loadavg", "meminfo", "diskstats", "filesystem", "netdev", "uname", "time"} {
		want[fmt.Sprintf(`node_scrape_collector_success{collector=%q}`, name)] = 1
	}

	// The clock, uname and durations vary; check only that they are there.
	varying := regexp.MustCompile(`^node_(time_seconds|uname_info|scrape_collector_duration_seconds)\{`)
	var sawTime, sawUname bool
	for k, v := range got {
		if varying.MatchString(k) {
			sawTime = sawTime || strings.HasPrefix(k, "node_time_seconds")
			sawUname = sawUname || strings.HasPrefix(k, "node_uname_info") && v == 1
			delete(got, k)
		}
	}
	if !sawTime || !sawUname {
		t.Errorf("node_time_seconds seen %v, node_uname_info seen %v; want both", sawTime, sawUname)
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok {
			t.Errorf("missing %s", k)
		} else if diff := g - want[k]; diff > 1e-9 || diff < -1e-9 {
			t.Errorf("%s = %v, want %v", k, g, want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected series %s = %v", k, got[k])
		}
	}
}

// TestCollectorFixtureExposition pins help texts and types to
// node_exporter's for a sample of the metrics.
func TestCollectorFixtureExposition(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newFixtureCollector(t, fixtureFiles(), nil))
	const want = `# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 0.5
# HELP node_disk_io_now The number of I/Os currently in progress.
# TYPE node_disk_io_now gauge
node_disk_io_now{device="nvme0n1"} 0
node_disk_io_now{device="vda"} 2
# HELP node_network_receive_bytes_total Network device statistic receive_bytes.
# TYPE node_network_receive_bytes_total counter
node_network_receive_bytes_total{device="eth0"} 123456
node_network_receive_bytes_total{device="lo"} 1000
# HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes.
# TYPE node_memory_MemTotal_bytes gauge
node_memory_MemTotal_bytes 1.6777216e+07
# HELP node_filesystem_readonly Filesystem read-only status.
# TYPE node_filesystem_readonly gauge
node_filesystem_readonly{device="/dev/sdb",fstype="xfs",mountpoint="/mnt/my disk"} 0
node_filesystem_readonly{device="/dev/sdd",fstype="ext4",mountpoint="/data"} 0
node_filesystem_readonly{device="/dev/vda",fstype="ext4",mountpoint="/"} 0
node_filesystem_readonly{device="/dev/vda1",fstype="ext4",mountpoint="/boot"} 1
`
	names := []string{"node_load1", "node_disk_io_now", "node_network_receive_bytes_total",
		"node_memory_MemTotal_bytes", "node_filesystem_readonly"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

func TestCollectorFailingSubCollector(t *testing.T) {
	files := fixtureFiles()
	delete(files, "loadavg")
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := newFixtureCollector(t, files, logger)

	for range 3 {
		got := gather(t, c)
		if v := got[`node_scrape_collector_success{collector="loadavg"}`]; v != 0 {
			t.Errorf("loadavg success = %v, want 0", v)
		}
		if _, ok := got[`node_load1{}`]; ok {
			t.Error("node_load1 reported without a loadavg file")
		}
		if v := got[`node_scrape_collector_success{collector="meminfo"}`]; v != 1 {
			t.Errorf("meminfo success = %v, want 1", v)
		}
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("got %d warnings over 3 failing scrapes, want 1:\n%s", n, logs.String())
	}
}

func TestCollectorStatfsTimeout(t *testing.T) {
	files := fixtureFiles()
	files["self/mountinfo"] = "27 1 254:0 / / rw - ext4 /dev/vda rw\n40 27 0:50 / /mnt/nfs rw - nfs4 server:/export rw\n"
	c := newFixtureCollector(t, files, nil)
	c.fs.timeout = 200 * time.Millisecond
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	var calls atomic.Int32
	c.fs.statfs = func(path string, buf *unix.Statfs_t) error {
		if path != "/mnt/nfs" {
			return fakeStatfs(path, buf)
		}
		calls.Add(1)
		<-release
		*buf = unix.Statfs_t{Bsize: 1024, Blocks: 7}
		return nil
	}
	const nfsError = `node_filesystem_device_error{device="server:/export",fstype="nfs4",mountpoint="/mnt/nfs"}`
	const nfsSize = `node_filesystem_size_bytes{device="server:/export",fstype="nfs4",mountpoint="/mnt/nfs"}`

	for i := range 2 {
		start := time.Now()
		got := gather(t, c)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("scrape %d took %v with a hung statfs", i, d)
		}
		if got[nfsError] != 1 {
			t.Errorf("scrape %d: device_error = %v, want 1", i, got[nfsError])
		}
		if _, ok := got[`node_filesystem_size_bytes{device="/dev/vda",fstype="ext4",mountpoint="/"}`]; !ok {
			t.Errorf("scrape %d: / is missing next to the hung mount", i)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("statfs of the hung mount called %d times, want 1: a stuck mount must be skipped", n)
	}

	once.Do(func() { close(release) })
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		c.fs.mu.Lock()
		stuck := c.fs.stuck["/mnt/nfs"]
		c.fs.mu.Unlock()
		if !stuck {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("mount still marked stuck after statfs returned")
		}
	}
	if got := gather(t, c); got[nfsSize] != 7*1024 || got[nfsError] != 0 {
		t.Errorf("after recovery size = %v, device_error = %v; want 7168, 0", got[nfsSize], got[nfsError])
	}
}

func TestStripRootfs(t *testing.T) {
	tests := []struct {
		name, rootfs, path, want string
	}{
		{"root rootfs keeps path", "/", "/boot", "/boot"},
		{"prefix stripped", "/host", "/host/boot", "/boot"},
		{"rootfs itself is /", "/host", "/host", "/"},
		{"similar prefix kept", "/host", "/hostile", "/hostile"},
		{"container path kept", "/host", "/etc/hosts", "/etc/hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &filesystemCollector{rootfs: tt.rootfs}
			if got := c.stripRootfs(tt.path); got != tt.want {
				t.Errorf("stripRootfs(%q) = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
}

func TestUnescapeMountPath(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "/mnt/data", "/mnt/data"},
		{"space", `/mnt/my\040disk`, "/mnt/my disk"},
		{"tab and backslash", `/a\011b\134c`, "/a\tb\\c"},
		{"not an escape", `/a\9zz`, `/a\9zz`},
		{"trailing backslash", `/a\04`, `/a\04`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unescapeMountPath(tt.in); got != tt.want {
				t.Errorf("unescapeMountPath(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestCollectorRealHost scrapes the machine running the test.
func TestCollectorRealHost(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads Linux procfs")
	}
	c, err := New(Config{}, nil)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather() error = %v", err)
	}
	families := make(map[string]*dto.MetricFamily)
	for _, mf := range mfs {
		families[mf.GetName()] = mf
	}

	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	cpus := len(regexp.MustCompile(`(?m)^cpu\d+ `).FindAll(stat, -1))

	tests := []struct {
		name      string
		labels    []string
		minSeries int
		wantCount int // exact series count when > 0
		check     func(v float64) bool
	}{
		{"node_cpu_seconds_total", []string{"cpu", "mode"}, 1, cpus * 8, func(v float64) bool { return v >= 0 }},
		{"node_load1", nil, 1, 1, func(v float64) bool { return v >= 0 }},
		{"node_memory_MemTotal_bytes", nil, 1, 1, func(v float64) bool { return v > 0 }},
		{"node_network_receive_bytes_total", []string{"device"}, 1, 0, func(v float64) bool { return v >= 0 }},
		{"node_filesystem_size_bytes", []string{"device", "fstype", "mountpoint"}, 1, 0, func(v float64) bool { return v > 0 }},
		{"node_boot_time_seconds", nil, 1, 1, func(v float64) bool { return v > 1e9 && v < float64(time.Now().Unix()) }},
		{"node_uname_info", []string{"domainname", "machine", "nodename", "release", "sysname", "version"}, 1, 1,
			func(v float64) bool { return v == 1 }},
		{"node_scrape_collector_success", []string{"collector"}, 9, 9, func(v float64) bool { return v == 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mf, ok := families[tt.name]
			if !ok {
				t.Fatalf("%s missing", tt.name)
			}
			ms := mf.GetMetric()
			if len(ms) < tt.minSeries || (tt.wantCount > 0 && len(ms) != tt.wantCount) {
				t.Errorf("got %d series, want at least %d (exactly %d if > 0)", len(ms), tt.minSeries, tt.wantCount)
			}
			for _, m := range ms {
				var names []string
				for _, l := range m.GetLabel() {
					names = append(names, l.GetName())
				}
				if !slices.Equal(names, tt.labels) {
					t.Errorf("%s: labels %v, want %v", seriesKey(tt.name, m), names, tt.labels)
				}
				if v := value(m); !tt.check(v) {
					t.Errorf("%s = %v, implausible", seriesKey(tt.name, m), v)
				}
			}
		})
	}
	for _, m := range families["node_filesystem_size_bytes"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "fstype" && slices.Contains(DefaultFilesystemTypesExclude(), l.GetValue()) {
				t.Errorf("%s reported although its type is excluded", seriesKey("node_filesystem_size_bytes", m))
			}
		}
	}
}

func BenchmarkCollect(b *testing.B) {
	c, err := New(Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ch := make(chan prometheus.Metric, 256)
	done := make(chan int)
	go func() {
		n := 0
		for range ch {
			n++
		}
		done <- n
	}()
	b.ReportAllocs()
	for b.Loop() {
		c.Collect(ch)
	}
	close(ch)
	b.ReportMetric(float64(<-done)/float64(b.N), "metrics/op")
}
