package scrape

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"

	"github.com/bureauhub/bureauhub/agent/sink"
)

// recorder is a real sink whose buffer decodes and keeps every record.
type recorder struct {
	*sink.Sink
	mu     sync.Mutex
	series []prompb.TimeSeries
}

func newRecorder(tb testing.TB) *recorder {
	r := &recorder{}
	s, err := sink.New(r, sink.Identity{Bureau: "b", Cloud: "c", Cluster: "k", Instance: "i"}, 2000, nil)
	if err != nil {
		tb.Fatal(err)
	}
	r.Sink = s
	return r
}

// Append is the buffer's side: payload is a record as the hub receives it.
func (r *recorder) Append(payload []byte, _ int) (uint64, error) {
	raw, err := snappy.Decode(nil, payload)
	if err != nil {
		return 0, err
	}
	var wr prompb.WriteRequest
	if err := wr.Unmarshal(raw); err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.series = append(r.series, wr.Timeseries...)
	return uint64(len(r.series)), nil
}

// sample is one recorded sample with its series' labels.
type sample struct {
	labels map[string]string
	t      int64
	v      float64
}

// samples returns the recorded samples of series holding every label of
// match, in the order written.
func (r *recorder) samples(match map[string]string) []sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []sample
	for _, s := range r.series {
		ls := map[string]string{}
		for _, l := range s.Labels {
			ls[l.Name] = l.Value
		}
		ok := true
		for k, v := range match {
			if ls[k] != v {
				ok = false
			}
		}
		if ok {
			for _, smp := range s.Samples {
				out = append(out, sample{ls, smp.Timestamp, smp.Value})
			}
		}
	}
	return out
}

func (r *recorder) find(name string, pred func(float64) bool) bool {
	for _, s := range r.samples(map[string]string{"__name__": name}) {
		if pred(s.v) {
			return true
		}
	}
	return false
}

// waitFor polls cond until it holds or 30 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// run parses cfgText (with dir for relative paths) and runs a Manager
// into rec until the test ends.
func run(t *testing.T, cfgText, dir string, rec *recorder) *prometheus.Registry {
	t.Helper()
	cfg, err := ParseConfig([]byte(cfgText), dir)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := New(cfg, rec, slog.New(slog.DiscardHandler), reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return reg
}

func isStale(v float64) bool { return value.IsStaleNaN(v) }

// TestStalenessMarkers scrapes a target whose series disappears: the agent
// must write Prometheus's staleness marker for it, as Prometheus does, so
// that queries stop returning it at once rather than after the lookback.
func TestStalenessMarkers(t *testing.T) {
	t.Parallel()
	var scrapes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := scrapes.Add(1)
		fmt.Fprintln(w, "# TYPE kept gauge\nkept 1")
		if n <= 2 {
			fmt.Fprintln(w, "# TYPE vanishing gauge\nvanishing 1")
		}
	}))
	defer srv.Close()
	rec := newRecorder(t)
	run(t, fmt.Sprintf(`
global: {scrape_interval: 1s, scrape_timeout: 500ms}
scrape_configs:
  - job_name: app
    static_configs: [{targets: [%q]}]
`, srv.Listener.Addr().String()), "", rec)

	waitFor(t, "a staleness marker for the vanished series", func() bool { return rec.find("vanishing", isStale) })
	if !rec.find("kept", func(v float64) bool { return v == 1 }) || rec.find("kept", math.IsNaN) {
		t.Errorf("the series still exposed was marked stale or not written")
	}
	// One marker, the last sample: not one per later scrape, and no value
	// after it.
	waitFor(t, "two more scrapes", func() bool { return len(rec.samples(map[string]string{"__name__": "kept"})) >= 5 })
	got := rec.samples(map[string]string{"__name__": "vanishing"})
	stale := 0
	for _, s := range got {
		if isStale(s.v) {
			stale++
		}
	}
	if stale != 1 || !isStale(got[len(got)-1].v) {
		t.Errorf("vanishing: %d staleness markers in %d samples, want exactly one, last", stale, len(got))
	}
}

// TestLabels checks what Prometheus does to a scraped series: target
// labels added (a conflicting scraped label kept as exported_<name>, or
// winning with honor_labels), relabel_configs on the target, params in the
// URL, metric_relabel_configs, exposed timestamps honoured, gzip, and the
// report series with the target's labels.
func TestLabels(t *testing.T) {
	t.Parallel()
	var urls sync.Map // of the requests
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		urls.Store(r.URL.String(), true)
		if r.Header.Get("X-Prometheus-Scrape-Timeout-Seconds") == "" {
			http.Error(w, "no scrape timeout header", http.StatusBadRequest)
			return
		}
		body := "# TYPE app_requests_total counter\n" +
			`app_requests_total{job="exposed",code="200"} 7` + "\n" +
			`app_requests_total{job="exposed",code="500"} 1` + "\n" +
			"app_stamped 3 1700000000000\n" +
			"go_goroutines 12\n"
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			zw := gzip.NewWriter(w)
			io.WriteString(zw, body)
			zw.Close()
			return
		}
		http.Error(w, "no gzip asked for", http.StatusBadRequest)
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	rec := newRecorder(t)
	reg := run(t, fmt.Sprintf(`
global: {scrape_interval: 1s, scrape_timeout: 500ms}
scrape_configs:
  - job_name: plain
    params: {module: [m1]}
    static_configs: [{targets: [%[1]q, "dropped.invalid:1"], labels: {env: prod}}]
    relabel_configs:
      - {source_labels: [__address__], regex: 'dropped.*', action: drop}
      - {target_label: instance, replacement: app-1}
    metric_relabel_configs:
      - {source_labels: [__name__], regex: go_.*, action: drop}
  - job_name: honoured
    honor_labels: true
    static_configs: [{targets: [%[1]q]}]
`, addr), "", rec)

	waitFor(t, "both jobs' up series", func() bool {
		return len(rec.samples(map[string]string{"__name__": "up", "job": "plain"})) > 0 &&
			len(rec.samples(map[string]string{"__name__": "up", "job": "honoured"})) > 0
	})
	for _, tc := range []struct {
		name  string
		match map[string]string
		want  int // series expected to hold the labels
	}{
		{"target labels win, exposed job kept as exported_job",
			map[string]string{"__name__": "app_requests_total", "job": "plain", "exported_job": "exposed", "instance": "app-1", "env": "prod", "code": "200"}, 1},
		{"honor_labels keeps the exposed job",
			map[string]string{"__name__": "app_requests_total", "job": "exposed", "instance": addr, "code": "500"}, 1},
		{"metric_relabel_configs dropped go_*",
			map[string]string{"__name__": "go_goroutines", "job": "plain"}, 0},
		{"not dropped without metric relabeling",
			map[string]string{"__name__": "go_goroutines", "job": "honoured"}, 1},
		{"target dropped by relabel_configs",
			map[string]string{"instance": "dropped.invalid:1"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rec.samples(tc.match)
			if (len(got) > 0) != (tc.want > 0) {
				t.Fatalf("%d samples match %v, want them present: %v", len(got), tc.match, tc.want > 0)
			}
		})
	}
	up := rec.samples(map[string]string{"__name__": "up", "job": "plain"})
	if up[0].v != 1 || up[0].labels["instance"] != "app-1" || up[0].labels["env"] != "prod" {
		t.Errorf("up of job plain: %+v, want 1 with the target's labels", up[0])
	}
	if _, ok := urls.Load("/metrics?module=m1"); !ok {
		t.Errorf("job plain's params not in the URL: no request for /metrics?module=m1")
	}
	st := rec.samples(map[string]string{"__name__": "app_stamped", "job": "plain"})
	if len(st) == 0 || st[0].t != 1700000000000 {
		t.Errorf("app_stamped: %+v, want the exposed timestamp 1700000000000", st)
	}
	post := rec.samples(map[string]string{"__name__": "scrape_samples_post_metric_relabeling", "job": "plain"})
	scraped := rec.samples(map[string]string{"__name__": "scrape_samples_scraped", "job": "plain"})
	if len(post) == 0 || post[0].v != 3 || scraped[0].v != 4 {
		t.Errorf("scraped %v, kept %v: want 4 and 3", scraped, post)
	}
	if n := testutil.CollectAndCount(reg, "bureauhub_agent_target_up"); n != 2 {
		t.Errorf("bureauhub_agent_target_up has %d targets, want 2 (the dropped one is not a target)", n)
	}
}

// TestFailedScrape: a scrape over sample_limit keeps none of its samples,
// reports up 0, and marks the previous scrape's series stale; a target
// that stops answering likewise.
func TestFailedScrape(t *testing.T) {
	t.Parallel()
	var scrapes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		switch n := scrapes.Add(1); {
		case n == 1:
			fmt.Fprintln(w, "a 1\nb 1")
		case n == 2:
			fmt.Fprintln(w, "a 2\nb 2\nc 2") // over sample_limit
		default:
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	rec := newRecorder(t)
	reg := run(t, fmt.Sprintf(`
scrape_configs:
  - job_name: app
    scrape_interval: 1s
    sample_limit: 2
    static_configs: [{targets: [%q]}]
`, srv.Listener.Addr().String()), "", rec)

	waitFor(t, "three scrapes reported", func() bool { return len(rec.samples(map[string]string{"__name__": "up"})) >= 3 })
	up := rec.samples(map[string]string{"__name__": "up"})
	if up[0].v != 1 || up[1].v != 0 || up[2].v != 0 {
		t.Errorf("up: %v %v %v, want 1 0 0", up[0].v, up[1].v, up[2].v)
	}
	for _, name := range []string{"a", "b"} {
		got := rec.samples(map[string]string{"__name__": name})
		if len(got) != 2 || got[0].v != 1 || !value.IsStaleNaN(got[1].v) {
			t.Errorf("%s: %v, want 1 then a staleness marker only", name, got)
		}
	}
	if got := rec.samples(map[string]string{"__name__": "c"}); len(got) != 0 {
		t.Errorf("c of the failed scrape was written: %v", got)
	}
	if v := failures(t, reg, "sample_limit"); v != 1 {
		t.Errorf("sample_limit failures: %v, want 1", v)
	}
}

// failures returns bureauhub_agent_scrape_failures_total for reason.
func failures(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "bureauhub_agent_scrape_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestFileSDRemoval: a target removed from a file_sd file gets staleness
// markers for its series and its up, as in Prometheus.
func TestFileSDRemoval(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "app_up 1")
	}))
	defer srv.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "targets.json")
	write := func(targets string) {
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, []byte(`[{"targets": [`+targets+`], "labels": {"team": "visa"}}]`), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf("%q", srv.Listener.Addr().String()))
	rec := newRecorder(t)
	run(t, `
scrape_configs:
  - job_name: app
    scrape_interval: 1s
    file_sd_configs: [{files: [targets.json], refresh_interval: 1s}]
`, dir, rec)

	waitFor(t, "a scrape of the discovered target", func() bool {
		return rec.find("app_up", func(v float64) bool { return v == 1 })
	})
	if got := rec.samples(map[string]string{"__name__": "app_up"}); got[0].labels["team"] != "visa" {
		t.Errorf("group label team missing: %v", got[0].labels)
	}
	write("")
	waitFor(t, "staleness markers for the removed target", func() bool {
		return rec.find("app_up", isStale) && rec.find("up", isStale)
	})
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, wantErr string
	}{
		{"unsupported discovery", `
scrape_configs:
  - job_name: k
    kubernetes_sd_configs: [{role: pod}]`, "field kubernetes_sd_configs is not supported by the agent"},
		{"duplicate job", `
scrape_configs:
  - {job_name: a}
  - {job_name: a}`, `scrape_configs[1].job_name: "a" is also the name of scrape_configs[0]`},
		{"no job name", `
scrape_configs:
  - {scrape_interval: 5s}`, "scrape_configs[0] (job \"\").job_name: missing"},
		{"timeout over interval", `
scrape_configs:
  - {job_name: a, scrape_interval: 5s, scrape_timeout: 6s}`, `scrape_configs[0] (job "a").scrape_timeout: 6s is greater than scrape_interval 5s`},
		{"bad scheme", `
scrape_configs:
  - {job_name: a, scheme: ftp}`, `scrape_configs[0] (job "a").scheme: "ftp"`},
		{"bad relabel", `
scrape_configs:
  - job_name: a
    metric_relabel_configs: [{action: hashmod, target_label: x}]`, `scrape_configs[0] (job "a").metric_relabel_configs[0]: relabel configuration for hashmod requires non-zero modulus`},
		{"global timeout over interval", `
global: {scrape_interval: 5s, scrape_timeout: 10s}`, "global.scrape_timeout"},
		{"unknown global", `
global: {evaluation_interval: 5s}`, "field evaluation_interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml), "")
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}

	cfg, err := ParseConfig([]byte(`
global: {scrape_interval: 30s}
scrape_configs:
  - {job_name: a, static_configs: [{targets: ["x:1"]}]}
  - {job_name: b, scrape_interval: 5s, honor_timestamps: false, tls_config: {ca_file: ca.pem}}
`), "/etc/agent")
	if err != nil {
		t.Fatal(err)
	}
	a, b := cfg.ScrapeConfigs[0], cfg.ScrapeConfigs[1]
	short, err := ParseConfig([]byte(`
global: {scrape_interval: 1s}
scrape_configs: [{job_name: a}]`), "")
	if err != nil {
		t.Fatalf("a global interval below the default timeout: %v", err)
	}
	if to := short.ScrapeConfigs[0].ScrapeTimeout.String(); to != "1s" {
		t.Errorf("timeout under a 1s global interval: %s, want 1s", to)
	}
	if a.ScrapeInterval.String() != "30s" || a.ScrapeTimeout.String() != "10s" || a.MetricsPath != "/metrics" || a.Scheme != "http" || !a.HonorTimestamps || !a.EnableCompression {
		t.Errorf("defaults of job a: %+v", a)
	}
	if b.ScrapeTimeout.String() != "5s" || b.HonorTimestamps {
		t.Errorf("job b: timeout %s (want the interval, 5s, below the global 10s), honor_timestamps %v", b.ScrapeTimeout, b.HonorTimestamps)
	}
	if b.HTTPClientConfig.TLSConfig.CAFile != "/etc/agent/ca.pem" {
		t.Errorf("ca_file %q, want it resolved against the config's directory", b.HTTPClientConfig.TLSConfig.CAFile)
	}
}

type countingQueue struct{ records, samples int }

func (q *countingQueue) Append(_ []byte, samples int) (uint64, error) {
	q.records++
	q.samples += samples
	return uint64(q.records), nil
}

// BenchmarkAppend parses one 10,000-series exposition of a target seen
// before and encodes it into buffer records (the buffer only counts
// them): the agent's work per scrape, HTTP aside.
// Run: go test -run '^$' -bench Append -benchmem ./agent/scrape/
func BenchmarkAppend(b *testing.B) {
	const n = 10_000
	var body strings.Builder
	for i := range n {
		fmt.Fprintf(&body, "metric_%d{series=\"%d\",path=\"/api/v1/resource\"} %d\n", i%100, i/100, i)
	}
	q := &countingQueue{}
	s, err := sink.New(q, sink.Identity{Bureau: "b", Cloud: "c", Cluster: "k", Instance: "i"}, 2000, nil)
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := ParseConfig([]byte(`scrape_configs: [{job_name: app, static_configs: [{targets: ["target:9100"]}]}]`), "")
	if err != nil {
		b.Fatal(err)
	}
	m := New(cfg, s, slog.New(slog.DiscardHandler), nil)
	j := &job{cfg: cfg.ScrapeConfigs[0]}
	lset, err := populateLabels(labels.NewBuilder(labels.EmptyLabels()), j.cfg, model.LabelSet{"__address__": "target:9100"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	l := newLoop(context.Background(), m, j, lset, lset.Hash())
	text := []byte(body.String())
	var iter uint64
	for b.Loop() {
		iter++
		batch := s.NewBatch("scrape")
		res, err := l.append(batch, text, "text/plain; version=0.0.4", 1763597400000, iter)
		if err != nil || res.kept != n {
			b.Fatalf("kept %d, err %v", res.kept, err)
		}
		if err := batch.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	if q.samples != b.N*n {
		b.Fatalf("buffered %d samples, want %d", q.samples, b.N*n)
	}
}

// TestReadBody: bodies read whole, and the buffer kept for the next read
// stays near the size of the last body rather than up to twice it.
func TestReadBody(t *testing.T) {
	var buf []byte
	for _, n := range []int{0, 10, 1 << 20, 1<<20 + 5000, 300_000, 300_000} {
		body := strings.Repeat("x", n)
		got, err := readBody(buf, iotest.HalfReader(strings.NewReader(body)))
		if err != nil || string(got) != body {
			t.Fatalf("read %d bytes: got %d, err %v", n, len(got), err)
		}
		buf = got
	}
	if c := cap(buf); c > 300_000*2 {
		t.Errorf("buffer of %d bytes kept for 300,000-byte bodies", c)
	}
	if _, err := readBody(nil, iotest.ErrReader(io.ErrUnexpectedEOF)); err == nil {
		t.Error("a failed read returned no error")
	}
}
