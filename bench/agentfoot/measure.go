package agentfoot

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Process is a running process whose footprint is measured; *e2e.Process
// implements it.
type Process interface {
	Pid() int
	CPUSeconds() (float64, error)
}

// Subject is one process to measure.
type Subject struct {
	Name string
	Proc Process
	// MetricsURL, if set, is read for go_memstats_heap_inuse_bytes. Both
	// compared agents are read at the same rate, since serving /metrics
	// costs each a little.
	MetricsURL string
}

// Footprint is one subject's use of memory and CPU over the window.
type Footprint struct {
	Name       string  `json:"name"`
	RSSMeanMiB float64 `json:"rss_mean_mib"`
	RSSPeakMiB float64 `json:"rss_peak_mib"`
	RSSEndMiB  float64 `json:"rss_end_mib"`
	RSSSamples int     `json:"rss_samples"`
	// RSSAnonMeanMiB and RSSFileMeanMiB split the mean RSS into anonymous
	// memory (heap, stacks) and mapped files (mostly the binary's code).
	RSSAnonMeanMiB float64 `json:"rss_anon_mean_mib"`
	RSSFileMeanMiB float64 `json:"rss_file_mean_mib"`
	CPUSeconds     float64 `json:"cpu_seconds"`
	// CPUPercent is CPU time over wall time, in percent of one core.
	CPUPercent float64 `json:"cpu_percent_of_one_core"`
	// HeapInuse* are from go_memstats_heap_inuse_bytes; zero when the
	// subject has no MetricsURL.
	HeapInuseMeanMiB float64 `json:"heap_inuse_mean_mib,omitempty"`
	HeapInusePeakMiB float64 `json:"heap_inuse_peak_mib,omitempty"`
	HeapSamples      int     `json:"heap_samples,omitempty"`
}

// Measurement is the result of Measure.
type Measurement struct {
	Start   time.Time `json:"start"`
	Seconds float64   `json:"seconds"`
	// MachineBusyPercent is the CPU time every process on the machine used
	// during the window, in percent of one core (200 is two cores flat
	// out): with the subjects' own share it shows how noisy the machine was.
	MachineBusyPercent float64     `json:"machine_busy_percent_of_one_core"`
	LoadAvgStart       string      `json:"loadavg_start"`
	LoadAvgEnd         string      `json:"loadavg_end"`
	Footprints         []Footprint `json:"footprints"`
}

const mib = 1 << 20

// Measure samples the subjects for window: RSS every rssEvery, Go heap
// every heapEvery, CPU time at the start and the end. It fails if a subject
// exits or ctx ends first.
func Measure(ctx context.Context, subjects []Subject, window, rssEvery, heapEvery time.Duration) (*Measurement, error) {
	type acc struct {
		cpu0            float64
		rssSum, rssPeak float64
		rssLast         float64
		anonSum         float64
		fileSum         float64
		rssN            int
		heapSum, heapPk float64
		heapN           int
	}
	accs := make([]acc, len(subjects))
	for i, s := range subjects {
		c, err := s.Proc.CPUSeconds()
		if err != nil {
			return nil, fmt.Errorf("%s: read cpu: %w", s.Name, err)
		}
		accs[i].cpu0 = c
	}
	busy0, err := machineBusySeconds()
	if err != nil {
		return nil, err
	}
	m := &Measurement{Start: time.Now(), LoadAvgStart: loadAvg()}
	sampleRSS := func() error {
		for i, s := range subjects {
			st, err := readStatus(s.Proc.Pid())
			if err != nil {
				return fmt.Errorf("%s: read rss (did it exit?): %w", s.Name, err)
			}
			v := float64(st["VmRSS"]) / mib
			a := &accs[i]
			a.anonSum += float64(st["RssAnon"]) / mib
			a.fileSum += float64(st["RssFile"]+st["RssShmem"]) / mib
			a.rssSum += v
			a.rssPeak = max(a.rssPeak, v)
			a.rssLast = v
			a.rssN++
		}
		return nil
	}
	sampleHeap := func() error {
		for i, s := range subjects {
			if s.MetricsURL == "" {
				continue
			}
			ms, err := FetchMetrics(ctx, s.MetricsURL)
			if err != nil {
				return fmt.Errorf("%s: %w", s.Name, err)
			}
			v, ok := ms["go_memstats_heap_inuse_bytes"]
			if !ok {
				return fmt.Errorf("%s: no go_memstats_heap_inuse_bytes at %s", s.Name, s.MetricsURL)
			}
			a := &accs[i]
			a.heapSum += v / mib
			a.heapPk = max(a.heapPk, v/mib)
			a.heapN++
		}
		return nil
	}
	if err := sampleRSS(); err != nil {
		return nil, err
	}
	if err := sampleHeap(); err != nil {
		return nil, err
	}
	end := time.NewTimer(window)
	defer end.Stop()
	rssTick := time.NewTicker(rssEvery)
	defer rssTick.Stop()
	heapTick := time.NewTicker(heapEvery)
	defer heapTick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-end.C:
			break loop
		case <-rssTick.C:
			if err := sampleRSS(); err != nil {
				return nil, err
			}
		case <-heapTick.C:
			if err := sampleHeap(); err != nil {
				return nil, err
			}
		}
	}
	if err := sampleRSS(); err != nil {
		return nil, err
	}
	m.Seconds = time.Since(m.Start).Seconds()
	busy1, err := machineBusySeconds()
	if err != nil {
		return nil, err
	}
	m.MachineBusyPercent = (busy1 - busy0) / m.Seconds * 100
	m.LoadAvgEnd = loadAvg()
	for i, s := range subjects {
		c, err := s.Proc.CPUSeconds()
		if err != nil {
			return nil, fmt.Errorf("%s: read cpu: %w", s.Name, err)
		}
		a := accs[i]
		f := Footprint{
			Name: s.Name, RSSMeanMiB: a.rssSum / float64(a.rssN), RSSPeakMiB: a.rssPeak, RSSEndMiB: a.rssLast,
			RSSSamples: a.rssN, RSSAnonMeanMiB: a.anonSum / float64(a.rssN), RSSFileMeanMiB: a.fileSum / float64(a.rssN),
			CPUSeconds: c - a.cpu0, CPUPercent: (c - a.cpu0) / m.Seconds * 100,
		}
		if a.heapN > 0 {
			f.HeapInuseMeanMiB, f.HeapInusePeakMiB, f.HeapSamples = a.heapSum/float64(a.heapN), a.heapPk, a.heapN
		}
		m.Footprints = append(m.Footprints, f)
	}
	return m, nil
}

// readStatus returns the memory sizes in /proc/PID/status, in bytes, by
// field name (VmRSS, RssAnon, RssFile, RssShmem).
func readStatus(pid int) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.HasSuffix(v, " kB") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(v, " kB")), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parse /proc/%d/status %s: %w", pid, k, err)
		}
		out[k] = kb * 1024
	}
	if _, ok := out["VmRSS"]; !ok {
		return nil, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return out, nil
}

// machineBusySeconds is the CPU time all CPUs spent running (user, nice,
// system, irq, softirq; not idle, iowait or time stolen by the hypervisor)
// since boot, from /proc/stat.
func machineBusySeconds() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("unexpected /proc/stat first line %q", line)
	}
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 7 { // steal; guest time is already counted in user
			break
		}
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc/stat: %w", err)
		}
		busy += n
	}
	return busy / 100, nil // USER_HZ is 100 on Linux
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
