package querybench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/bureauhub/bureauhub/bench/benchenv"
	"github.com/bureauhub/bureauhub/e2e"
)

// Names of the systems compared, as used in query.json.
const (
	sysHub  = "bureauhub"
	sysProm = "prometheus"
	sysVM   = "victoriametrics"
)

// target is a running system answering the Prometheus query API.
type target struct {
	name  string
	base  string // http://127.0.0.1:port
	token string // bearer token; empty for the peers
	// procs are the processes whose CPU time a query costs (the hub and
	// ClickHouse for bureauhub).
	procs []namedPID
	proc  *e2e.Process
}

type namedPID struct {
	name string
	pid  int
}

// cpuSeconds reads the user+system CPU time of each of t's processes.
func (t *target) cpuSeconds() []float64 {
	out := make([]float64, len(t.procs))
	for i, p := range t.procs {
		out[i], _ = e2e.ProcCPUSeconds(p.pid)
	}
	return out
}

func (t *target) stop() error {
	if t.proc == nil {
		return nil
	}
	return t.proc.Stop(60 * time.Second)
}

// hubOptions are what differs between the hub's rule run and query run.
type hubOptions struct {
	name string
	// rules is the YAML of the rules section; empty for none.
	rules string
}

// startHub writes a config for the hub on r's ClickHouse with the bench's
// tenants (one per bureau, plus a cross-bureau reader) and starts it.
func (r *runner) startHub(ctx context.Context, o hubOptions) (*target, error) {
	grpcPort, err := e2e.FreePort()
	if err != nil {
		return nil, err
	}
	httpPort, err := e2e.FreePort()
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "grpc_listen_address: 127.0.0.1:%d\nhttp_listen_address: 127.0.0.1:%d\ninsecure_plaintext: true\n", grpcPort, httpPort)
	fmt.Fprintf(&b, "clickhouse: {addr: [%q], database: %s}\n", r.ch.Addr(), hubDB)
	b.WriteString(o.rules)
	if r.cfg.HubConfigExtra != "" {
		b.WriteString(strings.TrimSpace(r.cfg.HubConfigExtra) + "\n")
	}
	b.WriteString("tenants:\n")
	for _, bu := range bureaus {
		fmt.Fprintf(&b, "  - {name: %s, token: %q, role: bureau}\n", bu.name, tokenOf(bu.name))
	}
	fmt.Fprintf(&b, "  - {name: %s, token: %q, role: cross_bureau}\n", readerTenant, tokenOf(readerTenant))
	path := filepath.Join(r.work, o.name+".yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	p, err := e2e.Start(o.name, r.hubBin, []string{"-config.file", path, "-log.level", "warn"}, r.logDir)
	if err != nil {
		return nil, err
	}
	t := &target{name: sysHub, base: fmt.Sprintf("http://127.0.0.1:%d", httpPort), token: tokenOf(readerTenant),
		procs: []namedPID{{"hub", p.Pid()}, {"clickhouse", r.chPID}}, proc: p}
	if err := benchenv.WaitReady(ctx, t.base+"/-/healthy", p, 2*time.Minute); err != nil {
		p.Kill()
		return nil, err
	}
	refill, err := waitHead(ctx, t.base, len(bureaus)+1, 5*time.Minute)
	if err != nil {
		p.Kill()
		return nil, err
	}
	if refill != nil {
		refill.Hub = o.name
		r.res.HeadRefills = append(r.res.HeadRefills, *refill)
		r.logf("%s: head refilled from ClickHouse, %.0f samples in %.1f s", o.name, refill.Samples, refill.Seconds)
	}
	return t, nil
}

// waitHead waits until the hub's head, if it has one, holds every
// tenant's window: it is refilled from ClickHouse at start, and reads go
// to ClickHouse until then. It returns what the refill took, nil for a hub
// without a head.
func waitHead(ctx context.Context, base string, tenants int, timeout time.Duration) (*HeadRefill, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
		resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
		if err != nil {
			return nil, fmt.Errorf("wait for the hub's head: %w", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("wait for the hub's head: %w", err)
		}
		if !bytes.Contains(body, []byte("\nbureauhub_head_appended_samples_total ")) {
			return nil, nil
		}
		if bytes.Count(body, []byte("\nbureauhub_head_covered_from_timestamp_seconds{")) >= tenants {
			parser := expfmt.NewTextParser(model.UTF8Validation)
			fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
			if err != nil {
				return nil, fmt.Errorf("the hub's /metrics: %w", err)
			}
			value := func(name string) float64 {
				if f := fams[name]; f != nil && len(f.GetMetric()) == 1 {
					m := f.GetMetric()[0]
					return m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
				return 0
			}
			return &HeadRefill{Seconds: value("bureauhub_head_refill_duration_seconds"),
				Samples: value("bureauhub_head_refilled_samples_total")}, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the hub's head was not refilled: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// readerTenant is the cross-bureau tenant whose token the queries use.
const readerTenant = "data"

func tokenOf(tenant string) string { return "querybench-token-" + tenant }

// startProm starts Prometheus on the blocks promtool wrote. The largest
// block range is 18h, what promtool wrote, so that Prometheus does not
// compact the blocks while it is measured.
func (r *runner) startProm(ctx context.Context, name string, ruleFiles []string) (*target, error) {
	port, err := e2e.FreePort()
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf("global:\n  evaluation_interval: %s\n", r.cfg.EvaluationInterval)
	if len(ruleFiles) > 0 {
		cfg += "rule_files:\n"
		for _, f := range ruleFiles {
			cfg += fmt.Sprintf("  - %q\n", f)
		}
	}
	cfgPath := filepath.Join(r.work, name+".yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	args := []string{
		"--config.file=" + cfgPath,
		"--storage.tsdb.path=" + r.promData,
		"--storage.tsdb.retention.time=3650d",
		"--storage.tsdb.max-block-duration=18h",
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
		"--log.level=warn",
	}
	p, err := e2e.Start(name, r.cfg.PrometheusBinary, args, r.logDir)
	if err != nil {
		return nil, err
	}
	t := &target{name: sysProm, base: fmt.Sprintf("http://127.0.0.1:%d", port), procs: []namedPID{{"prometheus", p.Pid()}}, proc: p}
	if err := benchenv.WaitReady(ctx, t.base+"/-/ready", p, 5*time.Minute); err != nil {
		p.Kill()
		return nil, err
	}
	return t, nil
}

// startVM starts VictoriaMetrics with its response cache off, so that a
// repeated query is computed again as it is by the others.
func (r *runner) startVM(ctx context.Context) (*target, error) {
	port, err := e2e.FreePort()
	if err != nil {
		return nil, err
	}
	args := []string{
		"-storageDataPath=" + r.vmData,
		fmt.Sprintf("-httpListenAddr=127.0.0.1:%d", port),
		"-retentionPeriod=10y",
		"-search.disableCache",
		"-loggerLevel=WARN",
	}
	p, err := e2e.Start("victoria-metrics", r.cfg.VMBinary, args, r.logDir)
	if err != nil {
		return nil, err
	}
	t := &target{name: sysVM, base: fmt.Sprintf("http://127.0.0.1:%d", port), procs: []namedPID{{"victoria-metrics", p.Pid()}}, proc: p}
	if err := benchenv.WaitReady(ctx, t.base+"/health", p, 2*time.Minute); err != nil {
		p.Kill()
		return nil, err
	}
	return t, nil
}

// vmSettle flushes VictoriaMetrics' in-memory parts and merges each
// partition, waiting for the merge to end, as OPTIMIZE FINAL does for
// ClickHouse.
func vmSettle(ctx context.Context, base string) error {
	for _, path := range []string{"/internal/force_flush", "/internal/force_merge"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		resp, err := noProxy.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s: http %d", path, resp.StatusCode)
		}
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		m, err := scrape(ctx, base+"/metrics", "")
		if err != nil {
			return err
		}
		if m.sum("vm_active_force_merges") == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("force merge still running after 10m")
		}
	}
}

// binVersion is the first line a binary prints for args, or else its
// Debian package's version.
func binVersion(bin, pkg string, args ...string) string {
	if len(args) > 0 {
		out, _ := exec.Command(bin, args...).CombinedOutput()
		if line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n"); line != "" && !strings.Contains(line, "nknown") {
			return line
		}
	}
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	return "Debian package " + pkg + " " + strings.TrimSpace(string(out))
}
