package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/bureauhub/bureauhub/e2e"
)

// peer is a started VictoriaMetrics or Prometheus.
type peer struct {
	proc     *e2e.Process
	base     string // scheme://127.0.0.1:port
	write    string // remote_write URL
	dataDir  string
	version  string
	counters []string // metrics that count stored samples
	extra    []string // other metrics to report
}

type startPeer func(ctx context.Context, bin, dir string) (*peer, error)

func (r *runner) skip(target, reason string) {
	r.logf("%s: skipped: %s", target, reason)
	r.res.Skipped = append(r.res.Skipped, Skip{Target: target, Reason: reason})
}

func (r *runner) peerClient() *http.Client {
	tr := &http.Transport{Proxy: nil}
	if r.cfg.PeerTLS {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(r.caPEM)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func (r *runner) scheme() string {
	if r.cfg.PeerTLS {
		return "https"
	}
	return "http"
}

// peerRun measures one peer fed over remote_write, then its disk usage.
func (r *runner) peerRun(ctx context.Context, target, bin string, start startPeer) error {
	if bin == "" {
		r.skip(target, "no binary given")
		return nil
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		r.skip(target, fmt.Sprintf("%v (install Debian's %s package)", err, target))
		return nil
	}
	dir := filepath.Join(r.work, target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	defer func() {
		if !r.cfg.Keep {
			os.RemoveAll(dir)
		}
	}()
	r.logf("%s: starting %s", target, path)
	p, err := start(ctx, path, dir)
	if err != nil {
		return fmt.Errorf("start %s: %w", target, err)
	}
	stopped := false
	defer func() {
		if !stopped {
			p.proc.Kill()
		}
	}()
	hc := r.peerClient()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = waitHTTP(wctx, hc, p.base+readyPath(target), p.proc)
	cancel()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", target, err, tail(p.proc.Log(), 20))
	}
	if p.version != "" {
		r.res.Machine.Versions[target] = p.version
	}
	rw := &remoteWriteSender{url: p.write, senders: r.cfg.Senders, batchSize: r.cfg.BatchSize, timeout: r.cfg.Drain}
	if r.cfg.PeerTLS {
		rw.caPEM = r.caPEM
	}
	tlsNote := "plain HTTP"
	if r.cfg.PeerTLS {
		tlsNote = "TLS"
	}
	setting := fmt.Sprintf("%s, remote_write 1.0, %d senders x 1 in flight", tlsNote, r.cfg.Senders)
	m, err := r.measure(ctx, Measurement{Target: target, Setting: setting, Role: "main"},
		[]namedPID{{target, p.proc.Pid()}}, r.cfg.Senders, rw.run, window{warmup: r.cfg.Warmup, duration: r.cfg.Duration})
	if err != nil {
		return err
	}
	m.Metrics = scrapeMetrics(p.base+"/metrics", hc, append(p.counters, p.extra...)...)
	if len(p.counters) > 0 {
		m.StoredSamples = 0
		for _, c := range p.counters {
			m.StoredSamples += int64(m.Metrics[c])
		}
	}
	// Compact as OPTIMIZE FINAL does for ClickHouse, so that every store is
	// measured with its data merged.
	var extra []Storage
	dirNote := ""
	switch target {
	case targetVM:
		if err := vmForceMerge(ctx, hc, p.base); err != nil {
			m.Notes = append(m.Notes, "force merge: "+err.Error())
		} else {
			dirNote = "after /internal/force_flush and /internal/force_merge"
		}
	case targetProm:
		st, err := promSnapshot(ctx, hc, p.base, p.dataDir)
		if err != nil {
			m.Notes = append(m.Notes, "snapshot: "+err.Error())
		} else {
			extra = append(extra, st)
		}
	}
	stopped = true
	if err := p.proc.Stop(90 * time.Second); err != nil {
		m.Notes = append(m.Notes, "stop: "+err.Error())
	}
	r.res.Runs = append(r.res.Runs, m)
	r.logf("%s: %.0f samples/s; %.2f CPU s/s, peak RSS %s", target, m.SamplesPerSecond, m.TargetCPU, mib(m.PeakRSSBytes))

	size, err := dirBytes(p.dataDir)
	if err != nil {
		return err
	}
	snaps, _ := dirBytes(filepath.Join(p.dataDir, "snapshots"))
	size -= snaps
	st := Storage{Target: target, Method: "data directory after a clean stop", Bytes: size, Samples: m.AckedSamples, Note: dirNote}
	if m.AckedSamples > 0 {
		st.BytesPerSample = float64(size) / float64(m.AckedSamples)
	}
	if target == targetProm {
		st.Note = promDirNote(p.dataDir)
	}
	r.res.Storage = append(r.res.Storage, st)
	r.res.Storage = append(r.res.Storage, extra...)
	return nil
}

// vmForceMerge flushes VictoriaMetrics' in-memory parts and merges each
// partition into as few parts as it can, waiting for the merge to end.
func vmForceMerge(ctx context.Context, hc *http.Client, base string) error {
	for _, path := range []string{"/internal/force_flush", "/internal/force_merge"} {
		resp, err := hc.Get(base + path)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s: http %d", path, resp.StatusCode)
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		if scrapeMetrics(base+"/metrics", hc, "vm_active_force_merges")["vm_active_force_merges"] == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("force merge still running after 5m")
		}
	}
}

// promSnapshot asks Prometheus to write its head as a block (the snapshot
// API compacts it as a 2h compaction would) and measures that block.
func promSnapshot(ctx context.Context, hc *http.Client, base, data string) (Storage, error) {
	st := Storage{Target: targetProm, Method: "TSDB blocks written by the snapshot API (head compacted)"}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/admin/tsdb/snapshot", nil)
	if err != nil {
		return st, err
	}
	client := *hc
	client.Timeout = 5 * time.Minute
	resp, err := client.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Data   struct {
			Name string `json:"name"`
		} `json:"data"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return st, err
	}
	if body.Status != "success" {
		return st, fmt.Errorf("http %d: %s", resp.StatusCode, body.Error)
	}
	bytes, samples, blocks := promBlocks(filepath.Join(data, "snapshots", body.Data.Name))
	if samples == 0 {
		return st, errors.New("snapshot holds no samples")
	}
	st.Bytes, st.Samples, st.BytesPerSample = bytes, samples, float64(bytes)/float64(samples)
	st.Note = fmt.Sprintf("%d block(s), index included", blocks)
	return st, nil
}

// promBlocks sums the sizes and sample counts of the TSDB blocks in dir.
func promBlocks(dir string) (bytes, samples int64, blocks int) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, 0
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "meta.json"))
		if err != nil {
			continue
		}
		var meta struct {
			Stats struct {
				NumSamples int64 `json:"numSamples"`
			} `json:"stats"`
		}
		if json.Unmarshal(b, &meta) != nil {
			continue
		}
		size, _ := dirBytes(filepath.Join(dir, e.Name()))
		blocks++
		bytes += size
		samples += meta.Stats.NumSamples
	}
	return bytes, samples, blocks
}

func readyPath(target string) string {
	if target == targetVM {
		return "/health"
	}
	return "/-/ready"
}

func (r *runner) startVM(_ context.Context, bin, dir string) (*peer, error) {
	port, err := e2e.FreePort()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	args := []string{
		"-storageDataPath=" + data,
		fmt.Sprintf("-httpListenAddr=127.0.0.1:%d", port),
		"-retentionPeriod=1y",
		"-loggerLevel=WARN",
	}
	if r.cfg.PeerTLS {
		args = append(args, "-tls", "-tlsCertFile="+r.certs.CertFile, "-tlsKeyFile="+r.certs.KeyFile)
	}
	proc, err := e2e.Start(targetVM, bin, args, r.logDir)
	if err != nil {
		return nil, err
	}
	base := fmt.Sprintf("%s://127.0.0.1:%d", r.scheme(), port)
	return &peer{
		proc: proc, base: base, write: base + "/api/v1/write", dataDir: data,
		version:  binVersion(bin, "victoria-metrics", "-version"),
		counters: []string{"vm_rows_added_to_storage_total"},
		extra:    []string{"vm_rows_inserted_total", "vm_rows_ignored_total"},
	}, nil
}

func (r *runner) startProm(_ context.Context, bin, dir string) (*peer, error) {
	port, err := e2e.FreePort()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global:\n  scrape_interval: 15s\n"), 0o644); err != nil {
		return nil, err
	}
	args := []string{
		"--config.file=" + cfg,
		"--storage.tsdb.path=" + data,
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
		"--web.enable-remote-write-receiver",
		"--web.enable-admin-api", // for the snapshot that compacts the head
		"--log.level=warn",
	}
	if r.cfg.PeerTLS {
		web := filepath.Join(dir, "web.yml")
		body := fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\n", r.certs.CertFile, r.certs.KeyFile)
		if err := os.WriteFile(web, []byte(body), 0o644); err != nil {
			return nil, err
		}
		args = append(args, "--web.config.file="+web)
	}
	proc, err := e2e.Start(targetProm, bin, args, r.logDir)
	if err != nil {
		return nil, err
	}
	base := fmt.Sprintf("%s://127.0.0.1:%d", r.scheme(), port)
	return &peer{
		proc: proc, base: base, write: base + "/api/v1/write", dataDir: data,
		version:  binVersion(bin, "prometheus", "--version"),
		counters: []string{"prometheus_tsdb_head_samples_appended_total"},
		extra: []string{"prometheus_tsdb_out_of_order_samples_total", "prometheus_tsdb_out_of_bound_samples_total",
			"prometheus_tsdb_too_old_samples_total", "prometheus_tsdb_compactions_total", "prometheus_tsdb_head_series"},
	}, nil
}

// promDirNote describes what the data directory holds: the write-ahead
// log, head chunks and any block compacted during the run.
func promDirNote(data string) string {
	wal, _ := dirBytes(filepath.Join(data, "wal"))
	head, _ := dirBytes(filepath.Join(data, "chunks_head"))
	note := fmt.Sprintf("wal %s, chunks_head %s", mib(wal), mib(head))
	if bytes, samples, blocks := promBlocks(data); blocks > 0 {
		note += fmt.Sprintf("; %d block(s) compacted during the run: %s, %d samples", blocks, mib(bytes), samples)
	} else {
		note += "; no block compacted during the run (the head spans under 3h of sample time)"
	}
	return note
}

// waitHTTP polls url until it answers 200, p exits or ctx ends.
func waitHTTP(ctx context.Context, hc *http.Client, url string, p *e2e.Process) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.Exited() {
			return fmt.Errorf("exited before %s answered", url)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last error: %v)", url, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
