// Package hubtest runs a real bureauhub hub, built from this repository,
// on the shared test ClickHouse (chtest) for the plugin's tests, and
// pushes data into it through the hub's federation gRPC API as a bureau's
// agent would. Import it only from tests whose TestMain calls chtest.Main.
package hubtest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	fpb "github.com/bureauhub/bureauhub/api/federationpb"
	"github.com/bureauhub/bureauhub/e2e"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chtest"
)

// Bureaus of every test hub: three bureaus and the cross-bureau data
// bureau. Transport never gets data, for the "no data" health check.
var Bureaus = []string{"consular", "health", "transport"}

// CrossBureau is the tenant whose token reads every bureau.
const CrossBureau = "databureau"

// Token is tenant's bearer token on test hubs.
func Token(tenant string) string { return tenant + "-token-0123456789abcdef" }

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// hubBinary builds cmd/hub once per test process.
func hubBinary(tb testing.TB) string {
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..", "..")
		binDir, buildErr = os.MkdirTemp("", "bureauhub-plugin-test-bin")
		if buildErr == nil {
			buildErr = e2e.Build(root, binDir, "hub")
		}
	})
	if buildErr != nil {
		tb.Fatalf("build hub: %v", buildErr)
	}
	return filepath.Join(binDir, "hub")
}

// Options add sections to the hub's configuration. Config strings may
// use {dir} (the hub's directory) and {port:NAME} (a free port, the same
// for the same NAME).
type Options struct {
	// Top is appended at the top level of the hub's YAML.
	Top string
	// Files are written into the hub's directory before it starts.
	Files map[string]string
}

// Hub is a running hub.
type Hub struct {
	URL      string // HTTP API
	GRPCAddr string
	Dir      string
	Ports    map[string]int
	proc     *e2e.Process

	mu   sync.Mutex
	seqs map[string]uint64 // agent id -> last sequence number sent
}

// Start runs a hub with a fresh database and the test tenants until the
// test ends; it skips the test when chtest has no ClickHouse.
func Start(t testing.TB, opts Options) *Hub {
	t.Helper()
	srv := chtest.Server(t)
	bin := hubBinary(t)
	db := chtest.NewDatabase(t)
	h := &Hub{Dir: t.TempDir(), Ports: map[string]int{}, seqs: map[string]uint64{}}
	port := func(name string) int {
		if p, ok := h.Ports[name]; ok {
			return p
		}
		p, err := e2e.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		h.Ports[name] = p
		return p
	}
	expand := func(s string) string {
		s = strings.ReplaceAll(s, "{dir}", h.Dir)
		return regexp.MustCompile(`\{port:(\w+)\}`).ReplaceAllStringFunc(s, func(m string) string {
			return fmt.Sprint(port(m[6 : len(m)-1]))
		})
	}
	h.GRPCAddr = fmt.Sprintf("127.0.0.1:%d", port("grpc"))
	h.URL = fmt.Sprintf("http://127.0.0.1:%d", port("http"))
	var tenants strings.Builder
	for _, tn := range append(append([]string{}, Bureaus...), CrossBureau) {
		p := filepath.Join(h.Dir, tn+".token")
		if err := os.WriteFile(p, []byte(Token(tn)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		role := "bureau"
		if tn == CrossBureau {
			role = "cross_bureau"
		}
		fmt.Fprintf(&tenants, "  - {name: %s, token_file: %s, role: %s}\n", tn, p, role)
	}
	for name, body := range opts.Files {
		if err := os.WriteFile(filepath.Join(h.Dir, name), []byte(expand(body)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fmt.Sprintf(`grpc_listen_address: %s
http_listen_address: %s
insecure_plaintext: true
shutdown_timeout: 10s
clickhouse: {addr: [%q], database: %s}
ingest:
  flush_interval: 100ms
tenants:
%s
%s
`, h.GRPCAddr, strings.TrimPrefix(h.URL, "http://"), srv.Addr(), db, tenants.String(), expand(opts.Top))
	cfgPath := filepath.Join(h.Dir, "hub.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := e2e.Start("hub", bin, []string{"-config.file", cfgPath, "-log.level", "debug"}, h.Dir)
	if err != nil {
		t.Fatal(err)
	}
	h.proc = p
	t.Cleanup(func() {
		if err := p.Stop(20 * time.Second); err != nil && !p.Exited() {
			t.Errorf("hub stop: %v", err)
		}
		if t.Failed() {
			t.Logf("hub log (tail):\n%s", Tail(p.Log(), 60))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := e2e.WaitHTTP(ctx, h.URL+"/-/healthy"); err != nil {
		t.Fatalf("hub: %v\n%s", err, Tail(p.Log(), 60))
	}
	return h
}

// Log is the hub's output so far.
func (h *Hub) Log() string { return h.proc.Log() }

// Push stores series as tenant through the federation API, as the
// bureau's agent does (the hub sets the bureau label), and fails the
// test unless every sample is accepted.
func (h *Hub) Push(tb testing.TB, tenant string, series ...prompb.TimeSeries) {
	tb.Helper()
	if err := h.push("plugin-test", tenant, series); err != nil {
		tb.Fatalf("push as %s: %v", tenant, err)
	}
}

// nextSeq numbers agent's batches. The hub takes a batch at or below an
// agent's highest stored sequence number for a duplicate, so each
// concurrent pusher is its own agent.
func (h *Hub) nextSeq(agent string) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seqs[agent]++
	return h.seqs[agent]
}

func (h *Hub) push(agent, tenant string, series []prompb.TimeSeries) error {
	conn, err := grpc.NewClient(h.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+Token(tenant)), 60*time.Second)
	defer cancel()
	var stream fpb.Federation_PushClient
	// send delivers one batch as an agent does: a hub that is starting or
	// overloaded (UNAVAILABLE, RESOURCE_EXHAUSTED) gets the same batch
	// (same sequence number, so never stored twice) again on a new stream.
	send := func(b *fpb.Batch) error {
		for {
			if stream == nil {
				if stream, err = fpb.NewFederationClient(conn).Push(ctx); err != nil {
					return err
				}
			}
			var ack *fpb.Ack
			err := stream.Send(b)
			if err == nil {
				ack, err = stream.Recv()
			}
			code := status.Code(err)
			if err == nil {
				code = codes.Code(ack.Code)
			}
			switch {
			case code == codes.Unavailable || code == codes.ResourceExhausted:
				stream = nil
				select {
				case <-ctx.Done():
					return fmt.Errorf("hub kept refusing the batch: %v", ctx.Err())
				case <-time.After(200 * time.Millisecond):
				}
				continue
			case err != nil:
				return err
			case code != codes.OK || (!ack.Duplicate && ack.AcceptedSamples != b.Samples):
				return fmt.Errorf("ack %v, %d of %d samples accepted: %s %v", code, ack.AcceptedSamples, b.Samples, ack.Message, ack.Rejections)
			}
			return nil
		}
	}
	// Batches of at most 5000 samples stay under the hub's batch limits.
	var batch []prompb.TimeSeries
	n := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		raw, err := (&prompb.WriteRequest{Timeseries: batch}).Marshal()
		if err != nil {
			return err
		}
		if err := send(&fpb.Batch{AgentId: agent, Seq: h.nextSeq(agent), Encoding: fpb.Encoding_ENCODING_SNAPPY_PROMPB,
			Payload: snappy.Encode(nil, raw), Samples: uint32(n)}); err != nil {
			return err
		}
		batch, n = batch[:0], 0
		return nil
	}
	for _, s := range series {
		for len(s.Samples) > 0 {
			k := min(len(s.Samples), 5000-n)
			batch = append(batch, prompb.TimeSeries{Labels: s.Labels, Samples: s.Samples[:k]})
			n += k
			s.Samples = s.Samples[k:]
			if n >= 5000 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if stream != nil {
		return stream.CloseSend()
	}
	return nil
}

// Series builds a series named name with label pairs.
func Series(name string, pairs ...string) prompb.TimeSeries {
	ls := []prompb.Label{{Name: "__name__", Value: name}}
	for i := 0; i+1 < len(pairs); i += 2 {
		ls = append(ls, prompb.Label{Name: pairs[i], Value: pairs[i+1]})
	}
	return prompb.TimeSeries{Labels: ls}
}

// Every adds value(t) every step over [from, to].
func Every(s prompb.TimeSeries, from, to time.Time, step time.Duration, value func(time.Time) float64) prompb.TimeSeries {
	for t := from; !t.After(to); t = t.Add(step) {
		s.Samples = append(s.Samples, prompb.Sample{Timestamp: t.UnixMilli(), Value: value(t)})
	}
	return s
}

// ForwardSelfMetrics emulates tenant's agent scraping the hub's own
// /metrics: every interval until the test ends it pushes the samples of
// the named metric families, with job="hub".
func (h *Hub) ForwardSelfMetrics(t testing.TB, tenant string, interval time.Duration, families ...string) {
	agent := fmt.Sprintf("plugin-test-self-%d", h.nextSeq("keepers"))
	h.loop(t, interval, func(ctx context.Context) {
		if series, err := h.scrape(ctx, families); err == nil && len(series) > 0 {
			if err := h.push(agent, tenant, series); err != nil && ctx.Err() == nil {
				t.Logf("forward self metrics: %v", err)
			}
		}
	})
}

// Keep pushes gen(now) as tenant every interval until the test ends, as
// a bureau's agent keeps scraping.
func (h *Hub) Keep(t testing.TB, tenant string, interval time.Duration, gen func(now time.Time) []prompb.TimeSeries) {
	agent := fmt.Sprintf("plugin-test-keep-%d", h.nextSeq("keepers"))
	h.loop(t, interval, func(ctx context.Context) {
		if err := h.push(agent, tenant, gen(time.Now())); err != nil && ctx.Err() == nil {
			t.Logf("keep pushing as %s: %v", tenant, err)
		}
	})
}

func (h *Hub) loop(t testing.TB, interval time.Duration, f func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			f(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

var sampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
var labelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// scrape reads the hub's /metrics (text format) for the families.
func (h *Hub) scrape(ctx context.Context, families []string) ([]prompb.TimeSeries, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.URL+"/metrics", nil)
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	want := map[string]bool{}
	for _, f := range families {
		want[f] = true
	}
	now := time.Now().UnixMilli()
	var out []prompb.TimeSeries
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := sampleRE.FindStringSubmatch(sc.Text())
		if m == nil || !want[m[1]] {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(m[3], &v); err != nil {
			continue
		}
		pairs := []string{"job", "hub", "instance", strings.TrimPrefix(h.URL, "http://")}
		for _, l := range labelRE.FindAllStringSubmatch(m[2], -1) {
			pairs = append(pairs, l[1], l[2])
		}
		s := Series(m[1], pairs...)
		s.Samples = []prompb.Sample{{Timestamp: now, Value: v}}
		out = append(out, s)
	}
	return out, sc.Err()
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitFor polls cond every 200 ms until it holds, failing the test with
// its last message after timeout.
func WaitFor(tb testing.TB, timeout time.Duration, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	var msg string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, msg = cond(); ok {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	tb.Fatalf("not within %s: %s", timeout, msg)
}
