// Package scrape scrapes applications' Prometheus and OpenMetrics
// endpoints for the agent. Jobs are written in Prometheus's scrape_configs
// syntax; targets come from Prometheus's discovery packages (static, file
// and HTTP), are labelled and relabelled as Prometheus does, parsed with
// Prometheus's textparse, and every scrape's samples, staleness markers and
// report series (up, scrape_duration_seconds, ...) reach the durable sink
// in one batch.
package scrape

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/model/value"

	"github.com/bureauhub/bureauhub/agent/sink"
)

// Writer receives each scrape's series in a batch; *sink.Sink implements
// it.
type Writer interface {
	NewBatch(source string) *sink.Batch
	Unsupported(source, reason string, n int)
}

// acceptHeader is Prometheus's for its default scrape protocols: the text
// formats, OpenMetrics first.
const acceptHeader = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"

const userAgent = "bureauhub-agent"

// Manager runs a scrape loop per discovered target of every job.
type Manager struct {
	cfg      *Config
	w        Writer
	logger   *slog.Logger
	reg      prometheus.Registerer
	failures *prometheus.CounterVec

	mu   sync.Mutex
	jobs map[string]*job // set by Run
	wg   sync.WaitGroup  // loops
}

type job struct {
	cfg    *ScrapeConfig
	client *http.Client
	loops  map[uint64]*loop // by target labels' hash
}

// New returns a Manager for cfg from ParseConfig; Run starts it. reg gets
// per-target scrape health, bureauhub_agent_target_up and
// bureauhub_agent_target_scrape_duration_seconds{job, instance}, and
// bureauhub_agent_scrape_failures_total{job, reason}.
func New(cfg *Config, w Writer, logger *slog.Logger, reg prometheus.Registerer) *Manager {
	m := &Manager{cfg: cfg, w: w, logger: logger, reg: reg,
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_agent_scrape_failures_total",
			Help: "Scrapes that failed, by job and reason (http, parse, sample_limit, label_limit, missing_metric_name); a failed scrape keeps none of its samples, as in Prometheus.",
		}, []string{"job", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(targetHealth{m}, m.failures)
	}
	return m
}

var (
	targetUpDesc = prometheus.NewDesc("bureauhub_agent_target_up",
		"1 if the last scrape of the target succeeded, 0 if it failed (unknown targets are not listed).", []string{"job", "instance"}, nil)
	targetDurationDesc = prometheus.NewDesc("bureauhub_agent_target_scrape_duration_seconds",
		"Duration of the last scrape of the target.", []string{"job", "instance"}, nil)
)

// targetHealth reports each active target's last scrape.
type targetHealth struct{ m *Manager }

func (t targetHealth) Describe(ch chan<- *prometheus.Desc) {
	ch <- targetUpDesc
	ch <- targetDurationDesc
}

func (t targetHealth) Collect(ch chan<- prometheus.Metric) {
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	for name, j := range t.m.jobs {
		for _, l := range j.loops {
			up := l.health.Load()
			if up == healthUnknown {
				continue
			}
			ch <- prometheus.MustNewConstMetric(targetUpDesc, prometheus.GaugeValue, float64(up-1), name, l.instance)
			ch <- prometheus.MustNewConstMetric(targetDurationDesc, prometheus.GaugeValue,
				time.Duration(l.duration.Load()).Seconds(), name, l.instance)
		}
	}
}

// Run scrapes until ctx ends. Targets that discovery removes get
// staleness markers for their series, as in Prometheus; stopping the agent
// does not write any (the series go on after a restart).
func (m *Manager) Run(ctx context.Context) error {
	jobs := make(map[string]*job, len(m.cfg.ScrapeConfigs))
	for _, sc := range m.cfg.ScrapeConfigs {
		client, err := commoncfg.NewClientFromConfig(sc.HTTPClientConfig, sc.JobName, commoncfg.WithUserAgent(userAgent))
		if err != nil {
			return fmt.Errorf("scrape job %q: http client: %w", sc.JobName, err)
		}
		jobs[sc.JobName] = &job{cfg: sc, client: client, loops: map[uint64]*loop{}}
	}
	m.mu.Lock()
	m.jobs = jobs
	m.mu.Unlock()

	var sd sync.WaitGroup
	updates, err := m.discover(ctx, &sd)
	if err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			m.mu.Lock()
			for _, j := range m.jobs {
				for _, l := range j.loops {
					l.stop(false)
				}
			}
			m.mu.Unlock()
			m.wg.Wait()
			sd.Wait()
			return nil
		case tsets := <-updates:
			m.sync(ctx, tsets)
		}
	}
}

// discover returns the channel of target groups by job. When every job
// lists only static targets there is nothing to discover: the groups are
// sent once and no discovery manager runs (its sender wakes every 100 ms
// forever, a third of an idle agent's CPU).
func (m *Manager) discover(ctx context.Context, wg *sync.WaitGroup) (<-chan map[string][]*targetgroup.Group, error) {
	static := make(map[string][]*targetgroup.Group, len(m.cfg.ScrapeConfigs))
	allStatic := true
	for _, sc := range m.cfg.ScrapeConfigs {
		static[sc.JobName] = nil
		for _, c := range sc.ServiceDiscoveryConfigs {
			sc2, ok := c.(discovery.StaticConfig)
			if !ok {
				allStatic = false
				break
			}
			static[sc.JobName] = append(static[sc.JobName], sc2...)
		}
	}
	if allStatic {
		ch := make(chan map[string][]*targetgroup.Group, 1)
		ch <- static
		return ch, nil
	}
	sdMetrics, err := discovery.CreateAndRegisterSDMetrics(m.reg)
	if err != nil {
		return nil, fmt.Errorf("register discovery metrics: %w", err)
	}
	dm := discovery.NewManager(ctx, m.logger.With("component", "discovery"), m.reg, sdMetrics, discovery.Name("scrape"))
	if dm == nil {
		return nil, errors.New("create discovery manager")
	}
	sd := make(map[string]discovery.Configs, len(m.cfg.ScrapeConfigs))
	for _, sc := range m.cfg.ScrapeConfigs {
		sd[sc.JobName] = sc.ServiceDiscoveryConfigs
	}
	if err := dm.ApplyConfig(sd); err != nil {
		return nil, fmt.Errorf("apply discovery config: %w", err)
	}
	wg.Go(func() {
		if err := dm.Run(); err != nil && ctx.Err() == nil {
			m.logger.Error("discovery manager stopped", "err", err)
		}
	})
	return dm.SyncCh(), nil
}

// sync starts a loop for each new target of the jobs in tsets and stops
// the loops of targets no longer there. Jobs absent from tsets keep their
// targets.
func (m *Manager) sync(ctx context.Context, tsets map[string][]*targetgroup.Group) {
	lb := labels.NewBuilder(labels.EmptyLabels())
	for name, groups := range tsets {
		m.mu.Lock()
		j := m.jobs[name]
		m.mu.Unlock()
		if j == nil {
			continue
		}
		want := map[uint64]labels.Labels{}
		for _, g := range groups {
			if g == nil {
				continue
			}
			for i, tl := range g.Targets {
				lset, err := populateLabels(lb, j.cfg, tl, g.Labels)
				if err != nil {
					m.logger.Warn("target dropped", "job", name, "source", g.Source, "target", i, "err", err)
					continue
				}
				if !lset.IsEmpty() { // empty: dropped by relabel_configs
					want[lset.Hash()] = lset
				}
			}
		}
		m.mu.Lock()
		for h, l := range j.loops {
			if _, ok := want[h]; !ok {
				l.stop(true)
				delete(j.loops, h)
			}
		}
		for h, lset := range want {
			if _, ok := j.loops[h]; ok {
				continue
			}
			l := newLoop(ctx, m, j, lset, h)
			j.loops[h] = l
			m.wg.Go(l.run)
		}
		m.mu.Unlock()
	}
}

// populateLabels is Prometheus's scrape.PopulateLabels: target labels over
// group labels, the job's defaults where absent, relabel_configs, then
// checks; meta labels are removed and instance defaults to the address.
// Empty labels and a nil error mean relabeling dropped the target.
func populateLabels(lb *labels.Builder, cfg *ScrapeConfig, tLabels, tgLabels model.LabelSet) (labels.Labels, error) {
	lb.Reset(labels.EmptyLabels())
	for ln, lv := range tgLabels {
		lb.Set(string(ln), string(lv))
	}
	for ln, lv := range tLabels {
		lb.Set(string(ln), string(lv))
	}
	for _, l := range [...]labels.Label{
		{Name: model.JobLabel, Value: cfg.JobName},
		{Name: model.ScrapeIntervalLabel, Value: cfg.ScrapeInterval.String()},
		{Name: model.ScrapeTimeoutLabel, Value: cfg.ScrapeTimeout.String()},
		{Name: model.MetricsPathLabel, Value: cfg.MetricsPath},
		{Name: model.SchemeLabel, Value: cfg.Scheme},
	} {
		if lb.Get(l.Name) == "" {
			lb.Set(l.Name, l.Value)
		}
	}
	for k, v := range cfg.Params {
		if name := model.ParamLabelPrefix + k; len(v) > 0 && lb.Get(name) == "" {
			lb.Set(name, v[0])
		}
	}
	if !relabel.ProcessBuilder(lb, cfg.RelabelConfigs...) {
		return labels.EmptyLabels(), nil
	}
	addr := lb.Get(model.AddressLabel)
	if addr == "" {
		return labels.EmptyLabels(), errors.New("no address")
	}
	if strings.Contains(addr, "/") {
		return labels.EmptyLabels(), fmt.Errorf("%q is not a valid hostname", addr)
	}
	interval, err := model.ParseDuration(lb.Get(model.ScrapeIntervalLabel))
	if err != nil || interval == 0 {
		return labels.EmptyLabels(), fmt.Errorf("scrape interval %q: not a positive duration", lb.Get(model.ScrapeIntervalLabel))
	}
	timeout, err := model.ParseDuration(lb.Get(model.ScrapeTimeoutLabel))
	if err != nil || timeout == 0 {
		return labels.EmptyLabels(), fmt.Errorf("scrape timeout %q: not a positive duration", lb.Get(model.ScrapeTimeoutLabel))
	}
	if timeout > interval {
		return labels.EmptyLabels(), fmt.Errorf("scrape timeout %s is greater than scrape interval %s", timeout, interval)
	}
	lb.Range(func(l labels.Label) {
		if strings.HasPrefix(l.Name, model.MetaLabelPrefix) {
			lb.Del(l.Name)
		}
	})
	if lb.Get(model.InstanceLabel) == "" {
		lb.Set(model.InstanceLabel, addr)
	}
	res := lb.Labels()
	if err := res.Validate(func(l labels.Label) error {
		if !model.LabelValue(l.Value).IsValid() {
			return fmt.Errorf("invalid label value for %q: %q", l.Name, l.Value)
		}
		return nil
	}); err != nil {
		return labels.EmptyLabels(), err
	}
	return res, nil
}

const (
	healthUnknown int32 = iota
	healthDown
	healthUp
)

// loop scrapes one target every interval.
type loop struct {
	m        *Manager
	j        *job
	instance string
	url      string
	interval time.Duration
	timeout  time.Duration
	offset   time.Duration // of each scrape within the interval, from the target's hash
	target   labels.Labels // without the internal __ labels: added to every series
	report   [5]labels.Labels

	ctx     context.Context
	cancel  context.CancelFunc
	markEnd atomic.Bool // the target was removed: write staleness markers at the end

	health   atomic.Int32
	duration atomic.Int64 // of the last scrape, ns

	// Owned by run.
	iter   uint64            // scrapes attempted
	cache  map[string]*entry // by the series as exposed
	body   []byte            // the last scrape's body, reused
	gz     *gzip.Reader
	parsed labels.Labels
	lb     *labels.Builder
	st     *labels.SymbolTable
}

// entry is what the loop knows of a series it has seen: its labels after
// target labels and metric relabeling, and the scrapes that saw it and that
// wrote it, from which duplicates and vanished series are found.
type entry struct {
	lset    labels.Labels
	seen    uint64 // last scrape attempt that exposed it
	written uint64 // last successful scrape that wrote it
	dropped bool   // by metric_relabel_configs
	noStale bool   // exposed with its own timestamp: Prometheus writes no staleness marker for it
}

var reportNames = [5]string{"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling", "scrape_series_added"}

func newLoop(ctx context.Context, m *Manager, j *job, lset labels.Labels, hash uint64) *loop {
	interval, _ := model.ParseDuration(lset.Get(model.ScrapeIntervalLabel))
	timeout, _ := model.ParseDuration(lset.Get(model.ScrapeTimeoutLabel))
	params := url.Values{}
	for k, v := range j.cfg.Params {
		params[k] = slices.Clone(v)
	}
	lb := labels.NewBuilder(labels.EmptyLabels())
	lset.Range(func(l labels.Label) {
		if k, ok := strings.CutPrefix(l.Name, model.ParamLabelPrefix); ok {
			if len(params[k]) > 0 {
				params[k][0] = l.Value
			} else {
				params[k] = []string{l.Value}
			}
		}
		if !strings.HasPrefix(l.Name, model.ReservedLabelPrefix) {
			lb.Set(l.Name, l.Value)
		}
	})
	u := url.URL{Scheme: lset.Get(model.SchemeLabel), Host: lset.Get(model.AddressLabel),
		Path: lset.Get(model.MetricsPathLabel), RawQuery: params.Encode()}
	l := &loop{m: m, j: j, instance: lset.Get(model.InstanceLabel), url: u.String(),
		interval: time.Duration(interval), timeout: time.Duration(timeout),
		offset: time.Duration(hash % uint64(interval)),
		target: lb.Labels(), cache: map[string]*entry{}, lb: lb, st: labels.NewSymbolTable()}
	for i, name := range reportNames {
		lb.Set(model.MetricNameLabel, name)
		l.report[i] = lb.Labels()
	}
	l.ctx, l.cancel = context.WithCancel(ctx)
	return l
}

// stop ends the loop; markEnd writes staleness markers for the target's
// series, because discovery removed it.
func (l *loop) stop(markEnd bool) {
	l.markEnd.Store(markEnd)
	l.cancel()
}

// run scrapes at the target's offset in every interval, as Prometheus
// spreads its targets, until the loop is stopped.
func (l *loop) run() {
	next := time.Now().Truncate(l.interval).Add(l.offset)
	if next.Before(time.Now()) {
		next = next.Add(l.interval)
	}
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	for {
		select {
		case <-l.ctx.Done():
			if l.markEnd.Load() {
				l.endOfRun(time.Now().UnixMilli())
			}
			return
		case <-timer.C:
		}
		l.scrapeAndReport(time.Now())
		for !next.After(time.Now()) { // skips the intervals a slow scrape overran
			next = next.Add(l.interval)
		}
		timer.Reset(time.Until(next))
	}
}

// errScrape is a failed scrape with the reason it is counted under.
type errScrape struct {
	reason string
	err    error
}

func (e *errScrape) Error() string { return e.err.Error() }

// scrapeAndReport scrapes once and writes, in one batch, the samples (none
// if the scrape failed), staleness markers for the previous scrape's
// series that this one lacks (all of them if it failed) and the report
// series.
func (l *loop) scrapeAndReport(start time.Time) {
	iter := l.iter + 1
	ts := start.UnixMilli()
	b := l.m.w.NewBatch("scrape")
	body, ctype, err := l.fetch()
	duration := time.Since(start)
	if l.ctx.Err() != nil { // stopped mid-scrape: the agent is stopping or the target went away
		b.Discard()
		return
	}
	var res appendResult
	if err == nil {
		res, err = l.append(b, body, ctype, ts, iter)
		if err != nil {
			b.Discard()
			b = l.m.w.NewBatch("scrape")
		}
	}
	up := 1.0
	if err != nil {
		up = 0
		var es *errScrape
		reason := "http"
		if errors.As(err, &es) {
			reason = es.reason
		}
		l.m.failures.WithLabelValues(l.j.cfg.JobName, reason).Inc()
		l.m.logger.Debug("scrape failed", "job", l.j.cfg.JobName, "url", l.url, "err", err)
		res = appendResult{}
	}
	for k, e := range l.cache {
		switch {
		case err == nil && e.seen == iter:
			e.written = iter
		case e.written != 0 && e.written == l.iter && !e.dropped && !e.noStale:
			b.Add(e.lset, ts, math.Float64frombits(value.StaleNaN))
		}
		if err == nil && e.seen+1 < iter { // in neither this scrape nor the last
			delete(l.cache, k)
		}
	}
	for i, v := range [5]float64{up, duration.Seconds(), float64(res.scraped), float64(res.kept), float64(res.added)} {
		b.Add(l.report[i], ts, v)
	}
	if res.hist > 0 {
		l.m.w.Unsupported("scrape", "native_histogram", res.hist)
	}
	if res.dup > 0 {
		l.m.w.Unsupported("scrape", "duplicate_series", res.dup)
	}
	// Health first, so that whoever reads the scrape's up series can read
	// the same on /metrics.
	l.duration.Store(int64(duration))
	if err == nil {
		l.health.Store(healthUp)
	} else {
		l.health.Store(healthDown)
	}
	if cerr := b.Commit(); cerr != nil {
		l.m.logger.Error("write scrape to buffer", "job", l.j.cfg.JobName, "url", l.url, "err", cerr)
	}
	l.iter = iter
}

// endOfRun writes staleness markers for the last scrape's series and the
// report series of a target discovery removed.
func (l *loop) endOfRun(ts int64) {
	if l.iter == 0 {
		return
	}
	stale := math.Float64frombits(value.StaleNaN)
	b := l.m.w.NewBatch("scrape")
	for _, e := range l.cache {
		if e.written != 0 && e.written == l.iter && !e.dropped && !e.noStale {
			b.Add(e.lset, ts, stale)
		}
	}
	for _, r := range l.report {
		b.Add(r, ts, stale)
	}
	if err := b.Commit(); err != nil {
		l.m.logger.Error("write staleness markers to buffer", "job", l.j.cfg.JobName, "url", l.url, "err", err)
	}
}

// fetch gets the target's exposition into l.body.
func (l *loop) fetch() ([]byte, string, error) {
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.url, nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Accept", acceptHeader)
	if l.j.cfg.EnableCompression {
		req.Header.Set("Accept-Encoding", "gzip")
	} else {
		req.Header.Set("Accept-Encoding", "identity")
	}
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", strconv.FormatFloat(l.timeout.Seconds(), 'f', -1, 64))
	resp, err := l.j.client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("server returned HTTP status %s", resp.Status)
	}
	var r io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		if l.gz == nil {
			if l.gz, err = gzip.NewReader(resp.Body); err != nil {
				l.gz = nil
				return nil, "", fmt.Errorf("gzip body: %w", err)
			}
		} else if err := l.gz.Reset(resp.Body); err != nil {
			return nil, "", fmt.Errorf("gzip body: %w", err)
		}
		r = l.gz
	}
	if l.body, err = readBody(l.body, r); err != nil {
		return nil, "", fmt.Errorf("read body: %w", err)
	}
	return l.body, resp.Header.Get("Content-Type"), nil
}

// readBody reads r into buf, sized from the last body (its length): a
// little over it, so that a target's usual body needs no growing, and
// reallocated when far larger (after the doubling of a first read or a
// body that has shrunk), where bytes.Buffer would keep up to twice the
// body.
func readBody(buf []byte, r io.Reader) ([]byte, error) {
	want := len(buf) + len(buf)/16 + 4096
	if cap(buf) < want || cap(buf) > want+want/4 {
		buf = make([]byte, 0, want)
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

type appendResult struct {
	scraped, kept, added, dup, hist int
}

// append parses body into b: each series with the target's labels
// (honor_labels deciding conflicts as in Prometheus) and metric relabeling
// applied, both cached by the series as exposed, so that a series seen
// before costs a map lookup.
func (l *loop) append(b *sink.Batch, body []byte, ctype string, ts int64, iter uint64) (appendResult, error) {
	var res appendResult
	cfg := l.j.cfg
	p, err := textparse.New(body, ctype, l.st, textparse.ParserOptions{FallbackContentType: "text/plain"})
	if p == nil {
		return res, &errScrape{"parse", fmt.Errorf("content type %q: %w", ctype, err)}
	}
	for {
		et, err := p.Next()
		if errors.Is(err, io.EOF) {
			return res, nil
		}
		if err != nil {
			return res, &errScrape{"parse", fmt.Errorf("parse: %w", err)}
		}
		switch et {
		case textparse.EntrySeries:
		case textparse.EntryHistogram:
			res.hist++
			continue
		default:
			continue
		}
		met, tp, v := p.Series()
		res.scraped++
		e, ok := l.cache[string(met)]
		if !ok {
			p.Labels(&l.parsed)
			e = &entry{noStale: tp != nil && cfg.HonorTimestamps}
			if e.lset, e.dropped = l.sampleLabels(l.parsed); !e.dropped {
				if err := l.checkLabels(e.lset); err != nil {
					return res, err
				}
				res.added++
			}
			l.cache[string(met)] = e
		}
		if e.seen == iter {
			if !e.dropped {
				res.dup++
			}
			continue
		}
		e.seen = iter
		if e.dropped {
			continue
		}
		res.kept++
		if cfg.SampleLimit > 0 && res.kept > int(cfg.SampleLimit) {
			return res, &errScrape{"sample_limit", fmt.Errorf("sample_limit %d exceeded", cfg.SampleLimit)}
		}
		t := ts
		if tp != nil && cfg.HonorTimestamps {
			t = *tp
		}
		b.Add(e.lset, t, v)
	}
}

// sampleLabels adds the target's labels to a scraped series as Prometheus
// does: with honor_labels the scraped value wins, otherwise the target's,
// and the scraped one is kept as exported_<name>. Then metric relabeling;
// dropped reports a series it removed.
func (l *loop) sampleLabels(scraped labels.Labels) (lset labels.Labels, dropped bool) {
	lb := l.lb
	lb.Reset(scraped)
	if l.j.cfg.HonorLabels {
		l.target.Range(func(t labels.Label) {
			if !scraped.Has(t.Name) {
				lb.Set(t.Name, t.Value)
			}
		})
	} else {
		var conflicts []labels.Label
		l.target.Range(func(t labels.Label) {
			if v := scraped.Get(t.Name); v != "" {
				conflicts = append(conflicts, labels.Label{Name: t.Name, Value: v})
			}
			lb.Set(t.Name, t.Value)
		})
		// Shorter names first, as Prometheus, so that exported_x of a
		// conflict on x is settled before exported_exported_x.
		slices.SortStableFunc(conflicts, func(a, b labels.Label) int { return len(a.Name) - len(b.Name) })
		for _, c := range conflicts {
			name := c.Name
			for {
				name = model.ExportedLabelPrefix + name
				if lb.Get(name) == "" {
					lb.Set(name, c.Value)
					break
				}
			}
		}
	}
	if !relabel.ProcessBuilder(lb, l.j.cfg.MetricRelabelConfigs...) {
		return labels.EmptyLabels(), true
	}
	lset = lb.Labels()
	return lset, lset.IsEmpty()
}

// checkLabels applies the job's label limits and requires a metric name,
// failing the scrape as Prometheus does.
func (l *loop) checkLabels(lset labels.Labels) error {
	if lset.Get(model.MetricNameLabel) == "" {
		return &errScrape{"missing_metric_name", fmt.Errorf("series %s has no metric name after relabeling", lset)}
	}
	cfg := l.j.cfg
	if cfg.LabelLimit > 0 && lset.Len() > int(cfg.LabelLimit) {
		return &errScrape{"label_limit", fmt.Errorf("label_limit %d exceeded by %s (%d labels)", cfg.LabelLimit, lset, lset.Len())}
	}
	var err error
	lset.Range(func(lab labels.Label) {
		switch {
		case err != nil:
		case cfg.LabelNameLengthLimit > 0 && len(lab.Name) > int(cfg.LabelNameLengthLimit):
			err = &errScrape{"label_limit", fmt.Errorf("label_name_length_limit %d exceeded by label %q of %s", cfg.LabelNameLengthLimit, lab.Name, lset.Get(model.MetricNameLabel))}
		case cfg.LabelValueLengthLimit > 0 && len(lab.Value) > int(cfg.LabelValueLengthLimit):
			err = &errScrape{"label_limit", fmt.Errorf("label_value_length_limit %d exceeded by label %q of %s", cfg.LabelValueLengthLimit, lab.Name, lset.Get(model.MetricNameLabel))}
		}
	})
	return err
}
