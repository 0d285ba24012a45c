package clusterbench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/bureauhub/bureauhub/bench/benchenv"
	"github.com/bureauhub/bureauhub/e2e"
)

// noProxy never sends loopback requests through HTTP_PROXY.
var noProxy = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8}, Timeout: 30 * time.Second}

// hub is one hub process; it keeps its ports and config across restarts.
type hub struct {
	name               string
	grpc, http, gossip int
	cfgPath            string
	proc               *e2e.Process
}

func (h *hub) base() string { return fmt.Sprintf("http://127.0.0.1:%d", h.http) }
func (h *hub) addr() string { return fmt.Sprintf("127.0.0.1:%d", h.grpc) }

func (h *hub) running() bool { return h.proc != nil && !h.proc.Exited() }

// newHubs allocates ports for n hubs named hub-1...hub-n.
func newHubs(n int) ([]*hub, error) {
	out := make([]*hub, n)
	for i := range out {
		h := &hub{name: fmt.Sprintf("hub-%d", i+1)}
		for _, p := range []*int{&h.grpc, &h.http, &h.gossip} {
			port, err := e2e.FreePort()
			if err != nil {
				return nil, err
			}
			*p = port
		}
		out[i] = h
	}
	return out, nil
}

// writeConfig writes h's config: the run's ClickHouse, certificates and
// tenants, the rules section rulesYAML and, when peers is not nil, a
// cluster section joining them with every failure-detection setting left
// at its default.
func (r *runner) writeConfig(h *hub, rulesYAML string, peers []*hub) error {
	var b strings.Builder
	fmt.Fprintf(&b, "grpc_listen_address: %s\nhttp_listen_address: 127.0.0.1:%d\n", h.addr(), h.http)
	fmt.Fprintf(&b, "tls: {cert_file: %q, key_file: %q}\n", r.certs.CertFile, r.certs.KeyFile)
	fmt.Fprintf(&b, "shutdown_timeout: 30s\nclickhouse: {addr: [%q], database: %s}\n", r.ch.Addr(), database)
	b.WriteString(rulesYAML)
	if peers != nil {
		var join []string
		for _, p := range peers {
			if p != h {
				join = append(join, fmt.Sprintf("%q", fmt.Sprintf("127.0.0.1:%d", p.gossip)))
			}
		}
		fmt.Fprintf(&b, "cluster: {name: %s, bind_address: \"127.0.0.1:%d\", join: [%s], secret_key_file: %q}\n",
			h.name, h.gossip, strings.Join(join, ", "), r.gossipKey)
	}
	b.WriteString("tenants:\n")
	for _, t := range r.tenants {
		fmt.Fprintf(&b, "  - {name: %s, token: %q, role: %s}\n", t.name, tokenOf(t.name), t.role)
	}
	h.cfgPath = filepath.Join(r.work, h.name+".yml")
	return os.WriteFile(h.cfgPath, []byte(b.String()), 0o644)
}

func tokenOf(tenant string) string { return "clusterbench-token-" + tenant }

// start starts (or restarts) h with its config and waits until it serves.
func (r *runner) start(ctx context.Context, h *hub) error {
	p, err := e2e.Start(h.name, r.hubBin, []string{"-config.file", h.cfgPath, "-log.level", "info"}, r.logDir)
	if err != nil {
		return err
	}
	h.proc = p
	return benchenv.WaitReady(ctx, h.base()+"/-/healthy", p, 2*time.Minute)
}

// stop stops h with SIGTERM (killing it after 30 s).
func (r *runner) stop(h *hub) {
	if !h.running() {
		return
	}
	if err := h.proc.Stop(30 * time.Second); err != nil {
		r.logf("stop %s: %v", h.name, err)
	}
}

// clusterView is a hub's /api/v1/cluster answer.
type clusterView struct {
	Self    string `json:"self"`
	Members []struct {
		Name  string `json:"name"`
		State string `json:"state"`
	} `json:"members"`
	Owners map[string]string `json:"owners"`
}

// alive lists the members h sees alive, sorted.
func (v clusterView) alive() []string {
	var out []string
	for _, m := range v.Members {
		if m.State == "alive" {
			out = append(out, m.Name)
		}
	}
	sort.Strings(out)
	return out
}

// state is the state h sees member name in ("" if it does not know it).
func (v clusterView) state(name string) string {
	for _, m := range v.Members {
		if m.Name == name {
			return m.State
		}
	}
	return ""
}

// view asks h who is in the cluster and who owns items.
func view(ctx context.Context, h *hub, items ...string) (clusterView, error) {
	q := url.Values{}
	for _, it := range items {
		q.Add("item", it)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.base()+"/api/v1/cluster?"+q.Encode(), nil)
	if err != nil {
		return clusterView{}, err
	}
	req.Header.Set("Authorization", "Bearer "+tokenOf(apiTenant))
	resp, err := noProxy.Do(req)
	if err != nil {
		return clusterView{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return clusterView{}, fmt.Errorf("%s /api/v1/cluster: http %d", h.name, resp.StatusCode)
	}
	var body struct {
		Data clusterView `json:"data"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	return body.Data, err
}

// waitMembers waits until every hub in among sees exactly want alive.
func waitMembers(ctx context.Context, among []*hub, want []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	sort.Strings(want)
	for {
		ok, why := true, ""
		for _, h := range among {
			v, err := view(ctx, h)
			if err != nil || strings.Join(v.alive(), ",") != strings.Join(want, ",") {
				ok, why = false, fmt.Sprintf("%s sees %v (%v), want %v", h.name, v.alive(), err, want)
				break
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster did not form within %s: %s", timeout, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// groupState is one rule group's evaluation gauges on one hub.
type groupState struct {
	// LastEval is the wall-clock start of the group's last evaluation
	// on this hub (zero if it never evaluated the group).
	LastEval time.Time
	// Duration is that evaluation's duration.
	Duration time.Duration
}

// groupKey names a rule group of a tenant as the gauges label it:
// tenant and rule_group ("file;group").
func groupKey(tenant, file, group string) string { return tenant + "/" + file + ";" + group }

// scrapeGroups reads h's rule group gauges, by groupKey.
func scrapeGroups(ctx context.Context, h *hub) (map[string]groupState, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.base()+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := noProxy.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s /metrics: http %d", h.name, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s /metrics: %w", h.name, err)
	}
	out := map[string]groupState{}
	read := func(name string, set func(*groupState, float64)) {
		f := fams[name]
		if f == nil {
			return
		}
		for _, m := range f.GetMetric() {
			var tenant, group string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "tenant":
					tenant = l.GetValue()
				case "rule_group":
					group = l.GetValue()
				}
			}
			k := tenant + "/" + group
			s := out[k]
			set(&s, m.GetGauge().GetValue())
			out[k] = s
		}
	}
	read("prometheus_rule_group_last_evaluation_timestamp_seconds", func(s *groupState, v float64) {
		if v > 0 {
			s.LastEval = time.Unix(0, int64(v*1e9))
		}
	})
	read("prometheus_rule_group_last_duration_seconds", func(s *groupState, v float64) {
		s.Duration = time.Duration(v * 1e9)
	})
	return out, nil
}
