package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// chromiumBinary finds a Chromium to drive headless: $CHROMIUM, else the
// usual names on PATH (Debian's package is "chromium").
func chromiumBinary() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser runs one headless Chromium per page load, with only
// command-line flags: --dump-dom prints the DOM once the page has loaded
// and --screenshot saves it as a PNG.
type browser struct {
	bin  string
	shot string // screenshot directory
}

// load opens u and returns the page's DOM after load, saving a screenshot
// as name.png.
func (b *browser) load(t *testing.T, u, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{
		"--headless", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
		"--disable-extensions", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--hide-scrollbars", "--window-size=1400,1100", "--user-data-dir=" + t.TempDir(),
		"--screenshot=" + filepath.Join(b.shot, name+".png"), "--dump-dom", u,
	}
	if os.Geteuid() == 0 {
		// Chromium's sandbox refuses to run as root (CI containers).
		args = append(args, "--no-sandbox")
	}
	cmd := exec.CommandContext(ctx, b.bin, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+cmd.Dir)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	// Chromium forks renderers; a timeout ends the whole group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", name, err, tail(errOut.String(), 20))
	}
	if out.Len() == 0 {
		t.Fatalf("chromium %s: empty DOM\n%s", name, tail(errOut.String(), 20))
	}
	return out.String()
}

// loginLink mints a one-time console login link for tenant landing on
// page.
func (e *env) loginLink(t *testing.T, tenant, page string) string {
	t.Helper()
	code, body := e.apiDo(t, tenant, http.MethodPost, "/console/login-links?next="+url.QueryEscape(page), "")
	if code != 200 {
		t.Fatalf("mint login link for %s: %d %s", tenant, code, body)
	}
	var l struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		t.Fatalf("login link %s: %v", body, err)
	}
	return e.hubURL() + l.URL
}

// selfScrape is an agent scrape config of its own /metrics, labelled with
// the agent's instance name, so its buffer metrics reach the hub.
func selfScrape(port int, instance string) string {
	return fmt.Sprintf(`  - job_name: bureauhub-agent
    scrape_interval: 1s
    scrape_timeout: 900ms
    static_configs: [{targets: ["127.0.0.1:%d"], labels: {instance: %s}}]
`, port, instance)
}

// TestConsoleInBrowser runs the hub with hosted services, alerting and the
// autoscaler, two bureaus' agents and alerts posted through the API, and
// loads every console page in headless Chromium as a bureau and as the
// cross-bureau tenant: each bureau sees its own agents, alerts, services
// and targets and none of the other's. Screenshots go to
// $CONSOLE_SCREENSHOTS, else the test's artifact directory (kept with
// go test -artifacts).
func TestConsoleInBrowser(t *testing.T) {
	bin := chromiumBinary()
	if bin == "" {
		t.Skip("no chromium binary on PATH (or $CHROMIUM): the console's browser test needs Debian's chromium package (apt-get install -y chromium)")
	}
	shots := os.Getenv("CONSOLE_SCREENSHOTS")
	if shots == "" {
		shots = t.ArtifactDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	b := &browser{bin: bin, shot: shots}

	e := newEnv(t)
	sink := newWebhookSink(t)
	e.servicesConfig(t)
	e.hubTop += e.alertingConfig(t, sink, "1s") + `autoscale:
  audit_flush_interval: 500ms
  targets:
    - name: healthcode-autoscaler
      tenant: health
      service: healthcode
      rate_expr: sum(rate(healthcode_scans_total[5s]))
      mode: dry-run
      min: 3
      max: 6
      sync_interval: 1s
      capacity: {default_per_replica: 50, learn: false}
`
	e.startHub()
	hp, cp := freePort(t), freePort(t)
	e.startAgent("agent-health", e.agentConfig("health", "health-vm-1", hp, t.TempDir(),
		"global: {scrape_interval: 1s}\nscrape_configs:\n"+e.sdScrape("healthcode", "health")+selfScrape(hp, "health-vm-1")), hp)
	e.startAgent("agent-consular", e.agentConfig("consular", "consular-vm-1", cp, t.TempDir(),
		"global: {scrape_interval: 1s}\nscrape_configs:\n"+e.sdScrape("booking", "consular")+selfScrape(cp, "consular-vm-1")), cp)

	// Each agent is known by its buffer's ID; learn them from the API.
	agentIDs := map[string]string{}
	waitFor(t, 30*time.Second, func() (bool, string) {
		code, body := e.apiGet(t, "databureau", "/api/v1/agents")
		var r struct {
			Data []struct {
				Tenant  string `json:"tenant"`
				AgentID string `json:"agent_id"`
				Live    bool   `json:"live"`
			} `json:"data"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &r) != nil {
			return false, fmt.Sprintf("%d %s", code, body)
		}
		for _, a := range r.Data {
			if a.Live {
				agentIDs[a.Tenant] = a.AgentID
			}
		}
		return agentIDs["health"] != "" && agentIDs["consular"] != "", "agents: " + body
	})
	if code, body := e.apiGet(t, "health", "/api/v1/agents?tenant=consular"); code != http.StatusForbidden {
		t.Fatalf("health reading consular's agents: %d %s", code, body)
	}
	for _, tn := range []string{"health", "consular"} {
		waitFor(t, 30*time.Second, func() (bool, string) {
			_, ok, body := e.instant(t, tn, `bureauhub_agent_buffer_samples{job="bureauhub-agent"}`)
			return ok, tn + "'s agent metrics not stored yet: " + body
		})
	}

	// Alerts: one firing for each bureau, and one of health's silenced.
	now := time.Now().UTC()
	post := func(tenant, name, summary string) {
		body := fmt.Sprintf(`[{"labels":{"alertname":%q,"severity":"warning"},"annotations":{"summary":%q},"startsAt":%q,"endsAt":%q}]`,
			name, summary, now.Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339))
		if code, resp := e.apiDo(t, tenant, http.MethodPost, "/api/v2/alerts", body); code != 200 {
			t.Fatalf("post %s as %s: %d %s", name, tenant, code, resp)
		}
	}
	silence := fmt.Sprintf(`{"matchers":[{"name":"alertname","value":"HealthQuietAlert","isRegex":false,"isEqual":true}],"startsAt":%q,"endsAt":%q,"createdBy":"console-e2e","comment":"planned maintenance"}`,
		now.Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339))
	if code, resp := e.apiDo(t, "health", http.MethodPost, "/api/v2/silences", silence); code != 200 {
		t.Fatalf("post silence: %d %s", code, resp)
	}
	post("health", "HealthConsoleAlert", "health console check")
	post("health", "HealthQuietAlert", "silenced for maintenance")
	post("consular", "ConsularConsoleAlert", "consular console check")
	waitFor(t, 30*time.Second, func() (bool, string) {
		code, body := e.apiGet(t, "health", "/api/v1/alerts/history?match[]="+url.QueryEscape(`{alertname="HealthConsoleAlert"}`))
		return code == 200 && strings.Contains(body, `"firing"`), fmt.Sprintf("history: %d %s", code, body)
	})
	// min 3 against the service's 2 replicas: a dry-run scale-up.
	waitFor(t, 30*time.Second, func() (bool, string) {
		code, body := e.apiGet(t, "health", "/api/v1/autoscale/actions")
		return code == 200 && strings.Contains(body, `"dry_run"`), fmt.Sprintf("autoscale actions: %d %s", code, body)
	})

	type check struct {
		tenant, page string
		in, out      []string
	}
	for _, c := range []check{
		{"health", "/console/", []string{"bureauhub console", "bureau health", "live", "firing", "autoscaled target", "hosted service"}, nil},
		{"health", "/console/agents", []string{`id="bureau-health"`, agentIDs["health"], "health-vm-1", "Backlog samples"},
			[]string{`id="bureau-consular"`, agentIDs["consular"], "consular-vm-1"}},
		{"health", "/console/alerts", []string{"HealthConsoleAlert", "health console check", "HealthQuietAlert", "planned maintenance", "console-e2e", `id="history"`},
			[]string{"ConsularConsoleAlert"}},
		{"health", "/console/capacity", []string{"healthcode-autoscaler", "decided by", "bound min=3", "healthcode", "dry_run", "2 → 3"},
			[]string{"booking"}},
		{"health", "/console/cluster", []string{"single hub", e.hubURL()[len("http://"):], "this hub"}, nil},
		{"consular", "/console/agents", []string{`id="bureau-consular"`, agentIDs["consular"], "consular-vm-1"},
			[]string{`id="bureau-health"`, agentIDs["health"], "health-vm-1"}},
		{"consular", "/console/alerts", []string{"ConsularConsoleAlert"}, []string{"HealthConsoleAlert", "HealthQuietAlert"}},
		{"consular", "/console/capacity", []string{"booking"}, []string{"healthcode"}},
		{"databureau", "/console/agents", []string{`id="bureau-health"`, `id="bureau-consular"`, agentIDs["health"], agentIDs["consular"]}, nil},
		{"databureau", "/console/alerts", []string{"HealthConsoleAlert", "ConsularConsoleAlert", "cross-bureau"}, nil},
		{"databureau", "/console/capacity", []string{"healthcode-autoscaler", "booking", "healthcode"}, nil},
	} {
		name := c.tenant + strings.ReplaceAll(strings.TrimSuffix(c.page, "/"), "/", "-")
		t.Run(name, func(t *testing.T) {
			dom := b.load(t, e.loginLink(t, c.tenant, c.page), name)
			if strings.Contains(dom, `name="token"`) {
				t.Fatalf("the login link did not sign in; got the login form:\n%s", dom)
			}
			for _, s := range c.in {
				if !strings.Contains(dom, s) {
					t.Errorf("%s as %s lacks %q", c.page, c.tenant, s)
				}
			}
			for _, s := range c.out {
				if strings.Contains(dom, s) {
					t.Errorf("%s as %s shows %q, which belongs to another bureau", c.page, c.tenant, s)
				}
			}
			if t.Failed() {
				t.Logf("DOM:\n%s", dom)
			}
		})
	}

	// Without a session a browser gets the sign-in form; a spent link
	// does not sign in again.
	t.Run("signed-out", func(t *testing.T) {
		if dom := b.load(t, e.hubURL()+"/console/agents", "signed-out"); !strings.Contains(dom, `name="token"`) || strings.Contains(dom, "health-vm-1") {
			t.Errorf("signed-out page is not the sign-in form:\n%s", dom)
		}
		link := e.loginLink(t, "health", "/console/agents")
		_ = b.load(t, link, "link-first-use")
		if dom := b.load(t, link, "link-second-use"); !strings.Contains(dom, "unknown, used or expired") {
			t.Errorf("a spent login link signed in again:\n%s", dom)
		}
	})
	t.Logf("screenshots in %s", shots)
}
