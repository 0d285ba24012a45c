package agent

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestConfigErrorsGiveTheFilesLines: an error in scrape_configs names the
// line of the agent's file it is on, though other sections come first.
func TestConfigErrorsGiveTheFilesLines(t *testing.T) {
	b, err := os.ReadFile("../deploy/compose/agent-consular.yml")
	if err != nil {
		t.Fatal(err)
	}
	// The token file it names, made up, and no CA (one line for another).
	dir := t.TempDir()
	tok := filepath.Join(dir, "consular.token")
	if err := os.WriteFile(tok, []byte("consular-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := strings.ReplaceAll(string(b), "/etc/bureauhub/consular.token", tok)
	good = strings.Replace(good, "tls: {ca_file: /etc/bureauhub-tls/ca.pem}", "insecure_plaintext: true", 1)
	if _, err := ParseConfig([]byte(good), dir); err != nil {
		t.Fatalf("the compose example: %v", err)
	}
	lines := strings.Count(good, "\n")
	for _, tc := range []struct {
		name, add, want string
	}{
		{"a field the agent does not take", "  - job_name: k8s\n    kubernetes_sd_configs: [{role: pod}]\n",
			"line " + strconv.Itoa(lines+2) + ": field kubernetes_sd_configs is not supported by the agent"},
		{"a value of the wrong type", "  - job_name: bad\n    scrape_interval: [15s]\n",
			"line " + strconv.Itoa(lines+2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(good+tc.add), t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// In flow style (no section on lines of its own) the sections are
	// still read.
	flow := `{identity: {bureau: consular, cloud: c, cluster: k, instance: a}, buffer: {dir: /tmp/x}, hub: {addresses: ["hub:9300"], token_file: TOKEN, insecure_plaintext: true}, scrape_configs: [{job_name: app, static_configs: [{targets: ["app:9100"]}]}]}`
	cfg, err := ParseConfig([]byte(strings.Replace(flow, "TOKEN", tok, 1)), dir)
	if err != nil {
		t.Fatalf("flow style: %v", err)
	}
	if n := len(cfg.scrape.ScrapeConfigs); n != 1 {
		t.Errorf("flow style: %d scrape configs, want 1", n)
	}
}
