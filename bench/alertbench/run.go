package alertbench

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/bureauhub/bureauhub/bench/benchenv"

	"github.com/bureauhub/bureauhub/e2e"
	"github.com/bureauhub/bureauhub/hub/pki"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chserver"
)

// Results is what alerting.json holds.
type Results struct {
	Date       time.Time          `json:"date"`
	Command    string             `json:"command"`
	Machine    Machine            `json:"machine"`
	Versions   map[string]string  `json:"versions"`
	Latency    *LatencyResults    `json:"latency,omitempty"`
	Throughput *ThroughputResults `json:"throughput,omitempty"`
	// Skipped says which system or phase did not run, and why.
	Skipped map[string]string `json:"skipped,omitempty"`
	Notes   []string          `json:"notes,omitempty"`
	Short   bool              `json:"short,omitempty"`
	Seconds float64           `json:"seconds"`
}

// Machine describes where the run happened.
type Machine = benchenv.Machine

type runner struct {
	cfg      Config
	res      *Results
	log      io.Writer
	work     string
	logDir   string
	hubBin   string
	agentBin string
	certs    pki.Files
	ch       *chserver.Server
	hubGRPC  string // the gRPC address of the hub started last
	baseline bool   // Prometheus and Alertmanager available
	// procs are every process started, stopped at the end whatever
	// happens.
	procs []*server
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "alertbench: "+format+"\n", args...)
}

func (r *runner) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.logf("note: %s", msg)
	r.res.Notes = append(r.res.Notes, msg)
}

func (r *runner) skip(what, reason string) {
	r.logf("%s: skipped: %s", what, reason)
	r.res.Skipped[what] = reason
}

// stopAll stops the processes started since index from, newest first.
func (r *runner) stopAll(from int) {
	for i := len(r.procs) - 1; i >= from; i-- {
		if err := r.procs[i].stop(); err != nil {
			r.logf("stop %s: %v", r.procs[i].proc.Name, err)
		}
	}
	r.procs = r.procs[:from]
}

// Run runs the benchmark and writes alerting.md and alerting.json to
// cfg.OutDir; progress goes to log. Every process it starts is stopped
// before it returns, also when ctx ends.
func Run(ctx context.Context, cfg Config, log io.Writer) (err error) {
	if cfg.RenderFrom != "" {
		return benchenv.Rerender(cfg.RenderFrom, filepath.Join(cfg.OutDir, "alerting.md"), Markdown, log)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.Command == "" {
		cfg.Command = strings.Join(os.Args, " ")
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return err
	}
	work, err := benchenv.WorkDir(cfg.WorkDir, "alertbench")
	if err != nil {
		return err
	}
	began := time.Now()
	r := &runner{cfg: cfg, log: log, work: work, logDir: filepath.Join(work, "logs"),
		res: &Results{Date: began.UTC(), Command: cfg.Command, Versions: map[string]string{}, Skipped: map[string]string{}, Short: cfg.Short}}
	r.res.Machine = benchenv.ReadMachine()
	defer func() {
		switch {
		case cfg.Keep:
			r.logf("kept %s", work)
		case err != nil:
			r.logf("the run failed; logs and configs kept in %s", work)
		default:
			if rmErr := os.RemoveAll(work); rmErr != nil {
				r.logf("remove %s: %v", work, rmErr)
			}
		}
	}()
	if err := os.MkdirAll(r.logDir, 0o755); err != nil {
		return err
	}
	defer r.stopAll(0)

	root, rootErr := benchenv.ModuleRoot()
	if rootErr == nil {
		r.res.Versions[sysHub] = benchenv.GitDescribe(root)
	}
	r.hubBin, r.agentBin = cfg.HubBinary, cfg.AgentBinary
	if r.hubBin == "" || r.agentBin == "" {
		if rootErr != nil {
			return fmt.Errorf("-hub-binary, -agent-binary: %w", rootErr)
		}
		dir := filepath.Join(work, "bin")
		r.logf("building cmd/hub and cmd/agent into %s", dir)
		if err := e2e.Build(root, dir, "hub", "agent"); err != nil {
			return err
		}
		r.hubBin, r.agentBin = filepath.Join(dir, "hub"), filepath.Join(dir, "agent")
	}
	r.findBaseline()
	r.res.Versions["go"] = runtime.Version()

	if err := os.MkdirAll(filepath.Join(work, "pki"), 0o700); err != nil {
		return err
	}
	if r.certs, err = pki.WriteDemoCerts(filepath.Join(work, "pki"), []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, 24*time.Hour); err != nil {
		return err
	}
	chLog, err := os.Create(filepath.Join(r.logDir, "clickhouse.out"))
	if err != nil {
		return err
	}
	defer chLog.Close()
	r.logf("starting clickhouse-server")
	if r.ch, err = chserver.Start(ctx, chserver.Options{Dir: filepath.Join(work, "clickhouse"), Binary: cfg.ClickHouseBinary, Log: chLog}); err != nil {
		return err
	}
	defer func() {
		if stopErr := r.ch.Stop(); stopErr != nil {
			r.logf("clickhouse stop: %v", stopErr)
		}
	}()
	if v, err := r.ch.Query(ctx, "SELECT version()"); err == nil {
		r.res.Versions["clickhouse"] = "ClickHouse " + strings.TrimSpace(v)
	}

	if cfg.SkipLatency {
		r.skip("latency", "-skip-latency")
	} else if err := r.latencyPhase(ctx); err != nil {
		return fmt.Errorf("latency phase: %w", err)
	}
	if cfg.SkipThroughput {
		r.skip("throughput", "-skip-throughput")
	} else if err := r.throughputPhase(ctx); err != nil {
		return fmt.Errorf("throughput phase: %w", err)
	}
	r.res.Seconds = time.Since(began).Seconds()
	if err := benchenv.WriteJSON(filepath.Join(cfg.OutDir, "alerting.json"), r.res); err != nil {
		return err
	}
	md := Markdown(r.res)
	if err := os.WriteFile(filepath.Join(cfg.OutDir, "alerting.md"), []byte(md), 0o644); err != nil {
		return err
	}
	_, err = io.WriteString(log, md)
	return err
}

// findBaseline decides whether Prometheus and Alertmanager run, recording
// why not.
func (r *runner) findBaseline() {
	look := func(bin, pkg string) (string, string) {
		if bin == "" {
			return "", "no binary given"
		}
		p, err := exec.LookPath(bin)
		if err != nil {
			return "", fmt.Sprintf("%v (install Debian's %s package, as root: apt-get install -y %s)", err, pkg, pkg)
		}
		return p, ""
	}
	prom, why := look(r.cfg.PrometheusBinary, "prometheus")
	if why != "" {
		r.skip(sysProm, "Prometheus: "+why)
	}
	am, whyAM := look(r.cfg.AlertmanagerBinary, "prometheus-alertmanager")
	if whyAM != "" {
		r.skip(sysAM, "Alertmanager: "+whyAM)
	}
	if prom != "" && am != "" {
		r.cfg.PrometheusBinary, r.cfg.AlertmanagerBinary = prom, am
		r.baseline = true
		r.res.Versions[sysProm] = binVersion(prom)
		r.res.Versions[sysAM] = binVersion(am)
		return
	}
	if prom == "" && am != "" {
		r.res.Versions[sysAM] = binVersion(am)
		r.cfg.AlertmanagerBinary = am
	}
}
