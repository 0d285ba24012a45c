// Command agentbench measures the agent's footprint: our agent collecting
// its host and scraping a 10,000-series target every 15 s, shipping over TLS
// to a real hub and ClickHouse, beside vmagent scraping the same target.
// It samples both processes' RSS and CPU from /proc and writes
// agent.json and agent.md into -out. Everything runs on loopback and stops
// by itself.
//
// `agentbench profiled-agent` runs the agent in-process under pprof; with
// -profile DIR the benchmark measures that instead of bin/agent and leaves
// cpu.pprof and heap.pprof in DIR.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/bureauhub/bureauhub/agent"
	"github.com/bureauhub/bureauhub/bench/agentfoot"
	"github.com/bureauhub/bureauhub/e2e"
	"github.com/bureauhub/bureauhub/hub/pki"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chserver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "agentbench:", err)
		os.Exit(1)
	}
}

// Names of the measured processes, as the report shows them.
const (
	nameOurs = "bureauhub agent"
	namePeer = "vmagent"
	nameHost = "node_exporter"
)

// nodeExporterCollectors are node_exporter's collectors that our agent's
// host_metrics reimplements; node_exporter runs with only these.
var nodeExporterCollectors = []string{"cpu", "stat", "loadavg", "meminfo", "diskstats", "filesystem", "netdev", "uname", "time"}

type options struct {
	bin, out, dir       string
	keep                bool
	duration, warmup    time.Duration
	interval            time.Duration
	metrics, combos     int
	vmagent, nodeExp    string
	profileDir          string
	rssEvery, heapEvery time.Duration
}

func run(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "profiled-agent" {
		return runProfiledAgent(ctx, args[1:])
	}
	var o options
	fs := flag.NewFlagSet("agentbench", flag.ContinueOnError)
	fs.StringVar(&o.bin, "bin", "bin", "directory holding the hub and agent binaries")
	fs.StringVar(&o.out, "out", "bench-out", "directory for agent.json and agent.md")
	fs.StringVar(&o.dir, "dir", "", "working directory for ClickHouse, buffers, configs and logs (default: a new temporary directory)")
	fs.BoolVar(&o.keep, "keep", false, "keep the working directory (it is always kept when the run fails)")
	fs.DurationVar(&o.duration, "duration", 5*time.Minute, "measurement window, after the warm-up")
	fs.DurationVar(&o.warmup, "warmup", 30*time.Second, "time after start-up that is not measured")
	fs.DurationVar(&o.interval, "interval", 15*time.Second, "scrape and host collection interval")
	fs.IntVar(&o.metrics, "metrics", 100, "metric names on the target")
	fs.IntVar(&o.combos, "combos", 100, "label combinations per metric name on the target")
	fs.StringVar(&o.vmagent, "vmagent", "vmagent", "vmagent binary")
	fs.StringVar(&o.nodeExp, "node-exporter", "auto", `node_exporter binary run beside vmagent for host metrics; "auto" finds prometheus-node-exporter or node_exporter, "none" runs none`)
	fs.StringVar(&o.profileDir, "profile", "", "run the agent in-process under pprof and write cpu.pprof and heap.pprof here")
	fs.DurationVar(&o.rssEvery, "rss-every", time.Second, "RSS sampling period")
	fs.DurationVar(&o.heapEvery, "heap-every", 15*time.Second, "period of reading go_memstats_heap_inuse_bytes from both agents")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if o.duration <= 0 || o.warmup < 0 || o.interval < time.Second {
		return errors.New("-duration must be positive, -warmup not negative, -interval at least 1s")
	}
	vmagentBin, err := exec.LookPath(o.vmagent)
	if err != nil {
		return fmt.Errorf("vmagent not found (Debian: apt-get install -y victoria-metrics): %w", err)
	}
	nodeExpBin := ""
	switch o.nodeExp {
	case "none":
	case "auto":
		for _, n := range []string{"prometheus-node-exporter", "node_exporter"} {
			if p, err := exec.LookPath(n); err == nil {
				nodeExpBin = p
				break
			}
		}
	default:
		if nodeExpBin, err = exec.LookPath(o.nodeExp); err != nil {
			return fmt.Errorf("-node-exporter: %w", err)
		}
	}

	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "agentbench-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return err
	}
	succeeded := false
	defer func() {
		if succeeded && !o.keep && o.dir == "" {
			os.RemoveAll(dir)
		} else {
			fmt.Fprintln(os.Stderr, "agentbench: working directory and logs kept in", dir)
		}
	}()
	rep, err := bench(ctx, o, dir, vmagentBin, nodeExpBin)
	if rep != nil {
		if werr := writeReport(o.out, rep); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		return err
	}
	for _, c := range rep.Checks {
		if !c.OK {
			return fmt.Errorf("check failed: %s = %s", c.Name, c.Value)
		}
	}
	succeeded = true
	return nil
}

// bench runs the whole benchmark; the report is nil unless the measurement
// completed.
func bench(ctx context.Context, o options, dir, vmagentBin, nodeExpBin string) (*agentfoot.Report, error) {
	logs := filepath.Join(dir, "logs")
	for _, d := range []string{logs, filepath.Join(dir, "pki"), filepath.Join(dir, "vmagent-data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	stopper := func(p *e2e.Process) func() {
		return func() {
			// node_exporter and vmagent end by the SIGTERM itself, which is
			// an exit error but a clean stop.
			var exit *exec.ExitError
			if err := p.Stop(30 * time.Second); err != nil && !errors.As(err, &exit) {
				fmt.Fprintf(os.Stderr, "agentbench: stop %s: %v\n", p.Name, err)
			}
		}
	}

	// The target and the remote_write sink run in this process: they cost
	// the same whoever scrapes or writes, and are not measured.
	target, err := agentfoot.NewTarget(o.metrics, o.combos)
	if err != nil {
		return nil, err
	}
	targetAddr, stopTarget, err := serve("/metrics", target)
	if err != nil {
		return nil, err
	}
	defer stopTarget()
	sink := &agentfoot.WriteSink{}
	sinkAddr, stopSink, err := serve("/api/v1/write", sink)
	if err != nil {
		return nil, err
	}
	defer stopSink()

	fmt.Fprintln(os.Stderr, "agentbench: starting ClickHouse and the hub")
	chLog, err := os.Create(filepath.Join(logs, "clickhouse.log"))
	if err != nil {
		return nil, err
	}
	defer chLog.Close()
	ch, err := chserver.Start(ctx, chserver.Options{Dir: filepath.Join(dir, "clickhouse"), Log: chLog})
	if err != nil {
		return nil, fmt.Errorf("start clickhouse: %w", err)
	}
	defer ch.Stop()

	certs, err := pki.WriteDemoCerts(filepath.Join(dir, "pki"), []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	tokenFile := filepath.Join(dir, "pki", "bench.token")
	if err := os.WriteFile(tokenFile, fmt.Appendf(nil, "bench-token-%d\n", time.Now().UnixNano()), 0o600); err != nil {
		return nil, err
	}
	ports, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	hubGRPC, hubHTTP, agentHTTP, vmHTTP, nodeHTTP := ports[0], ports[1], ports[2], ports[3], ports[4]
	hubCfg := filepath.Join(dir, "hub.yml")
	if err := os.WriteFile(hubCfg, fmt.Appendf(nil, `grpc_listen_address: 127.0.0.1:%d
http_listen_address: 127.0.0.1:%d
tls: {cert_file: %s, key_file: %s}
clickhouse: {addr: [%q], database: bureauhub}
tenants:
  - {name: bench, token_file: %s}
`, hubGRPC, hubHTTP, certs.CertFile, certs.KeyFile, ch.Addr(), tokenFile), 0o644); err != nil {
		return nil, err
	}
	hub, err := e2e.Start("hub", filepath.Join(o.bin, "hub"), []string{"-config.file", hubCfg}, logs)
	if err != nil {
		return nil, err
	}
	defer stopper(hub)()
	hubURL := fmt.Sprintf("http://127.0.0.1:%d", hubHTTP)
	if err := waitReady(ctx, hubURL+"/-/healthy", hub); err != nil {
		return nil, err
	}

	fmt.Fprintln(os.Stderr, "agentbench: starting the agents")
	var host *e2e.Process
	nodeTarget := ""
	if nodeExpBin != "" {
		args := []string{fmt.Sprintf("--web.listen-address=127.0.0.1:%d", nodeHTTP), "--collector.disable-defaults"}
		for _, c := range nodeExporterCollectors {
			args = append(args, "--collector."+c)
		}
		if host, err = e2e.Start(nameHost, nodeExpBin, args, logs); err != nil {
			return nil, err
		}
		defer stopper(host)()
		if err := waitReady(ctx, fmt.Sprintf("http://127.0.0.1:%d/metrics", nodeHTTP), host); err != nil {
			return nil, err
		}
		nodeTarget = fmt.Sprintf(`
  - job_name: node
    static_configs: [{targets: ["127.0.0.1:%d"]}]`, nodeHTTP)
	}

	// Both scrapers' timeout, which may not exceed the interval.
	timeout := min(10*time.Second, o.interval)
	agentCfg := filepath.Join(dir, "agent.yml")
	if err := os.WriteFile(agentCfg, fmt.Appendf(nil, `identity: {bureau: bench, cloud: bench-cloud, cluster: bench, instance: bench-vm-1}
http_listen_address: 127.0.0.1:%d
buffer: {dir: %s}
hub:
  addresses: ["127.0.0.1:%d"]
  token_file: %s
  tls: {ca_file: %s, server_name: localhost}
host_metrics: {interval: %s}
global: {scrape_interval: %s, scrape_timeout: %s}
scrape_configs:
  - job_name: benchapp
    static_configs: [{targets: [%q]}]
`, agentHTTP, filepath.Join(dir, "agent-buffer"), hubGRPC, tokenFile, certs.CAFile, o.interval, o.interval, timeout, targetAddr), 0o644); err != nil {
		return nil, err
	}
	agentBin, agentArgs := filepath.Join(o.bin, "agent"), []string{"-config.file", agentCfg}
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return nil, err
		}
		pdir, err := filepath.Abs(o.profileDir)
		if err != nil {
			return nil, err
		}
		if agentBin, err = os.Executable(); err != nil {
			return nil, err
		}
		agentArgs = append([]string{"profiled-agent", "-profile.dir", pdir}, agentArgs...)
	}
	ours, err := e2e.Start("agent", agentBin, agentArgs, logs)
	if err != nil {
		return nil, err
	}
	defer stopper(ours)()

	vmCfg := filepath.Join(dir, "vmagent.yml")
	if err := os.WriteFile(vmCfg, fmt.Appendf(nil, `global: {scrape_interval: %s, scrape_timeout: %s}
scrape_configs:
  - job_name: benchapp
    static_configs: [{targets: [%q]}]%s
`, o.interval, timeout, targetAddr, nodeTarget), 0o644); err != nil {
		return nil, err
	}
	peer, err := e2e.Start(namePeer, vmagentBin, []string{
		"-promscrape.config=" + vmCfg,
		"-remoteWrite.url=http://" + sinkAddr + "/api/v1/write",
		"-remoteWrite.tmpDataPath=" + filepath.Join(dir, "vmagent-data"),
		fmt.Sprintf("-httpListenAddr=127.0.0.1:%d", vmHTTP),
	}, logs)
	if err != nil {
		return nil, err
	}
	defer stopper(peer)()
	agentURL := fmt.Sprintf("http://127.0.0.1:%d", agentHTTP)
	vmURL := fmt.Sprintf("http://127.0.0.1:%d", vmHTTP)
	if err := waitReady(ctx, agentURL+"/-/healthy", ours); err != nil {
		return nil, err
	}
	if err := waitReady(ctx, vmURL+"/health", peer); err != nil {
		return nil, err
	}

	fmt.Fprintf(os.Stderr, "agentbench: warming up for %s, then measuring for %s\n", o.warmup, o.duration)
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(o.warmup):
	}
	subjects := []agentfoot.Subject{
		{Name: nameOurs, Proc: ours, MetricsURL: agentURL + "/metrics"},
		{Name: namePeer, Proc: peer, MetricsURL: vmURL + "/metrics"},
	}
	if o.profileDir != "" {
		subjects[0].Name = nameOurs + " (profiled)"
	}
	if host != nil {
		subjects = append(subjects, agentfoot.Subject{Name: nameHost, Proc: host})
	}
	m, err := agentfoot.Measure(ctx, subjects, o.duration, o.rssEvery, o.heapEvery)
	if err != nil {
		return nil, fmt.Errorf("measure: %w", err)
	}

	rep := &agentfoot.Report{
		Date:        m.Start,
		Command:     shellQuote(os.Args),
		Revision:    gitRevision(),
		Machine:     agentfoot.ReadMachine(),
		Peers:       map[string]string{},
		Ours:        subjects[0].Name,
		Peer:        namePeer,
		Measurement: m,
		Setup: agentfoot.Setup{
			TargetSeries: target.Series(), TargetMetricNames: o.metrics,
			ScrapeIntervalSec: o.interval.Seconds(), WarmupSec: o.warmup.Seconds(), WindowSec: m.Seconds,
			ProfiledAgent: o.profileDir != "",
		},
	}
	if host != nil {
		rep.PeerHost = nameHost
	}
	for k, pkg := range map[string]string{"vmagent": "victoria-metrics", "node_exporter": "prometheus-node-exporter", "clickhouse": "clickhouse-server"} {
		if v := debVersion(pkg); v != "" {
			rep.Peers[k] = v
		}
	}
	if err := check(ctx, rep, target, sink, agentURL, hubURL, host != nil, nodeHTTP); err != nil {
		return rep, err
	}
	rep.ComputeRatios()
	rep.Notes = append(rep.Notes,
		"Both agents run at the same time on the same 2-core machine, beside the hub, ClickHouse, the target and the sink (which are not measured), and possibly another benchmark: compare the rows with each other rather than with other machines.",
		"Our agent does more than vmagent here: it collects host metrics itself, keeps a durable on-disk buffer with periodic fsync, and ships over gRPC with TLS to the hub; vmagent sends plain HTTP remote_write to a sink that answers at once.",
	)
	if o.profileDir != "" {
		rep.Notes = append(rep.Notes, "Our agent ran inside agentbench under the CPU profiler (cpu.pprof, heap.pprof in "+o.profileDir+"), which adds a little CPU and memory.")
	}
	return rep, nil
}

// check fills the report's checks and setup counts from the agents', hub's
// and sink's counters.
func check(ctx context.Context, rep *agentfoot.Report, target *agentfoot.Target, sink *agentfoot.WriteSink, agentURL, hubURL string, withHost bool, nodePort int) error {
	am, err := agentfoot.FetchMetrics(ctx, agentURL+"/metrics")
	if err != nil {
		return fmt.Errorf("agent metrics: %w", err)
	}
	hm, err := agentfoot.FetchMetrics(ctx, hubURL+"/metrics")
	if err != nil {
		return fmt.Errorf("hub metrics: %w", err)
	}
	collectedHost := am[`bureauhub_agent_collected_samples_total{source="host"}`]
	hostBatches := am[`bureauhub_agent_collected_batches_total{source="host"}`]
	collected := agentfoot.Sum(am, "bureauhub_agent_collected_samples_total")
	acked := agentfoot.Sum(am, "bureauhub_agent_ship_acked_samples_total")
	written := agentfoot.Sum(hm, "bureauhub_ingest_written_samples_total")
	rejected := agentfoot.Sum(am, "bureauhub_agent_ship_rejected_samples_total")
	if hostBatches > 0 {
		rep.Setup.HostMetricsSamples = collectedHost / hostBatches
	}
	scrapes := target.Scrapes()
	rep.Setup.TargetScrapes = scrapes
	vmScrapes := scrapes["vm_promscrape"] + scrapes["Go-http-client"]
	ws := sink.Stats()
	num := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	rep.Checks = []agentfoot.Check{
		{Name: "target scrapes by our agent (User-Agent bureauhub-agent)", Value: num(float64(scrapes["bureauhub-agent"])), OK: scrapes["bureauhub-agent"] > 0},
		// vmagent reads responses over -promscrape.minResponseSizeForStreamParse
		// with Go's HTTP client and its default User-Agent.
		{Name: "target scrapes by vmagent (User-Agent vm_promscrape or Go-http-client)", Value: num(float64(vmScrapes)), OK: vmScrapes > 0},
		{Name: "samples our agent collected (scrape + host)", Value: num(collected), OK: collected > 0},
		{Name: "samples the hub acknowledged to our agent", Value: num(acked), OK: acked > 0 && acked >= 0.9*collected},
		{Name: "samples the hub wrote to ClickHouse (bureauhub_ingest_written_samples_total)", Value: num(written), OK: written > 0},
		{Name: "samples the hub refused", Value: num(rejected), OK: rejected == 0},
		{Name: "samples vmagent remote-wrote to the sink", Value: num(float64(ws.Samples)), OK: ws.Samples > 0},
		{Name: "remote_write requests the sink could not decode", Value: num(float64(ws.Failed)), OK: ws.Failed == 0},
	}
	if withHost {
		nm, err := agentfoot.FetchMetrics(ctx, fmt.Sprintf("http://127.0.0.1:%d/metrics", nodePort))
		if err != nil {
			return fmt.Errorf("node_exporter metrics: %w", err)
		}
		rep.Setup.NodeExporterSeries = float64(len(nm))
	}
	return nil
}

// serve serves h at path on a free loopback port until the returned stop
// is called.
func serve(path string, h http.Handler) (string, func(), error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(path, h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	return lis.Addr().String(), func() { _ = srv.Close() }, nil
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	seen := map[int]bool{}
	var out []int
	for len(out) < n {
		p, err := e2e.FreePort()
		if err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

func waitReady(ctx context.Context, url string, p *e2e.Process) error {
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := e2e.WaitHTTP(wctx, url); err != nil {
		return fmt.Errorf("%s did not become ready: %w; see %s", p.Name, err, p.LogPath)
	}
	return nil
}

func writeReport(out string, rep *agentfoot.Report) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "agent.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	md := rep.Markdown()
	if err := os.WriteFile(filepath.Join(out, "agent.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Print(md)
	return nil
}

// gitRevision describes the checked-out commit, or "" outside a work tree.
func gitRevision() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// debVersion is a Debian package's installed version, or "".
func debVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'$`\\*?;&|<>()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// runProfiledAgent runs the agent as cmd/agent does, with a CPU profile of
// the whole run and a heap profile taken when it is told to stop.
func runProfiledAgent(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("profiled-agent", flag.ContinueOnError)
	configFile := fs.String("config.file", "agent.yml", "path to the agent's YAML configuration")
	profileDir := fs.String("profile.dir", ".", "directory for cpu.pprof and heap.pprof")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg, err := agent.LoadConfig(*configFile)
	if err != nil {
		return err
	}
	a, err := agent.New(cfg, logger)
	if err != nil {
		return err
	}
	cpu, err := os.Create(filepath.Join(*profileDir, "cpu.pprof"))
	if err != nil {
		return err
	}
	defer cpu.Close()
	if err := pprof.StartCPUProfile(cpu); err != nil {
		return fmt.Errorf("start cpu profile: %w", err)
	}
	// The heap profile shows the heap as of the last GC, so taking it when
	// the stop signal arrives shows the running agent, not its teardown.
	heapDone := make(chan error, 1)
	runDone := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-runDone:
		}
		heapDone <- writeHeapProfile(filepath.Join(*profileDir, "heap.pprof"))
	}()
	runErr := a.Run(ctx)
	close(runDone)
	pprof.StopCPUProfile()
	if err := <-heapDone; runErr == nil {
		runErr = err
	}
	return runErr
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("write heap profile: %w", err)
	}
	return f.Close()
}
