package ingest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"time"

	"github.com/bureauhub/bureauhub/e2e"
)

// ProcStats is one server process's cost over the measurement window.
type ProcStats struct {
	Name string `json:"name"`
	// CPU is CPU seconds per second of the window (1.0 is one core busy).
	CPU float64 `json:"cpu_seconds_per_second"`
	// PeakRSSBytes is the process's VmHWM at the end of the run.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
}

// Measurement is one target's run under the load.
type Measurement struct {
	Target  string `json:"target"`
	Setting string `json:"setting"`
	Role    string `json:"role"` // "main" or "sweep"

	WarmupSeconds   float64 `json:"warmup_seconds"`
	DurationSeconds float64 `json:"duration_seconds"`
	// SamplesPerSecond counts samples acknowledged as stored within the
	// window, per second.
	SamplesPerSecond float64 `json:"samples_per_second"`
	// PerSecondMin/Median/Max are over the window's whole seconds.
	PerSecondMin    float64 `json:"per_second_min"`
	PerSecondMedian float64 `json:"per_second_median"`
	PerSecondMax    float64 `json:"per_second_max"`
	AckP50Millis    float64 `json:"ack_latency_p50_ms"`
	AckP99Millis    float64 `json:"ack_latency_p99_ms"`

	SentSamples     int64          `json:"sent_samples"`
	AckedSamples    int64          `json:"acked_samples"`
	RejectedSamples int64          `json:"rejected_samples"`
	FailedBatches   int64          `json:"failed_batches"`
	Errors          map[string]int `json:"errors,omitempty"`
	// StoredSamples is what the target says it stored (hub: rows in
	// ClickHouse; peers: their own counters); -1 if unknown.
	StoredSamples int64 `json:"stored_samples"`
	// Rounds is the scrape rounds every series completed.
	Rounds int `json:"rounds"`

	Processes []ProcStats `json:"processes"`
	// TargetCPU sums the processes' CPU seconds per second.
	TargetCPU float64 `json:"target_cpu_seconds_per_second"`
	// SamplesPerCPUSecond is SamplesPerSecond / TargetCPU.
	SamplesPerCPUSecond float64 `json:"samples_per_target_cpu_second"`
	PeakRSSBytes        int64   `json:"peak_rss_bytes"`
	// ClientCPU is this program's CPU (load generation, TLS, protocol).
	ClientCPU float64 `json:"client_cpu_seconds_per_second"`
	// OtherCPU is what every other process on the machine used: the noise
	// the target competed with.
	OtherCPU float64 `json:"other_cpu_seconds_per_second"`

	Metrics map[string]float64 `json:"metrics,omitempty"`
	Notes   []string           `json:"notes,omitempty"`
}

type namedPID struct {
	name string
	pid  int
}

type sendFunc func(ctx context.Context, load *Load, m *meter)

type window struct {
	warmup, duration time.Duration
	// perf, if set, records pid perf.pid over the window into perf.out.
	perfPID int
	perfOut string
}

// measure runs send under the load until the window ends, then stops the
// load and waits for the senders to finish their outstanding batches.
func (r *runner) measure(ctx context.Context, m0 Measurement, procs []namedPID, parts int, send sendFunc, w window) (*Measurement, error) {
	res := m0
	res.WarmupSeconds, res.DurationSeconds, res.StoredSamples = w.warmup.Seconds(), w.duration.Seconds(), -1
	load := NewLoad(r.set, parts, r.baseMs, r.cfg.MaxSkew)
	t0 := time.Now()
	m := newMeter(t0, w.warmup, w.duration)
	genCtx, stopGen := context.WithCancel(ctx)
	defer stopGen()
	done := make(chan struct{})
	go func() {
		send(genCtx, load, m)
		close(done)
	}()

	sleepUntil := func(t time.Time) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(t)):
			return nil
		}
	}
	if err := sleepUntil(m.from); err != nil {
		return nil, err
	}
	cpu0, err := cpuSnapshot(procs)
	if err != nil {
		return nil, err
	}
	self0 := selfCPU()
	busy0, _ := machineBusySeconds()
	var perf *exec.Cmd
	if w.perfPID != 0 {
		perf = exec.Command("perf", "record", "-F", "499", "-g", "-p", fmt.Sprint(w.perfPID), "-o", w.perfOut,
			"--", "sleep", fmt.Sprint(int(w.duration.Seconds())))
		perf.Stdout, perf.Stderr = os.Stderr, os.Stderr
		if err := perf.Start(); err != nil {
			res.Notes = append(res.Notes, "perf record: "+err.Error())
			perf = nil
		}
	}
	if err := sleepUntil(m.to); err != nil {
		return nil, err
	}
	cpu1, err := cpuSnapshot(procs)
	if err != nil {
		return nil, err
	}
	self1 := selfCPU()
	busy1, _ := machineBusySeconds()
	load.Stop()
	stopGen()
	<-done
	if perf != nil {
		if err := perf.Wait(); err != nil {
			res.Notes = append(res.Notes, "perf record: "+err.Error())
		}
	}

	secs := w.duration.Seconds()
	res.SamplesPerSecond = float64(m.inWindow.Load()) / secs
	per := m.windowSeconds()
	if len(per) > 0 {
		sorted := slices.Clone(per)
		slices.Sort(sorted)
		res.PerSecondMin, res.PerSecondMax = float64(sorted[0]), float64(sorted[len(sorted)-1])
		res.PerSecondMedian = float64(sorted[len(sorted)/2])
	}
	m.mu.Lock()
	lat := slices.Clone(m.latency)
	res.Errors = m.errors
	m.mu.Unlock()
	if len(lat) > 0 {
		slices.Sort(lat)
		res.AckP50Millis = float64(lat[len(lat)/2]) / 1e6
		res.AckP99Millis = float64(lat[len(lat)*99/100]) / 1e6
	}
	res.SentSamples, res.AckedSamples = m.sent.Load(), m.total.Load()
	res.RejectedSamples, res.FailedBatches = m.rejected.Load(), m.failed.Load()
	res.Rounds = load.Rounds()
	res.ClientCPU = (self1 - self0) / secs
	for i, p := range procs {
		ps := ProcStats{Name: p.name, CPU: (cpu1[i] - cpu0[i]) / secs}
		if hwm, err := e2e.ProcStatusBytes(p.pid, "VmHWM"); err == nil {
			ps.PeakRSSBytes = hwm
		}
		res.Processes = append(res.Processes, ps)
		res.TargetCPU += ps.CPU
		res.PeakRSSBytes += ps.PeakRSSBytes
	}
	res.OtherCPU = max(0, (busy1-busy0)/secs-res.TargetCPU-res.ClientCPU)
	if res.TargetCPU > 0 {
		res.SamplesPerCPUSecond = res.SamplesPerSecond / res.TargetCPU
	}
	return &res, nil
}

func cpuSnapshot(procs []namedPID) ([]float64, error) {
	out := make([]float64, len(procs))
	for i, p := range procs {
		s, err := e2e.ProcCPUSeconds(p.pid)
		if err != nil {
			return nil, fmt.Errorf("cpu of %s (pid %d): %w", p.name, p.pid, err)
		}
		out[i] = s
	}
	return out, nil
}

func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}
