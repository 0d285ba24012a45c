package clusterbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/bureauhub/bureauhub/bench/benchenv"

	"github.com/bureauhub/bureauhub/bench/ingest"
	"github.com/bureauhub/bureauhub/e2e"
	"github.com/bureauhub/bureauhub/hub/cluster"
	"github.com/bureauhub/bureauhub/hub/pki"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chserver"
)

// database is the ClickHouse database every hub of the run shares.
const database = "bureauhub"

// apiTenant is the cross-bureau tenant whose token reads the cluster API.
const apiTenant = "databureau"

// Results is what cluster.json holds.
type Results struct {
	Date     time.Time         `json:"date"`
	Command  string            `json:"command"`
	Machine  Machine           `json:"machine"`
	Versions map[string]string `json:"versions"`
	// Cluster is the failure detection every cluster of the run used: the
	// defaults of hub/cluster.
	Cluster  ClusterSettings  `json:"cluster_settings"`
	Live     LiveData         `json:"live_data"`
	Cost     *CostResults     `json:"cost,omitempty"`
	Failover *FailoverResults `json:"failover,omitempty"`
	Notes    []string         `json:"notes,omitempty"`
	Short    bool             `json:"short,omitempty"`
	Seconds  float64          `json:"seconds"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs     int     `json:"cpus"`
	CPUModel string  `json:"cpu_model"`
	MemGiB   float64 `json:"memory_gib"`
	Kernel   string  `json:"kernel"`
	// LoadAvg is /proc/loadavg's 1-minute figure at the start.
	LoadAvg Float `json:"load_average_1m"`
}

// ClusterSettings are hub/cluster's failure-detection defaults and what
// they imply for three hubs.
type ClusterSettings struct {
	ProbeInterval  string `json:"probe_interval"`
	ProbeTimeout   string `json:"probe_timeout"`
	SuspicionMult  int    `json:"suspicion_mult"`
	GossipInterval string `json:"gossip_interval"`
	Settle         string `json:"settle"`
	// SuspicionTimeout is memberlist's time from suspecting a hub to
	// declaring it dead, with three members (no independent
	// confirmations can shorten it with so few).
	SuspicionTimeout string `json:"suspicion_timeout_3_hubs"`
}

// LiveData describes the bureaus' series the rules read.
type LiveData struct {
	Bureaus          []string `json:"bureaus"`
	SeriesPerBureau  int      `json:"series_per_bureau"`
	History          string   `json:"history"`
	FeederFailures   int      `json:"feeder_failures"`
	FeederLastError  string   `json:"feeder_last_error,omitempty"`
	ShippedRuleFiles []string `json:"shipped_rule_files"`
}

type tenant struct{ name, role string }

type runner struct {
	cfg       Config
	res       *Results
	log       io.Writer
	work      string
	logDir    string
	hubBin    string
	certs     pki.Files
	caPEM     []byte
	ch        *chserver.Server
	gossipKey string
	tenants   []tenant
	bureaus   []string
	loadRuns  int // load tenants used so far
	ruleFiles []string
	// loadSet and loadBaseMs are the ingest load: every cost run sends
	// the same samples, each as its own tenant.
	loadSet    *ingest.SeriesSet
	loadBaseMs int64
	feeder     *feeder
	// bg are watchers running beside the failover trials; rejoinMu
	// guards what they record.
	bg       sync.WaitGroup
	rejoinMu sync.Mutex
	// hubs are every hub started, stopped at the end whatever happens.
	hubs []*hub
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "clusterbench: "+format+"\n", args...)
}

func (r *runner) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.logf("note: %s", msg)
	r.res.Notes = append(r.res.Notes, msg)
}

// Run runs the benchmark and writes cluster.md and cluster.json to
// cfg.OutDir; progress goes to log. Every process it starts is stopped
// before it returns, also when ctx ends.
func Run(ctx context.Context, cfg Config, log io.Writer) (err error) {
	if cfg.RenderFrom != "" {
		return benchenv.Rerender(cfg.RenderFrom, filepath.Join(cfg.OutDir, "cluster.md"), Markdown, log)
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
	work, err := benchenv.WorkDir(cfg.WorkDir, "clusterbench")
	if err != nil {
		return err
	}
	began := time.Now()
	r := &runner{cfg: cfg, log: log, work: work, logDir: filepath.Join(work, "logs"),
		res: &Results{Date: began.UTC(), Command: cfg.Command, Versions: map[string]string{}, Short: cfg.Short}}
	r.res.Machine = machine()
	r.res.Cluster = clusterSettings()
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
	if err := r.setup(ctx); err != nil {
		return err
	}
	defer func() {
		for _, h := range r.hubs {
			r.stop(h)
		}
		if stopErr := r.ch.Stop(); stopErr != nil {
			r.logf("clickhouse stop: %v", stopErr)
		}
	}()

	// The bureaus' history, before any hub is measured.
	prefill, err := newHubs(1)
	if err != nil {
		return err
	}
	prefill[0].name = "hub-prefill"
	r.hubs = append(r.hubs, prefill[0])
	if err := r.writeConfig(prefill[0], "", nil); err != nil {
		return err
	}
	if err := r.start(ctx, prefill[0]); err != nil {
		return err
	}
	r.logf("storing %s of history for %d bureaus x %d series", cfg.LiveHistory, len(r.bureaus), cfg.LiveSeries)
	t0 := time.Now()
	if err := r.feeder.catchUp(ctx, []string{prefill[0].addr()}); err != nil {
		return fmt.Errorf("store the bureaus' history: %w", err)
	}
	r.logf("history stored in %.1f s", time.Since(t0).Seconds())
	r.stop(prefill[0])

	if cfg.SkipCost {
		r.note("cost phase skipped (-skip-cost)")
	} else if err := r.costPhase(ctx); err != nil {
		return fmt.Errorf("cost phase: %w", err)
	}
	if cfg.SkipFailover {
		r.note("failover phase skipped (-skip-failover)")
	} else if err := r.failoverPhase(ctx); err != nil {
		return fmt.Errorf("failover phase: %w", err)
	}
	r.res.Live.FeederFailures = r.feeder.failures
	if r.feeder.lastErr != nil {
		r.res.Live.FeederLastError = r.feeder.lastErr.Error()
	}
	r.res.Seconds = time.Since(began).Seconds()
	if err := benchenv.WriteJSON(filepath.Join(cfg.OutDir, "cluster.json"), r.res); err != nil {
		return err
	}
	md := Markdown(r.res)
	if err := os.WriteFile(filepath.Join(cfg.OutDir, "cluster.md"), []byte(md), 0o644); err != nil {
		return err
	}
	_, err = io.WriteString(log, md)
	return err
}

// setup builds the hub, writes certificates, the gossip key and rule
// files, generates the load and starts ClickHouse.
func (r *runner) setup(ctx context.Context) error {
	cfg := r.cfg
	if err := os.MkdirAll(r.logDir, 0o755); err != nil {
		return err
	}
	root, rootErr := benchenv.ModuleRoot()
	if rootErr == nil {
		r.res.Versions["bureauhub"] = benchenv.GitDescribe(root)
	}
	r.res.Versions["go"] = runtime.Version()
	r.hubBin = cfg.HubBinary
	if r.hubBin == "" {
		if rootErr != nil {
			return fmt.Errorf("-hub-binary: %w", rootErr)
		}
		dir := filepath.Join(r.work, "bin")
		r.logf("building cmd/hub into %s", dir)
		if err := e2e.Build(root, dir, "hub"); err != nil {
			return err
		}
		r.hubBin = filepath.Join(dir, "hub")
	}
	var err error
	pkiDir := filepath.Join(r.work, "pki")
	if err := os.MkdirAll(pkiDir, 0o700); err != nil {
		return err
	}
	if r.certs, err = pki.WriteDemoCerts(pkiDir, []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, 24*time.Hour); err != nil {
		return err
	}
	if r.caPEM, err = os.ReadFile(r.certs.CAFile); err != nil {
		return err
	}
	r.gossipKey = filepath.Join(pkiDir, "gossip.key")
	if err := os.WriteFile(r.gossipKey, []byte("clusterbench-gossip-key-32-bytes"), 0o600); err != nil {
		return err
	}

	// The shipped rule files, copied so that the run does not depend on
	// the working directory.
	shipped, err := shippedRules(root)
	if err != nil {
		return err
	}
	rulesDir := filepath.Join(r.work, "rules")
	if err := os.MkdirAll(rulesDir, 0o755); err != nil {
		return err
	}
	for _, f := range shipped {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		dst := filepath.Join(rulesDir, filepath.Base(f))
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return err
		}
		r.ruleFiles = append(r.ruleFiles, dst)
		r.res.Live.ShippedRuleFiles = append(r.res.Live.ShippedRuleFiles, "rules/"+filepath.Base(f))
	}

	r.tenants = []tenant{{apiTenant, "cross_bureau"}}
	for i := range cfg.Bureaus {
		b := fmt.Sprintf("bureau-%c", 'a'+i)
		r.bureaus = append(r.bureaus, b)
		r.tenants = append(r.tenants, tenant{b, "bureau"})
	}
	// One ingest tenant per cost run: the same samples each time, none
	// of them evaluated by the shipped rules (cross-bureau tenants get
	// only their own tenant_files).
	for i := range 2 * cfg.Rounds {
		r.tenants = append(r.tenants, tenant{fmt.Sprintf("load%d", i+1), "cross_bureau"})
	}
	r.res.Live.Bureaus = r.bureaus
	r.res.Live.SeriesPerBureau = cfg.LiveSeries
	r.res.Live.History = cfg.LiveHistory.String()
	r.feeder = newFeeder(r, r.bureaus, cfg.LiveSeries, cfg.LiveHistory)
	if !cfg.SkipCost {
		r.logf("generating %d series for the ingest load", cfg.Series)
		r.loadSet = ingest.NewSeriesSet(cfg.Series)
		// Yesterday, UTC: however fast the hub goes, no sample is in the
		// future, and the rules evaluated now never read them.
		day := time.Now().UTC().Truncate(24 * time.Hour).Add(-24 * time.Hour)
		r.loadBaseMs = day.Add(10 * time.Minute).UnixMilli()
	}

	chLog, err := os.Create(filepath.Join(r.logDir, "clickhouse.out"))
	if err != nil {
		return err
	}
	r.logf("starting clickhouse-server")
	if r.ch, err = chserver.Start(ctx, chserver.Options{Dir: filepath.Join(r.work, "clickhouse"), Binary: cfg.ClickHouseBinary, Log: chLog}); err != nil {
		chLog.Close()
		return err
	}
	if v, err := r.ch.Query(ctx, "SELECT version()"); err == nil {
		r.res.Versions["clickhouse"] = "ClickHouse " + strings.TrimSpace(v)
	}
	return nil
}

// shippedRules lists rules/*.yml of the module.
func shippedRules(root string) ([]string, error) {
	if root == "" {
		return nil, errors.New("the shipped rules/*.yml: not inside the bureauhub module")
	}
	files, err := filepath.Glob(filepath.Join(root, "rules", "*.yml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no rule files in %s/rules", root)
	}
	return files, nil
}

// clusterDefaults is hub/cluster's default config: what every cluster of
// the run uses, as an operator who sets no failure-detection field would.
func clusterDefaults() cluster.Config {
	var c cluster.Config
	c.SetDefaults()
	return c
}

// clusterSettings reports hub/cluster's defaults.
func clusterSettings() ClusterSettings {
	c := clusterDefaults()
	// memberlist: SuspicionMult x max(1, log10(n)) x ProbeInterval; with
	// n = 3 the log term is 1.
	scale := math.Max(1, math.Log10(3))
	return ClusterSettings{
		ProbeInterval: c.ProbeInterval.String(), ProbeTimeout: c.ProbeTimeout.String(), SuspicionMult: c.SuspicionMult,
		GossipInterval: c.GossipInterval.String(), Settle: c.Settle.String(),
		SuspicionTimeout: time.Duration(float64(c.SuspicionMult) * scale * float64(c.ProbeInterval)).String(),
	}
}

func machine() Machine {
	m := benchenv.ReadMachine()
	return Machine{CPUs: m.CPUs, CPUModel: m.CPUModel, MemGiB: m.MemGiB, Kernel: m.Kernel, LoadAvg: Float(benchenv.LoadAvg())}
}
