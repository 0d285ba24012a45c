package hostmetrics

import (
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"
	"github.com/prometheus/procfs/blockdevice"
	"golang.org/x/sys/unix"
)

// The constructors below build node_exporter's collectors of the same name.
// Each registers its descriptors in ds and returns its update function.

// newCPUCollector reports the per-CPU time of /proc/stat, in seconds.
func newCPUCollector(proc procfs.FS, ds *descSet) func(chan<- prometheus.Metric) error {
	seconds := ds.add("cpu_seconds_total", "Seconds the CPUs spent in each mode.", "cpu", "mode")
	return func(ch chan<- prometheus.Metric) error {
		stat, err := proc.Stat()
		if err != nil {
			return fmt.Errorf("read stat: %w", err)
		}
		for id, s := range stat.CPU {
			cpu := strconv.FormatInt(id, 10)
			modes := [...]struct {
				name  string
				value float64
			}{
				{"user", s.User}, {"nice", s.Nice}, {"system", s.System}, {"idle", s.Idle},
				{"iowait", s.Iowait}, {"irq", s.IRQ}, {"softirq", s.SoftIRQ}, {"steal", s.Steal},
			}
			for _, m := range modes {
				ch <- prometheus.MustNewConstMetric(seconds, prometheus.CounterValue, m.value, cpu, m.name)
			}
		}
		return nil
	}
}

// newStatCollector reports the system-wide counters of /proc/stat.
func newStatCollector(proc procfs.FS, ds *descSet) func(chan<- prometheus.Metric) error {
	var (
		ctxt    = ds.add("context_switches_total", "Total number of context switches.")
		intr    = ds.add("intr_total", "Total number of interrupts serviced.")
		forks   = ds.add("forks_total", "Total number of forks.")
		boot    = ds.add("boot_time_seconds", "Node boot time, in unixtime.")
		running = ds.add("procs_running", "Number of processes in runnable state.")
		blocked = ds.add("procs_blocked", "Number of processes blocked waiting for I/O to complete.")
	)
	return func(ch chan<- prometheus.Metric) error {
		s, err := proc.Stat()
		if err != nil {
			return fmt.Errorf("read stat: %w", err)
		}
		ch <- prometheus.MustNewConstMetric(ctxt, prometheus.CounterValue, float64(s.ContextSwitches))
		ch <- prometheus.MustNewConstMetric(intr, prometheus.CounterValue, float64(s.IRQTotal))
		ch <- prometheus.MustNewConstMetric(forks, prometheus.CounterValue, float64(s.ProcessCreated))
		ch <- prometheus.MustNewConstMetric(boot, prometheus.GaugeValue, float64(s.BootTime))
		ch <- prometheus.MustNewConstMetric(running, prometheus.GaugeValue, float64(s.ProcessesRunning))
		ch <- prometheus.MustNewConstMetric(blocked, prometheus.GaugeValue, float64(s.ProcessesBlocked))
		return nil
	}
}

// newLoadavgCollector reports /proc/loadavg.
func newLoadavgCollector(proc procfs.FS, ds *descSet) func(chan<- prometheus.Metric) error {
	load1 := ds.add("load1", "1m load average.")
	load5 := ds.add("load5", "5m load average.")
	load15 := ds.add("load15", "15m load average.")
	return func(ch chan<- prometheus.Metric) error {
		l, err := proc.LoadAvg()
		if err != nil {
			return fmt.Errorf("read loadavg: %w", err)
		}
		ch <- prometheus.MustNewConstMetric(load1, prometheus.GaugeValue, l.Load1)
		ch <- prometheus.MustNewConstMetric(load5, prometheus.GaugeValue, l.Load5)
		ch <- prometheus.MustNewConstMetric(load15, prometheus.GaugeValue, l.Load15)
		return nil
	}
}

// newMeminfoCollector reports the /proc/meminfo fields dashboards use, in
// bytes. Fields the kernel does not print are left out.
func newMeminfoCollector(proc procfs.FS, ds *descSet) func(chan<- prometheus.Metric) error {
	type field struct {
		desc  *prometheus.Desc
		value func(procfs.Meminfo) *uint64
	}
	add := func(name string, value func(procfs.Meminfo) *uint64) field {
		help := "Memory information field " + name + "_bytes."
		return field{ds.add("memory_"+name+"_bytes", help), value}
	}
	fields := []field{
		add("MemTotal", func(m procfs.Meminfo) *uint64 { return m.MemTotalBytes }),
		add("MemFree", func(m procfs.Meminfo) *uint64 { return m.MemFreeBytes }),
		add("MemAvailable", func(m procfs.Meminfo) *uint64 { return m.MemAvailableBytes }),
		add("Buffers", func(m procfs.Meminfo) *uint64 { return m.BuffersBytes }),
		add("Cached", func(m procfs.Meminfo) *uint64 { return m.CachedBytes }),
		add("SwapTotal", func(m procfs.Meminfo) *uint64 { return m.SwapTotalBytes }),
		add("SwapFree", func(m procfs.Meminfo) *uint64 { return m.SwapFreeBytes }),
		add("Active", func(m procfs.Meminfo) *uint64 { return m.ActiveBytes }),
		add("Inactive", func(m procfs.Meminfo) *uint64 { return m.InactiveBytes }),
		add("Dirty", func(m procfs.Meminfo) *uint64 { return m.DirtyBytes }),
		add("Shmem", func(m procfs.Meminfo) *uint64 { return m.ShmemBytes }),
		add("Slab", func(m procfs.Meminfo) *uint64 { return m.SlabBytes }),
	}
	return func(ch chan<- prometheus.Metric) error {
		m, err := proc.Meminfo()
		if err != nil {
			return fmt.Errorf("read meminfo: %w", err)
		}
		for _, f := range fields {
			if v := f.value(m); v != nil {
				ch <- prometheus.MustNewConstMetric(f.desc, prometheus.GaugeValue, float64(*v))
			}
		}
		return nil
	}
}

// newDiskstatsCollector reports /proc/diskstats for the devices exclude does
// not match. Sectors there are always 512 bytes and times are milliseconds.
func newDiskstatsCollector(block blockdevice.FS, exclude *regexp.Regexp, ds *descSet) func(chan<- prometheus.Metric) error {
	const sector, ms = 512, 0.001
	type stat struct {
		desc      *prometheus.Desc
		valueType prometheus.ValueType
		value     func(blockdevice.IOStats) float64
	}
	add := func(name, help string, t prometheus.ValueType, value func(blockdevice.IOStats) float64) stat {
		return stat{ds.add("disk_"+name, help, "device"), t, value}
	}
	counter, gauge := prometheus.CounterValue, prometheus.GaugeValue
	stats := []stat{
		add("reads_completed_total", "The total number of reads completed successfully.", counter,
			func(s blockdevice.IOStats) float64 { return float64(s.ReadIOs) }),
		add("writes_completed_total", "The total number of writes completed successfully.", counter,
			func(s blockdevice.IOStats) float64 { return float64(s.WriteIOs) }),
		add("read_bytes_total", "The total number of bytes read successfully.", counter,
			func(s blockdevice.IOStats) float64 { return float64(s.ReadSectors) * sector }),
		add("written_bytes_total", "The total number of bytes written successfully.", counter,
			func(s blockdevice.IOStats) float64 { return float64(s.WriteSectors) * sector }),
		add("read_time_seconds_total", "The total number of seconds spent by all reads.", counter,
			func(s blockdevice.IOStats) float64 { return float64(s.ReadTicks) * ms }),
		add("write_time_seconds_total", "This is the total number of seconds spent by all writes.", counter,
			func(s blockdevice.IOStats) float64 { return float64(s.WriteTicks) * ms }),
		add("io_time_seconds_total", "Total seconds spent doing I/Os.", counter,
			func(s blockdevice.IOStats) float64 { return float64(s.IOsTotalTicks) * ms }),
		add("io_now", "The number of I/Os currently in progress.", gauge,
			func(s blockdevice.IOStats) float64 { return float64(s.IOsInProgress) }),
	}
	return func(ch chan<- prometheus.Metric) error {
		disks, err := block.ProcDiskstats()
		if err != nil {
			return fmt.Errorf("read diskstats: %w", err)
		}
		for _, d := range disks {
			if exclude.MatchString(d.DeviceName) {
				continue
			}
			for _, s := range stats {
				ch <- prometheus.MustNewConstMetric(s.desc, s.valueType, s.value(d.IOStats), d.DeviceName)
			}
		}
		return nil
	}
}

// newNetdevCollector reports /proc/net/dev for the devices exclude does not
// match.
func newNetdevCollector(proc procfs.FS, exclude *regexp.Regexp, ds *descSet) func(chan<- prometheus.Metric) error {
	type stat struct {
		desc  *prometheus.Desc
		value func(procfs.NetDevLine) uint64
	}
	add := func(name string, value func(procfs.NetDevLine) uint64) stat {
		help := "Network device statistic " + name + "."
		return stat{ds.add("network_"+name+"_total", help, "device"), value}
	}
	stats := []stat{
		add("receive_bytes", func(l procfs.NetDevLine) uint64 { return l.RxBytes }),
		add("transmit_bytes", func(l procfs.NetDevLine) uint64 { return l.TxBytes }),
		add("receive_packets", func(l procfs.NetDevLine) uint64 { return l.RxPackets }),
		add("transmit_packets", func(l procfs.NetDevLine) uint64 { return l.TxPackets }),
		add("receive_errs", func(l procfs.NetDevLine) uint64 { return l.RxErrors }),
		add("transmit_errs", func(l procfs.NetDevLine) uint64 { return l.TxErrors }),
		add("receive_drop", func(l procfs.NetDevLine) uint64 { return l.RxDropped }),
		add("transmit_drop", func(l procfs.NetDevLine) uint64 { return l.TxDropped }),
	}
	return func(ch chan<- prometheus.Metric) error {
		devices, err := proc.NetDev()
		if err != nil {
			return fmt.Errorf("read net/dev: %w", err)
		}
		for name, line := range devices {
			if exclude.MatchString(name) {
				continue
			}
			for _, s := range stats {
				ch <- prometheus.MustNewConstMetric(s.desc, prometheus.CounterValue, float64(s.value(line)), name)
			}
		}
		return nil
	}
}

// newUnameCollector reports uname(2) of the agent's UTS namespace, which is
// the host's unless the agent runs in a container without host networking.
func newUnameCollector(ds *descSet) func(chan<- prometheus.Metric) error {
	info := ds.add("uname_info", "Labeled system information as provided by the uname system call.",
		"sysname", "release", "version", "machine", "nodename", "domainname")
	return func(ch chan<- prometheus.Metric) error {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return fmt.Errorf("uname: %w", err)
		}
		ch <- prometheus.MustNewConstMetric(info, prometheus.GaugeValue, 1,
			unix.ByteSliceToString(u.Sysname[:]), unix.ByteSliceToString(u.Release[:]),
			unix.ByteSliceToString(u.Version[:]), unix.ByteSliceToString(u.Machine[:]),
			unix.ByteSliceToString(u.Nodename[:]), unix.ByteSliceToString(u.Domainname[:]))
		return nil
	}
}

// newTimeCollector reports the host's clock, so that clock skew shows.
func newTimeCollector(ds *descSet) func(chan<- prometheus.Metric) error {
	now := ds.add("time_seconds", "System time in seconds since epoch (1970).")
	return func(ch chan<- prometheus.Metric) error {
		ch <- prometheus.MustNewConstMetric(now, prometheus.GaugeValue, float64(time.Now().UnixNano())/1e9)
		return nil
	}
}
