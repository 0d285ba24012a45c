// Command demo starts a whole bureauhub on loopback: a throwaway ClickHouse,
// a hub with TLS, and agents for three simulated bureaus; it prints where
// to look and stops everything on Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
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

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	binDir := fs.String("bin", "bin", "directory holding the hub and agent binaries")
	dir := fs.String("dir", ".demo", "working directory for data, configs and logs (wiped at start)")
	hubGRPC := fs.Int("hub.grpc-port", 9300, "hub gRPC port")
	hubHTTP := fs.Int("hub.http-port", 9301, "hub HTTP port (/metrics)")
	agentBase := fs.Int("agent.base-port", 9101, "first agent HTTP port; one per bureau")
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
	for _, d := range []string{"clickhouse", "pki", "logs"} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o755); err != nil {
			return err
		}
	}
	logs := filepath.Join(abs, "logs")

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
	for _, b := range append(append([]string{}, bureaus...), "databureau") {
		p := filepath.Join(abs, "pki", b+".token")
		if err := os.WriteFile(p, []byte(fmt.Sprintf("%s-demo-token-%d\n", b, time.Now().UnixNano())), 0o600); err != nil {
			return err
		}
		tokenFiles[b] = p
		role := "bureau"
		if b == "databureau" {
			role = "cross_bureau"
		}
		fmt.Fprintf(&tenants, "  - {name: %s, token_file: %s, role: %s}\n", b, p, role)
	}
	hubCfg := filepath.Join(abs, "hub.yml")
	if err := os.WriteFile(hubCfg, []byte(fmt.Sprintf(`grpc_listen_address: 127.0.0.1:%d
http_listen_address: 127.0.0.1:%d
tls: {cert_file: %s, key_file: %s}
clickhouse: {addr: [%q], database: bureauhub}
tenants:
%s`, *hubGRPC, *hubHTTP, certs.CertFile, certs.KeyFile, ch.Addr(), tenants.String())), 0o644); err != nil {
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
		// Each bureau's agent scrapes the hub and the next bureau's agent,
		// so there is application data besides host metrics.
		next := *agentBase + (i+1)%len(bureaus)
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
  - job_name: bureauhub-hub
    static_configs: [{targets: ["127.0.0.1:%d"]}]
  - job_name: bureauhub-agent
    static_configs: [{targets: ["127.0.0.1:%d"]}]
`, b, b, b, port, filepath.Join(abs, "buffer-"+b), *hubGRPC, tokenFiles[b], certs.CAFile, *hubHTTP, next)), 0o644); err != nil {
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

	chPort := ch.Addr()[strings.LastIndexByte(ch.Addr(), ':')+1:]
	query := "SELECT tenant, count() AS samples, uniq(fingerprint) AS series FROM bureauhub.samples GROUP BY tenant ORDER BY tenant"
	fmt.Printf(`
bureauhub demo is running (all on loopback; logs in %s).

  hub /metrics      %s/metrics
  hub gRPC (TLS)    127.0.0.1:%d
  agents:
    %s
  ClickHouse        native 127.0.0.1:%s, HTTP http://%s

What arrived, per bureau:
  clickhouse-client --port %s -q "%s"

Press Ctrl-C to stop everything.
`, logs, hubURL, *hubGRPC, strings.Join(agentURLs, "\n    "), chPort, ch.HTTPAddr(), chPort, query)

	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Println("\nstopping agents, hub and ClickHouse ...")
			return nil
		case <-tick.C:
			out, err := ch.Query(context.Background(), query)
			if err != nil {
				fmt.Println("query:", err)
				continue
			}
			fmt.Printf("[%s] tenant\tsamples\tseries\n%s", time.Now().Format("15:04:05"), out)
		}
	}
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
