package alertbench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/bureauhub/bureauhub/bench/benchenv"
	"github.com/bureauhub/bureauhub/e2e"
)

// Names of the systems compared, as used in alerting.json and the
// webhook paths.
const (
	sysHub  = "bureauhub"
	sysProm = "prometheus" // Prometheus + Alertmanager in the latency phase
	sysAM   = "alertmanager"
)

// noProxy never sends loopback requests through HTTP_PROXY.
var noProxy = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8}, Timeout: time.Minute}

// server is a process of ours answering HTTP on base.
type server struct {
	proc *e2e.Process
	base string
}

func (s *server) stop() error {
	if s == nil || s.proc == nil {
		return nil
	}
	return s.proc.Stop(30 * time.Second)
}

// start runs bin and waits until readyPath answers 200.
func (r *runner) start(ctx context.Context, name, bin string, args []string, port int, readyPath string) (*server, error) {
	p, err := e2e.Start(name, bin, args, r.logDir)
	if err != nil {
		return nil, err
	}
	s := &server{proc: p, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	r.procs = append(r.procs, s)
	if err := benchenv.WaitReady(ctx, s.base+readyPath, p, 2*time.Minute); err != nil {
		return nil, err
	}
	return s, nil
}

func freePorts(n int) ([]int, error) {
	out := make([]int, n)
	for i := range out {
		p, err := e2e.FreePort()
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

func (r *runner) writeFile(name, content string) (string, error) {
	p := filepath.Join(r.work, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	return p, os.WriteFile(p, []byte(content), 0o644)
}

// hubSpec is what differs between the hubs of the two phases.
type hubSpec struct {
	name     string
	database string
	tls      bool
	// rules is the YAML of the rules section; empty for none.
	rules   string
	policy  string // the alerting policy (Alertmanager's format)
	tenants []string
}

// startHub writes a config for the hub on the run's ClickHouse and starts
// it; the hub's other settings are its defaults.
func (r *runner) startHub(ctx context.Context, h hubSpec) (*server, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	policy, err := r.writeFile(h.name+"/policy.yml", h.policy)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "grpc_listen_address: 127.0.0.1:%d\nhttp_listen_address: 127.0.0.1:%d\n", ports[0], ports[1])
	if h.tls {
		fmt.Fprintf(&b, "tls: {cert_file: %q, key_file: %q}\n", r.certs.CertFile, r.certs.KeyFile)
	} else {
		b.WriteString("insecure_plaintext: true\n")
	}
	fmt.Fprintf(&b, "clickhouse: {addr: [%q], database: %s}\n", r.ch.Addr(), h.database)
	b.WriteString(h.rules)
	fmt.Fprintf(&b, "alerting: {config_file: %q, data_dir: %q}\n", policy, filepath.Join(r.work, h.name, "alerting"))
	b.WriteString("tenants:\n")
	for _, t := range h.tenants {
		fmt.Fprintf(&b, "  - {name: %s, token: %q, role: bureau}\n", t, tokenOf(t))
	}
	cfg, err := r.writeFile(h.name+"/hub.yml", b.String())
	if err != nil {
		return nil, err
	}
	s, err := r.start(ctx, h.name, r.hubBin, []string{"-config.file", cfg, "-log.level", "warn"}, ports[1], "/-/healthy")
	if err != nil {
		return nil, err
	}
	r.hubGRPC = fmt.Sprintf("127.0.0.1:%d", ports[0])
	return s, nil
}

func tokenOf(tenant string) string { return "alertbench-token-" + tenant }

// startAgent starts an agent of tenant shipping to the hub at hubAddr
// over TLS with the tenant's token; scrape is its Prometheus-syntax
// global and scrape_configs sections.
func (r *runner) startAgent(ctx context.Context, name, tenant, hubAddr, scrape string) (*server, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	tokenFile, err := r.writeFile(name+"/token", tokenOf(tenant)+"\n")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(tokenFile, 0o600); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`identity: {bureau: %s, cloud: local, cluster: bench, instance: %s}
http_listen_address: 127.0.0.1:%d
buffer: {dir: %q}
hub:
  addresses: [%q]
  token_file: %q
  tls: {ca_file: %q, server_name: localhost}
host_metrics: {enabled: false}
%s`, tenant, name, ports[0], filepath.Join(r.work, name, "buffer"), hubAddr, tokenFile, r.certs.CAFile, scrape)
	path, err := r.writeFile(name+"/agent.yml", cfg)
	if err != nil {
		return nil, err
	}
	return r.start(ctx, name, r.agentBin, []string{"-config.file", path, "-log.level", "warn"}, ports[0], "/-/healthy")
}

// startPrometheus starts Prometheus with config (a prometheus.yml) and
// extra flags.
func (r *runner) startPrometheus(ctx context.Context, name, config string, flags ...string) (*server, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	path, err := r.writeFile(name+"/prometheus.yml", config)
	if err != nil {
		return nil, err
	}
	args := append([]string{
		"--config.file=" + path,
		"--storage.tsdb.path=" + filepath.Join(r.work, name, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", ports[0]),
		"--log.level=warn",
	}, flags...)
	return r.start(ctx, name, r.cfg.PrometheusBinary, args, ports[0], "/-/ready")
}

// startAlertmanager starts Alertmanager with policy, clustering off (one
// instance, as the hub's alerting: no gossip settle wait before the first
// notification).
func (r *runner) startAlertmanager(ctx context.Context, name, policy string) (*server, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	path, err := r.writeFile(name+"/alertmanager.yml", policy)
	if err != nil {
		return nil, err
	}
	args := []string{
		"--config.file=" + path,
		"--storage.path=" + filepath.Join(r.work, name, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", ports[0]),
		"--cluster.listen-address=",
		"--log.level=warn",
	}
	return r.start(ctx, name, r.cfg.AlertmanagerBinary, args, ports[0], "/-/ready")
}

// binVersion is the first line a binary prints for --version.
func binVersion(bin string) string {
	out, _ := exec.Command(bin, "--version").CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
