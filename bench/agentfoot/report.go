package agentfoot

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Machine describes where the benchmark ran.
type Machine struct {
	CPUs        int    `json:"cpus"`
	CPUModel    string `json:"cpu_model"`
	MemTotalMiB int64  `json:"mem_total_mib"`
	Kernel      string `json:"kernel"`
	GoVersion   string `json:"go_version"`
}

// ReadMachine reads the machine's description from /proc.
func ReadMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				m.MemTotalMiB = kb / 1024
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// Check is one sanity check of the run: that each side really did the work
// being measured.
type Check struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	OK    bool   `json:"ok"`
}

// Report is the benchmark's result, written as JSON and as markdown.
type Report struct {
	Date    time.Time `json:"date"`
	Command string    `json:"command"`
	// Revision is the bureauhub commit measured (git describe --dirty).
	Revision string            `json:"revision,omitempty"`
	Machine  Machine           `json:"machine"`
	Setup    Setup             `json:"setup"`
	Peers    map[string]string `json:"versions"`
	// Ours and Peer name the compared footprints; PeerHost, if set, is
	// node_exporter, which does the peer's share of host collection.
	Ours, Peer, PeerHost string
	Measurement          *Measurement `json:"measurement"`
	// Ratios are ours / peer (and ours / peer + peer host).
	Ratios map[string]float64 `json:"ratios_ours_over_peer"`
	Checks []Check            `json:"checks"`
	Notes  []string           `json:"notes"`
}

// Setup is what was run.
type Setup struct {
	TargetSeries       int     `json:"target_series"`
	TargetMetricNames  int     `json:"target_metric_names"`
	ScrapeIntervalSec  float64 `json:"scrape_interval_seconds"`
	WarmupSec          float64 `json:"warmup_seconds"`
	WindowSec          float64 `json:"window_seconds"`
	HostMetricsSamples float64 `json:"host_metrics_samples_per_collection"`
	NodeExporterSeries float64 `json:"node_exporter_series_per_scrape,omitempty"`
	ProfiledAgent      bool    `json:"profiled_agent"`
	// TargetScrapes counts the target's scrapes by User-Agent product.
	TargetScrapes map[string]int `json:"target_scrapes"`
}

// Footprint returns the named footprint.
func (r *Report) Footprint(name string) (Footprint, bool) {
	for _, f := range r.Measurement.Footprints {
		if f.Name == name {
			return f, true
		}
	}
	return Footprint{}, false
}

// ComputeRatios fills Ratios from the footprints.
func (r *Report) ComputeRatios() {
	ours, ok1 := r.Footprint(r.Ours)
	peer, ok2 := r.Footprint(r.Peer)
	if !ok1 || !ok2 {
		return
	}
	r.Ratios = map[string]float64{
		"rss_mean": ours.RSSMeanMiB / peer.RSSMeanMiB,
		"rss_peak": ours.RSSPeakMiB / peer.RSSPeakMiB,
		"cpu":      ours.CPUPercent / peer.CPUPercent,
	}
	if host, ok := r.Footprint(r.PeerHost); ok {
		r.Ratios["rss_mean_vs_peer_plus_host"] = ours.RSSMeanMiB / (peer.RSSMeanMiB + host.RSSMeanMiB)
		r.Ratios["cpu_vs_peer_plus_host"] = ours.CPUPercent / (peer.CPUPercent + host.CPUPercent)
	}
}

// Markdown renders the report as a section of docs/benchmarks.md.
func (r *Report) Markdown() string {
	var b strings.Builder
	m := r.Measurement
	fmt.Fprintf(&b, "## Agent footprint\n\n")
	fmt.Fprintf(&b, "Our agent and vmagent scrape the same target (%d series: %d metric names × %d label sets, counters and gauges that change every scrape, gzip, loopback) every %gs, side by side for %.0fs after a %.0fs warm-up. ",
		r.Setup.TargetSeries, r.Setup.TargetMetricNames, r.Setup.TargetSeries/max(r.Setup.TargetMetricNames, 1), r.Setup.ScrapeIntervalSec, m.Seconds, r.Setup.WarmupSec)
	fmt.Fprintf(&b, "Our agent also collects its host every %gs (%.0f samples each time) and ships everything over TLS to a real hub writing to a throwaway ClickHouse; vmagent ships remote_write to a sink in the harness that decodes and discards. ",
		r.Setup.ScrapeIntervalSec, r.Setup.HostMetricsSamples)
	if r.PeerHost != "" {
		fmt.Fprintf(&b, "vmagent has no host collector, so node_exporter (limited to the collectors our agent has: cpu, loadavg, meminfo, diskstats, filesystem, netdev, uname, time; %.0f series) runs beside it and vmagent scrapes it too. ", r.Setup.NodeExporterSeries)
	}
	fmt.Fprintf(&b, "RSS is VmRSS sampled every second (split into RssAnon and RssFile+RssShmem); CPU is utime+stime over the window, in %% of one core; Go heap is go_memstats_heap_inuse_bytes read every 15 s from each agent's /metrics.\n\n")

	fmt.Fprintf(&b, "| process | RSS mean (MiB) | RSS peak (MiB) | of which anon / file, mean (MiB) | CPU (%% of one core) | Go heap in use, mean / peak (MiB) |\n")
	fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---:|\n")
	for _, f := range m.Footprints {
		heap := "–"
		if f.HeapSamples > 0 {
			heap = fmt.Sprintf("%.1f / %.1f", f.HeapInuseMeanMiB, f.HeapInusePeakMiB)
		}
		fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f / %.1f | %.2f | %s |\n", f.Name, f.RSSMeanMiB, f.RSSPeakMiB, f.RSSAnonMeanMiB, f.RSSFileMeanMiB, f.CPUPercent, heap)
	}
	if host, ok := r.Footprint(r.PeerHost); ok {
		peer, _ := r.Footprint(r.Peer)
		fmt.Fprintf(&b, "| %s + %s | %.1f | %.1f | %.1f / %.1f | %.2f | |\n", r.Peer, r.PeerHost,
			peer.RSSMeanMiB+host.RSSMeanMiB, peer.RSSPeakMiB+host.RSSPeakMiB, peer.RSSAnonMeanMiB+host.RSSAnonMeanMiB,
			peer.RSSFileMeanMiB+host.RSSFileMeanMiB, peer.CPUPercent+host.CPUPercent)
	}
	b.WriteString("\n")
	if r.Ratios != nil {
		verdict := func(x float64) string {
			if x <= 1 {
				return "meets the goal"
			}
			return "misses the goal"
		}
		fmt.Fprintf(&b, "Ours / vmagent: RSS mean **%.2f×** (%s), RSS peak %.2f×, CPU **%.2f×** (%s).",
			r.Ratios["rss_mean"], verdict(r.Ratios["rss_mean"]), r.Ratios["rss_peak"], r.Ratios["cpu"], verdict(r.Ratios["cpu"]))
		if x, ok := r.Ratios["rss_mean_vs_peer_plus_host"]; ok {
			fmt.Fprintf(&b, " Against vmagent + node_exporter, which together do what our agent does: RSS mean %.2f×, CPU %.2f×.", x, r.Ratios["cpu_vs_peer_plus_host"])
		}
		b.WriteString(" Goal: no more than vmagent.\n\n")
	}
	b.WriteString("Checks (each side did the work):\n\n")
	for _, c := range r.Checks {
		mark := "ok"
		if !c.OK {
			mark = "FAILED"
		}
		fmt.Fprintf(&b, "- %s: %s (%s)\n", c.Name, c.Value, mark)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %d MiB memory, Linux %s, %s; %s. ", r.Machine.CPUs, r.Machine.CPUModel, r.Machine.MemTotalMiB, r.Machine.Kernel, r.Machine.GoVersion, r.Date.UTC().Format("2006-01-02 15:04 MST"))
	var vs []string
	for _, k := range []string{"vmagent", "node_exporter", "clickhouse"} {
		if v, ok := r.Peers[k]; ok {
			vs = append(vs, k+" "+v)
		}
	}
	if len(vs) > 0 {
		fmt.Fprintf(&b, "Peers: %s. ", strings.Join(vs, ", "))
	}
	var measured float64
	for _, f := range m.Footprints {
		measured += f.CPUPercent
	}
	fmt.Fprintf(&b, "During the window the whole machine used %.0f%% of one core (of %d%%), the measured processes %.1f%% of it; load average %s at the start, %s at the end.\n\n",
		m.MachineBusyPercent, 100*r.Machine.CPUs, measured, m.LoadAvgStart, m.LoadAvgEnd)
	fmt.Fprintf(&b, "Command: `%s`", r.Command)
	if r.Revision != "" {
		fmt.Fprintf(&b, " at bureauhub %s", r.Revision)
	}
	b.WriteString(".\n")
	if len(r.Notes) > 0 {
		b.WriteString("\nNotes:\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}
