// Command demo starts the whole bureauhub story on loopback: a throwaway
// ClickHouse; a hub with TLS that hosts the visa booking service (owned by
// the consular bureau) and the health-code service (owned by the health
// bureau), evaluates the rules, routes alerts, forecasts and autoscales;
// agents for three bureaus that discover and scrape the services' replicas
// through the hub; the load generator replaying the 07:40 health-code surge
// and the visa slot releases on a time-compressed clock; and a local
// webhook receiver that prints every notification. It prints where to look
// and stops everything on Ctrl-C.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bureauhub/bureauhub/e2e"
	"github.com/bureauhub/bureauhub/hub/pki"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chserver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

var bureaus = []string{"consular", "health", "transport"}

// service is what each bureau's agent scrapes besides the hub and itself.
var service = map[string]string{"consular": "booking", "health": "healthcode"}

// demoRules are the shipped SLI alerts with windows short enough for a
// day that lasts five minutes (the shipped rules use 5m windows and `for`).
const demoRules = `groups:
  - name: demo-slis
    interval: 5s
    rules:
      - record: bureau:healthcode_scan_latency_seconds:p99_30s
        expr: histogram_quantile(0.99, sum by (bureau, le) (rate(healthcode_scan_duration_seconds_bucket[30s])))
      - record: bureau:booking_success:ratio_rate30s
        expr: sum by (bureau) (rate(booking_successes_total[30s])) / sum by (bureau) (rate(booking_attempts_total[30s]))
      - alert: ScanLatencyAboveObjective
        expr: bureau:healthcode_scan_latency_seconds:p99_30s > 0.5
        for: 10s
        labels: {severity: critical}
        annotations:
          summary: "Health-code scan p99 latency {{ $value | humanizeDuration }} in {{ $labels.bureau }}"
          runbook_url: "https://runbooks.bureauhub.example/#scanlatencyaboveobjective"
      - alert: BookingSuccessBelowObjective
        expr: bureau:booking_success:ratio_rate30s < 0.95
        for: 10s
        labels: {severity: critical}
        annotations:
          summary: "Visa booking success at {{ $value | humanizePercentage }} in {{ $labels.bureau }}"
          runbook_url: "https://runbooks.bureauhub.example/#bookingsuccessbelowobjective"
`

const demoPolicy = `route:
  receiver: databureau
  group_by: [bureau, alertname]
  group_wait: 5s
  group_interval: 30s
  repeat_interval: 1h
  send_resolved_immediately: true
  routes:
    - matchers: ['bureau="consular"']
      receiver: consular
    - matchers: ['bureau="health"']
      receiver: health
    - matchers: ['bureau="transport"']
      receiver: transport
inhibit_rules:
  - source_matchers: ['alertname="BureauUnreachable"']
    target_matchers: ['alertname!="BureauUnreachable"']
    equal: [bureau]
receivers:
  - {name: databureau, webhook_configs: [{url: "%[1]s/databureau"}]}
  - {name: consular, webhook_configs: [{url: "%[1]s/consular"}]}
  - {name: health, webhook_configs: [{url: "%[1]s/health"}]}
  - {name: transport, webhook_configs: [{url: "%[1]s/transport"}]}
`

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	binDir := fs.String("bin", "bin", "directory holding the hub, agent and loadgen binaries")
	dir := fs.String("dir", ".demo", "working directory for data, configs and logs (wiped at start)")
	hubGRPC := fs.Int("hub.grpc-port", 9300, "hub gRPC port")
	hubHTTP := fs.Int("hub.http-port", 9301, "hub HTTP port (API, console, /metrics)")
	agentBase := fs.Int("agent.base-port", 9101, "first agent HTTP port; one per bureau")
	bookingPort := fs.Int("booking.port", 9401, "the booking service's stable port")
	healthPort := fs.Int("healthcode.port", 9402, "the health-code service's stable port")
	webhookPort := fs.Int("webhook.port", 9095, "the local alert receiver's port")
	speedup := fs.Float64("speedup", 288, "simulated seconds per wall second (288: a day in 5 minutes)")
	scanRate := fs.Float64("healthcode.rate", 60, "usual peak of health-code scans per wall second (the 07:40 surge is 10x)")
	noLoad := fs.Bool("no-load", false, "do not start the load generator")
	duration := fs.Duration("duration", 0, "stop by itself after this long (0: run until Ctrl-C)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(abs); err != nil {
		return err
	}
	for _, d := range []string{"clickhouse", "pki", "logs", "services", "alerting"} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o755); err != nil {
			return err
		}
	}
	logs := filepath.Join(abs, "logs")
	root, err := filepath.Abs(".")
	if err != nil {
		return err
	}

	// The alert receiver: every notification is printed and logged.
	webhookURL := fmt.Sprintf("http://127.0.0.1:%d", *webhookPort)
	notes, err := startReceiver(fmt.Sprintf("127.0.0.1:%d", *webhookPort), filepath.Join(logs, "notifications.log"))
	if err != nil {
		return err
	}
	defer notes.Close()

	fmt.Println("starting ClickHouse ...")
	chLog, err := os.Create(filepath.Join(logs, "clickhouse.log"))
	if err != nil {
		return err
	}
	defer chLog.Close()
	ch, err := chserver.Start(ctx, chserver.Options{Dir: filepath.Join(abs, "clickhouse"), Log: chLog})
	if err != nil {
		return fmt.Errorf("start clickhouse: %w", err)
	}
	defer ch.Stop()

	certs, err := pki.WriteDemoCerts(filepath.Join(abs, "pki"), []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, 30*24*time.Hour)
	if err != nil {
		return err
	}
	var tenants strings.Builder
	tokenFiles := map[string]string{}
	tokens := map[string]string{}
	for _, b := range append(append([]string{}, bureaus...), "databureau") {
		p := filepath.Join(abs, "pki", b+".token")
		tokens[b] = fmt.Sprintf("%s-demo-token-%d", b, time.Now().UnixNano())
		if err := os.WriteFile(p, []byte(tokens[b]+"\n"), 0o600); err != nil {
			return err
		}
		tokenFiles[b] = p
		role := "bureau"
		if b == "databureau" {
			role = "cross_bureau"
		}
		fmt.Fprintf(&tenants, "  - {name: %s, token_file: %s, role: %s}\n", b, p, role)
	}

	// One simulated clock for the services and the load generator: it
	// reads 06:00 now, so the first 07:40 surge comes in about 21 s.
	epoch := time.Now().Add(2 * time.Second).UTC().Truncate(time.Second)
	simStart := time.Date(epoch.Year(), epoch.Month(), epoch.Day(), 6, 0, 0, 0, time.UTC)
	day := time.Duration(float64(24*time.Hour) / *speedup)
	demoRulesFile := filepath.Join(abs, "demo.rules.yml")
	if err := os.WriteFile(demoRulesFile, []byte(demoRules), 0o644); err != nil {
		return err
	}
	policy := filepath.Join(abs, "alerting.yml")
	if err := os.WriteFile(policy, []byte(fmt.Sprintf(demoPolicy, webhookURL)), 0o644); err != nil {
		return err
	}
	hubCfg := filepath.Join(abs, "hub.yml")
	if err := os.WriteFile(hubCfg, []byte(fmt.Sprintf(`grpc_listen_address: 127.0.0.1:%[1]d
http_listen_address: 127.0.0.1:%[2]d
tls: {cert_file: %[3]q, key_file: %[4]q}
clickhouse: {addr: [%[5]q], database: bureauhub}
tenants:
%[6]s
rules:
  evaluation_interval: 15s
  files: [%[7]q, %[8]q, %[9]q]
site: {silence_after: 30s, interval: 5s}
alerting: {config_file: %[10]q, data_dir: %[11]q, external_url: "http://127.0.0.1:%[2]d"}
services:
  data_dir: %[12]q
  clock: {epoch: %[13]s, sim_start: %[14]s, speedup: %[15]g}
  booking:
    hosting: {tenant: consular, listen_address: "127.0.0.1:%[16]d", replicas: 2, max_replicas: 10, warm_up: 3s}
    config: {store: {no_sync: true}}
  healthcode:
    hosting: {tenant: health, listen_address: "127.0.0.1:%[17]d", replicas: 2, max_replicas: 12, warm_up: 3s}
    # 2 concurrent scans of 20 ms: 100 scans/s per replica, so the 07:40
    # surge overloads the starting replicas (the incident) until the
    # autoscaler adds more; on later days the forecast adds them before.
    config: {population: 100000, capacity: {concurrency: 2, service_time: 20ms}}
forecast:
  signals:
    - name: healthcode_scans
      tenant: health
      expr: sum(rate(healthcode_scans_total[15s]))
      period: %[18]s
      step: 5s
      horizon: 60s
      interval: 15s
autoscale:
  targets:
    - name: healthcode
      tenant: health
      service: healthcode
      signal: healthcode_scans
      rate_expr: sum(rate(healthcode_scans_total[15s]))
      latency_expr: histogram_quantile(0.99, sum by (le) (rate(healthcode_scan_duration_seconds_bucket[15s])))
      slo_latency: 500ms
      mode: "on"
      min: 2
      max: 12
      warm_up: 3s
      sync_interval: 5s
      scale_down_stabilization: 30s
      capacity: {default_per_replica: 100}
`, *hubGRPC, *hubHTTP, certs.CertFile, certs.KeyFile, ch.Addr(), tenants.String(),
		filepath.Join(root, "rules", "slis.rules.yml"), filepath.Join(root, "rules", "alerts.rules.yml"), demoRulesFile,
		policy, filepath.Join(abs, "alerting"), filepath.Join(abs, "services"),
		epoch.Format(time.RFC3339), simStart.Format(time.RFC3339), *speedup, *bookingPort, *healthPort, day.String())), 0o644); err != nil {
		return err
	}
	hub, err := e2e.Start("hub", filepath.Join(*binDir, "hub"), []string{"-config.file", hubCfg}, logs)
	if err != nil {
		return err
	}
	defer hub.Stop(30 * time.Second)
	hubURL := fmt.Sprintf("http://127.0.0.1:%d", *hubHTTP)
	if err := waitReady(ctx, hubURL, hub); err != nil {
		return err
	}

	var agentURLs []string
	for i, b := range bureaus {
		port := *agentBase + i
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		scrape := fmt.Sprintf(`  - job_name: bureauhub-hub
    static_configs: [{targets: ["127.0.0.1:%d"]}]
  - job_name: bureauhub-agent
    static_configs: [{targets: ["127.0.0.1:%d"]}]
`, *hubHTTP, port)
		if svc, ok := service[b]; ok {
			scrape += fmt.Sprintf(`  - job_name: %[1]s
    scrape_interval: 5s
    http_sd_configs:
      - url: %[2]s/api/v1/sd?service=%[1]s
        refresh_interval: 5s
        authorization: {credentials_file: %[3]s}
`, svc, hubURL, tokenFiles[b])
		}
		cfg := filepath.Join(abs, "agent-"+b+".yml")
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`identity: {bureau: %s, cloud: %s-cloud, cluster: demo, instance: %s-vm-1}
http_listen_address: 127.0.0.1:%d
buffer: {dir: %s, max_bytes: 1073741824}
hub:
  addresses: ["127.0.0.1:%d"]
  token_file: %s
  tls: {ca_file: %s, server_name: localhost}
host_metrics: {interval: 15s}
global: {scrape_interval: 15s}
scrape_configs:
%s`, b, b, b, port, filepath.Join(abs, "buffer-"+b), *hubGRPC, tokenFiles[b], certs.CAFile, scrape)), 0o644); err != nil {
			return err
		}
		a, err := e2e.Start("agent-"+b, filepath.Join(*binDir, "agent"), []string{"-config.file", cfg}, logs)
		if err != nil {
			return err
		}
		defer a.Stop(20 * time.Second)
		if err := waitReady(ctx, url, a); err != nil {
			return err
		}
		agentURLs = append(agentURLs, fmt.Sprintf("%-10s %s/metrics  (remote_write: %s/api/v1/write)", b, url, url))
	}

	if !*noLoad {
		clock := []string{"-clock.epoch", epoch.Format(time.RFC3339), "-clock.sim-start", simStart.Format(time.RFC3339),
			"-speedup", fmt.Sprint(*speedup), "-days", "365", "-day-variation", "0.05"}
		for _, lg := range []struct {
			name string
			args []string
		}{
			{"loadgen-healthcode", append([]string{"-scenario", "healthcode-0740", "-target.healthcode", fmt.Sprintf("http://127.0.0.1:%d", *healthPort),
				"-rate", fmt.Sprint(*scanRate), "-healthcode.population", "100000", "-http.listen-address", "127.0.0.1:9098"}, clock...)},
			{"loadgen-booking", append([]string{"-scenario", "visa-release", "-target.booking", fmt.Sprintf("http://127.0.0.1:%d", *bookingPort),
				"-rate", "40", "-http.listen-address", "127.0.0.1:9099"}, clock...)},
		} {
			p, err := e2e.Start(lg.name, filepath.Join(*binDir, "loadgen"), lg.args, logs)
			if err != nil {
				return err
			}
			defer p.Stop(10 * time.Second)
		}
	}

	chPort := ch.Addr()[strings.LastIndexByte(ch.Addr(), ':')+1:]
	query := "SELECT tenant, count() AS samples, uniq(fingerprint) AS series FROM bureauhub.samples GROUP BY tenant ORDER BY tenant"
	fmt.Printf(`
bureauhub demo is running (all on loopback; logs in %[1]s).
A simulated day lasts %[2]v: the health-code surge comes at 07:40 every day, visa
slots are released at 08:00, 12:00 and 18:00. Watch the autoscaler add replicas.

  console            %[3]s/console/   (sign in with a token below)
  Prometheus API     %[3]s/api/v1/query?query=up   (Authorization: Bearer <token>)
  hub /metrics       %[3]s/metrics
  services           booking http://127.0.0.1:%[4]d   health-code http://127.0.0.1:%[5]d
  replicas           curl -H 'Authorization: Bearer %[6]s' %[3]s/api/v1/services
  recommendations    curl -H 'Authorization: Bearer %[6]s' %[3]s/api/v1/recommendations
  alerts received    %[7]s  (also printed below)
  agents:
    %[8]s
  tokens             data bureau (reads all): %[6]s
                     health: %[9]s   consular: %[10]s
  ClickHouse         clickhouse-client --port %[11]s -q "%[12]s"

Grafana: docker-compose.yml runs Grafana with the plugin and dashboards (see README).
Press Ctrl-C to stop everything.
`, logs, day, hubURL, *bookingPort, *healthPort, tokens["databureau"], filepath.Join(logs, "notifications.log"),
		strings.Join(agentURLs, "\n    "), tokens["health"], tokens["consular"], chPort, query)

	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Println("\nstopping load generators, agents, hub and ClickHouse ...")
			return nil
		case <-tick.C:
			fmt.Printf("[%s] %s\n", time.Now().Format("15:04:05"), replicaLine(hubURL, tokens["databureau"]))
		}
	}
}

// replicaLine summarises the hosted services' replicas.
func replicaLine(hubURL, token string) string {
	req, _ := http.NewRequest("GET", hubURL+"/api/v1/services", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "services: " + err.Error()
	}
	defer resp.Body.Close()
	var r struct {
		Data []struct {
			Name    string `json:"name"`
			Desired int    `json:"desired_replicas"`
			Ready   int    `json:"ready_replicas"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return "services: " + err.Error()
	}
	var parts []string
	for _, s := range r.Data {
		parts = append(parts, fmt.Sprintf("%s %d/%d ready", s.Name, s.Ready, s.Desired))
	}
	return "replicas: " + strings.Join(parts, ", ")
}

// receiver is the demo's alert receiver: Alertmanager webhook payloads,
// one line each on stdout and in a log file.
type receiver struct {
	srv *http.Server
	log *os.File
	mu  sync.Mutex
}

func startReceiver(addr, logPath string) (*receiver, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	r := &receiver{log: f}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("alert receiver: listen %s: %w", addr, err)
	}
	r.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		var m struct {
			Status string            `json:"status"`
			Common map[string]string `json:"commonLabels"`
			Alerts []json.RawMessage `json:"alerts"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			http.Error(w, "not an Alertmanager webhook payload", http.StatusBadRequest)
			return
		}
		line := fmt.Sprintf("[%s] ALERT to %-11s %-8s %s (bureau %s, %d alerts)", time.Now().Format("15:04:05"),
			strings.TrimPrefix(req.URL.Path, "/"), m.Status, m.Common["alertname"], m.Common["bureau"], len(m.Alerts))
		r.mu.Lock()
		fmt.Println(line)
		fmt.Fprintln(r.log, line)
		r.mu.Unlock()
	})}
	go func() { _ = r.srv.Serve(lis) }()
	return r, nil
}

func (r *receiver) Close() {
	_ = r.srv.Close()
	_ = r.log.Close()
}

func waitReady(ctx context.Context, url string, p *e2e.Process) error {
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := e2e.WaitHTTP(wctx, url+"/-/healthy"); err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil
		}
		return fmt.Errorf("%s did not become ready: %w; see %s", p.Name, err, p.LogPath)
	}
	return nil
}
