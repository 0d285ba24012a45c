// Package ingest benchmarks end-to-end ingestion: a generator speaking the
// federation protocol as agents do (TLS, bearer token, pipelined batches)
// pushes node_exporter-like series into a local hub and ClickHouse, and the
// same load goes over remote_write 1.0 to VictoriaMetrics and Prometheus in
// the same run, so that results are ratios against peers measured on the
// same, noisy, machine.
package ingest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/bureauhub/bureauhub/hub/pki"
)

const (
	targetHub  = "bureauhub"
	targetVM   = "victoria-metrics"
	targetProm = "prometheus"
)

// Results is everything a run measured; it is written as ingest.json.
type Results struct {
	Date    string         `json:"date"`
	Machine Machine        `json:"machine"`
	Command string         `json:"command"`
	Load    LoadInfo       `json:"load"`
	Runs    []*Measurement `json:"runs"`
	Storage []Storage      `json:"storage"`
	Skipped []Skip         `json:"skipped,omitempty"`
	// BestHubSetting is the sweep's fastest, used by the main hub run.
	BestHubSetting string `json:"best_hub_setting"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs     int               `json:"cpus"`
	Model    string            `json:"cpu_model"`
	MemBytes int64             `json:"mem_bytes"`
	Kernel   string            `json:"kernel"`
	Versions map[string]string `json:"versions"`
}

// LoadInfo describes the generated load.
type LoadInfo struct {
	Series               int     `json:"series"`
	Hosts                int     `json:"hosts"`
	SeriesPerHost        int     `json:"series_per_host"`
	MetricNames          int     `json:"metric_names"`
	LabelsPerSeries      float64 `json:"labels_per_series"`
	BatchSamples         int     `json:"batch_samples"`
	RawBytesPerSample    float64 `json:"raw_bytes_per_sample"`
	SnappyBytesPerSample float64 `json:"snappy_bytes_per_sample"`
	Streams              int     `json:"streams"`
	Inflight             int     `json:"inflight_per_stream"`
	Senders              int     `json:"remote_write_senders"`
	PeerTLS              bool    `json:"peer_tls"`
	FirstTimestamp       string  `json:"first_timestamp"`
}

// Skip records a target that did not run, and why.
type Skip struct {
	Target string `json:"target"`
	Reason string `json:"reason"`
}

// Storage is a target's on-disk cost of the samples it stored.
type Storage struct {
	Target string `json:"target"`
	// Table is the ClickHouse table measured: samples (raw rows) or
	// chunks (after compaction).
	Table   string `json:"table,omitempty"`
	Method  string `json:"method"`
	Bytes   int64  `json:"bytes"`
	Samples int64  `json:"samples"`
	// BytesPerSample is Bytes/Samples.
	BytesPerSample float64 `json:"bytes_per_sample"`
	// SeriesBytes is the series (index) table's size, for ClickHouse, and
	// SeriesBytesPerSample that amortised over the samples.
	SeriesBytes          int64   `json:"series_bytes,omitempty"`
	SeriesRows           int64   `json:"series_rows,omitempty"`
	SeriesBytesPerSample float64 `json:"series_bytes_per_sample,omitempty"`
	// Columns gives compressed bytes per sample of each samples column.
	Columns map[string]float64 `json:"columns_bytes_per_sample,omitempty"`
	Note    string             `json:"note,omitempty"`
}

type runner struct {
	cfg     *Config
	out     io.Writer
	set     *SeriesSet
	baseMs  int64
	work    string
	logDir  string
	certs   pki.Files
	caPEM   []byte
	token   string
	tokFile string
	hubBin  string
	res     *Results
	runSeq  int
}

// Run runs the benchmark and writes cfg.OutDir/ingest.json and ingest.md;
// progress goes to log, the results table to out.
func Run(ctx context.Context, cfg Config, command string, out, log io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	r := &runner{cfg: &cfg, out: log}
	work := cfg.WorkDir
	if work == "" {
		d, err := os.MkdirTemp("", "ingestbench-")
		if err != nil {
			return err
		}
		work = d
		if !cfg.Keep {
			defer os.RemoveAll(d)
		}
	}
	r.work = work
	r.logDir = filepath.Join(work, "logs")
	if err := os.MkdirAll(r.logDir, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return err
	}
	var err error
	r.certs, err = pki.WriteDemoCerts(work, []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, 24*time.Hour)
	if err != nil {
		return err
	}
	if r.caPEM, err = os.ReadFile(r.certs.CAFile); err != nil {
		return err
	}
	r.token = "ingestbench-token-0123456789abcdef"
	r.tokFile = filepath.Join(work, "bench.token")
	if err := os.WriteFile(r.tokFile, []byte(r.token+"\n"), 0o600); err != nil {
		return err
	}

	// Live data by default: from 30 minutes ago, within the hub's head
	// window, so the hub keeps it in its head as it does what agents send
	// (sent as fast as the targets take it, the data runs hours ahead of
	// the clock, which every target accepts; the hub is told to). With
	// -recent=false: yesterday, UTC, older than any target's "now" however
	// fast it goes, and within one day's partition.
	start := time.Now().UTC().Truncate(24 * time.Hour).Add(-24 * time.Hour).Add(10 * time.Minute)
	if cfg.Recent {
		start = time.Now().UTC().Add(-30 * time.Minute).Truncate(time.Minute)
	}
	r.baseMs = start.UnixMilli()
	r.logf("generating %d series", cfg.Series)
	r.set = NewSeriesSet(cfg.Series)
	r.res = &Results{
		Date:    time.Now().UTC().Format(time.RFC3339),
		Machine: machine(),
		Command: command,
		Load:    r.loadInfo(start),
	}

	if cfg.runs(targetHub) {
		if err := r.hubRuns(ctx); err != nil {
			return err
		}
	}
	if cfg.runs(targetVM) {
		if err := r.peerRun(ctx, targetVM, cfg.VMBinary, r.startVM); err != nil {
			return err
		}
	}
	if cfg.runs(targetProm) {
		if err := r.peerRun(ctx, targetProm, cfg.PromBinary, r.startProm); err != nil {
			return err
		}
	}
	return r.report(out)
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.out, "%s ingestbench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (r *runner) loadInfo(first time.Time) LoadInfo {
	labels := 0
	hosts := 0
	for _, s := range r.set.Series {
		labels += len(s.Labels)
		hosts = max(hosts, s.Host+1)
	}
	info := LoadInfo{
		Series: len(r.set.Series), Hosts: hosts, SeriesPerHost: SeriesPerHost(), MetricNames: MetricNames(),
		LabelsPerSeries: float64(labels) / float64(len(r.set.Series)), BatchSamples: r.cfg.BatchSize,
		Streams: r.cfg.Streams, Inflight: r.cfg.Inflight, Senders: r.cfg.Senders, PeerTLS: r.cfg.PeerTLS,
		FirstTimestamp: first.Format(time.RFC3339),
	}
	// Sizes of the first rounds' batches.
	load := NewLoad(r.set, 1, r.baseMs, 1<<30)
	var raw, comp, n int
	for n < 3*len(r.set.Series) {
		b, _ := load.Partition(0).Next(context.Background(), r.cfg.BatchSize)
		raw += b.RawSize
		comp += len(b.Payload)
		n += b.Samples
	}
	info.RawBytesPerSample = float64(raw) / float64(n)
	info.SnappyBytesPerSample = float64(comp) / float64(n)
	return info
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Versions: map[string]string{"go": runtime.Version()}}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb int64
				fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kb)
				m.MemBytes = kb * 1024
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// binVersion returns the first line bin prints when run with args (if
// any), or else the version of the Debian package pkg: Debian's
// victoria-metrics prints an empty version, and clickhouse-server 18.16 has
// no version flag.
func binVersion(bin, pkg string, args ...string) string {
	if len(args) > 0 {
		out, _ := exec.Command(bin, args...).CombinedOutput()
		if line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n"); line != "" {
			return line
		}
	}
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	return "Debian package " + pkg + " " + strings.TrimSpace(string(out))
}

// moduleRoot finds the bureauhub module from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/bureauhub/bureauhub\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the bureauhub module; pass -hub-binary")
		}
		dir = parent
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
