package querybench

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// bureaus are the tenants; every series carries its bureau label (the
// hub's tenant label) and its cloud.
var bureaus = []struct{ name, cloud string }{{"alpha", "aws"}, {"beta", "gcp"}, {"gamma", "onprem"}}

// Series per host (node_exporter and our agent's shipping counter) and per
// API instance; the rest of the requested series count is padding
// (hardware temperatures).
const (
	seriesPerHost = 53
	seriesPerAPI  = 110
)

// Dataset is the generated data: which series, and the sample times.
type Dataset struct {
	Series   []SeriesDef
	End      time.Time // exclusive; every sample is before End
	Span     time.Duration
	Interval time.Duration
	// Hosts and APIs count node_exporter hosts and API instances over all
	// bureaus; Padding counts the hardware temperature series.
	Hosts, APIs, Padding int
	// OneHost is the instance of the selective query.
	OneHost string
}

// SeriesDef is one generated series.
type SeriesDef struct {
	Labels labels.Labels
	Bureau string
	// OffsetMillis places the series' samples within the interval, as a
	// scrape target's offset does; always on a half second, so that no
	// sample falls on a query step's window boundary (where Prometheus 2
	// and 3 differ: closed versus left-open range selectors).
	OffsetMillis int64
	gen          generator
}

// Samples is the number of samples per series.
func (d *Dataset) Samples() int { return int(d.Span / d.Interval) }

// Timestamps fills ts (len Samples) with s's sample times in milliseconds.
func (d *Dataset) Timestamps(s *SeriesDef, ts []int64) {
	first := d.End.Add(-d.Span).UnixMilli() + s.OffsetMillis
	step := d.Interval.Milliseconds()
	for j := range ts {
		ts[j] = first + int64(j)*step
	}
}

// Values fills out (len Samples) with s's values at ts.
func (d *Dataset) Values(s *SeriesDef, ts []int64, out []float64) {
	s.gen.fill(ts, d.Interval.Seconds(), out)
}

// NewDataset builds the series of a run: about half the series are
// node_exporter host metrics, the rest API instances' request counters and
// classic histograms, booking and health-code scan metrics (what the
// shipped rules read), padded to exactly n series. end is rounded down to
// the minute.
func NewDataset(n int, span, interval time.Duration, end time.Time, seed uint64) (*Dataset, error) {
	hosts := max(1, int(math.Round(float64(n)*0.5/float64(seriesPerHost*len(bureaus)))))
	apis := (n - hosts*seriesPerHost*len(bureaus)) / (seriesPerAPI * len(bureaus))
	if apis < 1 {
		apis = 1
		hosts = (n - seriesPerAPI*len(bureaus)) / (seriesPerHost * len(bureaus))
	}
	if hosts < 1 {
		return nil, fmt.Errorf("%d series are too few for one host and one API instance per bureau", n)
	}
	d := &Dataset{End: end.Truncate(time.Minute), Span: span, Interval: interval,
		Hosts: hosts * len(bureaus), APIs: apis * len(bureaus)}
	g := &builder{seed: seed, interval: interval, steps: int(span / interval), start: d.End.Add(-span)}
	target := 0
	var hostBase [][]string
	for _, b := range bureaus {
		for i := range hosts {
			base := []string{"bureau", b.name, "cloud", b.cloud, "cluster", fmt.Sprintf("prod-%d", i%2+1),
				"instance", fmt.Sprintf("%s-node-%02d:9100", b.name, i)}
			hostBase = append(hostBase, base)
			g.host(b.name, base, target)
			target++
		}
		for i := range apis {
			base := []string{"bureau", b.name, "cloud", b.cloud, "cluster", fmt.Sprintf("prod-%d", i%2+1),
				"instance", fmt.Sprintf("%s-api-%02d:8080", b.name, i), "job", "api"}
			g.api(b.name, base, target, i%7 == 3)
			target++
		}
	}
	d.Padding = n - len(g.series)
	for p := range d.Padding {
		h := p % len(hostBase)
		base := hostBase[h]
		g.gauge(base[1], h, join(base, "__name__", "node_hwmon_temp_celsius", "job", "node",
			"chip", "platform_coretemp_0", "sensor", fmt.Sprintf("temp%d", p/len(hostBase)+1)),
			gaugeGen{base: 48 + float64(p%13), amp: 0.15, noise: 0.02, quantum: 1})
	}
	d.Series = g.series
	slices.SortFunc(d.Series, func(a, b SeriesDef) int { return labels.Compare(a.Labels, b.Labels) })
	d.OneHost = fmt.Sprintf("beta-node-%02d:9100", hosts/2)
	return d, nil
}

type builder struct {
	seed     uint64
	interval time.Duration
	steps    int
	start    time.Time
	series   []SeriesDef
}

func join(base []string, extra ...string) []string {
	return append(slices.Clone(base), extra...)
}

// offset is a target's scrape offset: a whole number of seconds plus half
// a second, below the interval.
func (g *builder) offset(target int) int64 {
	secs := int64(g.interval / time.Second)
	return (int64(target)*7919%secs)*1000 + 500
}

func (g *builder) add(bureau string, target int, kv []string, gen generator) {
	g.series = append(g.series, SeriesDef{Labels: labels.FromStrings(kv...), Bureau: bureau, OffsetMillis: g.offset(target), gen: gen})
}

func (g *builder) rng(key string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(key))
	return rand.New(rand.NewPCG(g.seed, h.Sum64()))
}

func (g *builder) seedOf(kv []string) uint64 {
	h := fnv.New64a()
	for _, s := range kv {
		h.Write([]byte(s))
		h.Write([]byte{0xff})
	}
	return h.Sum64() ^ g.seed*0x9e3779b97f4a7c15
}

func (g *builder) counter(bureau string, target int, kv []string, c counterGen) {
	c.seed = g.seedOf(kv)
	g.add(bureau, target, kv, c)
}

func (g *builder) gauge(bureau string, target int, kv []string, c gaugeGen) {
	c.seed = g.seedOf(kv)
	g.add(bureau, target, kv, c)
}

func (g *builder) host(bureau string, base []string, target int) {
	r := g.rng(base[7])
	node := func(extra ...string) []string { return join(base, append([]string{"job", "node"}, extra...)...) }
	busy := 0.2 + r.Float64()
	phase := r.Float64() * 0.5
	modes := []struct {
		mode string
		rate float64
	}{{"user", 0.15}, {"system", 0.06}, {"iowait", 0.02}, {"irq", 0.003}, {"softirq", 0.012}, {"nice", 0.002}, {"steal", 0.004}}
	for cpu := range 4 {
		nonIdle := 0.0
		for _, m := range modes {
			rate := m.rate * busy
			nonIdle += rate
			g.counter(bureau, target, node("__name__", "node_cpu_seconds_total", "cpu", strconv.Itoa(cpu), "mode", m.mode),
				counterGen{perSec: rate, div: 100, noise: 0.3, amp: 0.5, phase: phase, start: 1e5 * rate})
		}
		g.counter(bureau, target, node("__name__", "node_cpu_seconds_total", "cpu", strconv.Itoa(cpu), "mode", "idle"),
			counterGen{perSec: 1 - nonIdle, div: 100, noise: 0.02, amp: 0.1 * nonIdle, phase: phase + math.Pi, start: 1e5})
	}
	total := float64(int64(8) << (r.IntN(3) + 30))
	g.gauge(bureau, target, node("__name__", "node_memory_MemTotal_bytes"), gaugeGen{base: total, quantum: 1})
	g.gauge(bureau, target, node("__name__", "node_memory_MemAvailable_bytes"),
		gaugeGen{base: total * (0.3 + 0.3*r.Float64()), amp: 0.25, phase: phase, noise: 0.02, quantum: 4096})
	g.gauge(bureau, target, node("__name__", "node_load1"), gaugeGen{base: 4 * busy, amp: 0.5, phase: phase, noise: 0.2, quantum: 0.01})
	g.gauge(bureau, target, node("__name__", "node_load5"), gaugeGen{base: 4 * busy, amp: 0.5, phase: phase, noise: 0.05, quantum: 0.01})
	g.add(bureau, target, node("__name__", "node_time_seconds"), timeGen{})
	g.gauge(bureau, target, node("__name__", "node_boot_time_seconds"),
		gaugeGen{base: float64(g.start.Unix() - int64(r.IntN(90*86400))), quantum: 1})
	for _, dev := range []struct {
		name   string
		rx, tx float64
	}{{"eth0", 2e6 * busy, 5e5 * busy}, {"lo", 1e4, 1e4}} {
		g.counter(bureau, target, node("__name__", "node_network_receive_bytes_total", "device", dev.name),
			counterGen{perSec: dev.rx, div: 1, noise: 0.4, amp: 0.6, phase: phase, start: dev.rx * 1e5})
		g.counter(bureau, target, node("__name__", "node_network_transmit_bytes_total", "device", dev.name),
			counterGen{perSec: dev.tx, div: 1, noise: 0.4, amp: 0.6, phase: phase, start: dev.tx * 1e5})
	}
	for _, fs := range []struct{ device, fstype, mount string }{{"/dev/vda1", "ext4", "/"}, {"/dev/vdb", "xfs", "/var/lib/data"}} {
		size := float64(int64(50+r.IntN(450)) << 30)
		kv := []string{"device", fs.device, "fstype", fs.fstype, "mountpoint", fs.mount}
		g.gauge(bureau, target, node(append([]string{"__name__", "node_filesystem_size_bytes"}, kv...)...), gaugeGen{base: size, quantum: 1})
		g.gauge(bureau, target, node(append([]string{"__name__", "node_filesystem_avail_bytes"}, kv...)...),
			gaugeGen{base: size * (0.2 + 0.6*r.Float64()), drift: -size * 1e-7, noise: 0.001, quantum: 4096})
	}
	for _, dev := range []string{"vda", "vdb"} {
		g.counter(bureau, target, node("__name__", "node_disk_read_bytes_total", "device", dev),
			counterGen{perSec: 3e5 * busy, div: 1, noise: 0.8, amp: 0.5, phase: phase, start: 1e10})
		g.counter(bureau, target, node("__name__", "node_disk_written_bytes_total", "device", dev),
			counterGen{perSec: 8e5 * busy, div: 1, noise: 0.8, amp: 0.5, phase: phase, start: 3e10})
		g.counter(bureau, target, node("__name__", "node_disk_io_time_seconds_total", "device", dev),
			counterGen{perSec: 0.05 * busy, div: 1000, noise: 0.5, amp: 0.5, phase: phase, start: 5e3})
	}
	// The agent's shipping counter is scraped by the agent itself: another
	// target, another offset.
	g.counter(bureau, target+100_000, join(base, "__name__", "bureauhub_agent_ship_acked_samples_total", "job", "bureauhub-agent"),
		counterGen{perSec: 4500.0 / 15, div: 1, noise: 0.05, start: 1e6})
}

var (
	latencyBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, math.Inf(1)}
	handlers      = []struct {
		path   string
		rate   float64 // requests/s
		median float64 // seconds
	}{
		{"/api/v1/visa/apply", 20, 0.08}, {"/api/v1/visa/status", 50, 0.03}, {"/api/v1/healthcode/scan", 80, 0.12},
		{"/api/v1/booking", 15, 0.25}, {"/healthz", 1, 0.002},
	}
	codes = []struct {
		code  string
		share float64
	}{{"200", 0.95}, {"400", 0.02}, {"404", 0.025}, {"500", 0.005}}
)

func (g *builder) api(bureau string, base []string, target int, restarts bool) {
	r := g.rng(base[7])
	load := 0.5 + r.Float64()
	phase := r.Float64() * 0.5
	resetAt := -1
	if restarts {
		resetAt = g.steps/2 + r.IntN(max(1, g.steps/4))
	}
	for _, h := range handlers {
		for _, c := range codes {
			g.counter(bureau, target, join(base, "__name__", "http_requests_total", "handler", h.path, "code", c.code),
				counterGen{perSec: h.rate * c.share * load, div: 1, noise: 0.3, amp: 0.6, phase: phase, resetAt: resetAt, start: 1e6 * c.share})
		}
		g.histogram(bureau, target, base, "http_request_duration_seconds", []string{"handler", h.path},
			histGen{perSec: h.rate * load, median: h.median, sigma: 0.7, amp: 0.6, phase: phase, resetAt: resetAt})
	}
	// The booking service's success-ratio inputs (what the SLI rule reads)
	// and one outcome counter.
	for _, o := range []struct {
		labels []string
		share  float64
	}{{[]string{"__name__", "booking_attempts_total"}, 1}, {[]string{"__name__", "booking_successes_total"}, 0.97},
		{[]string{"__name__", "booking_bookings_total", "outcome", "no_slot"}, 0.02}} {
		g.counter(bureau, target, join(base, o.labels...),
			counterGen{perSec: 5 * o.share * load, div: 1, noise: 0.5, amp: 0.6, phase: phase, resetAt: resetAt})
	}
	g.histogram(bureau, target, base, "healthcode_scan_duration_seconds", nil,
		histGen{perSec: 30 * load, median: 0.15, sigma: 0.5, amp: 0.6, phase: phase, resetAt: resetAt})
	g.counter(bureau, target, join(base, "__name__", "process_cpu_seconds_total"),
		counterGen{perSec: 0.3 * load, div: 100, noise: 0.3, amp: 0.5, phase: phase, resetAt: resetAt})
	g.gauge(bureau, target, join(base, "__name__", "process_resident_memory_bytes"),
		gaugeGen{base: 3e8 * load, amp: 0.1, phase: phase, noise: 0.03, quantum: 4096})
	g.gauge(bureau, target, join(base, "__name__", "go_goroutines"),
		gaugeGen{base: 200 * load, amp: 0.4, phase: phase, noise: 0.1, quantum: 1})
}

// histogram adds a classic histogram's _bucket series, _sum and _count.
// Every series of one histogram draws the same requests, so buckets are
// cumulative at every sample as a real client library's are.
func (g *builder) histogram(bureau string, target int, base []string, name string, extra []string, h histGen) {
	h.seed = g.seedOf(append(join(base, "__name__", name), extra...))
	for i, le := range latencyBounds {
		hb := h
		hb.le = i
		g.add(bureau, target, join(base, append([]string{"__name__", name + "_bucket", "le", formatLe(le)}, extra...)...), hb)
	}
	hs := h
	hs.le = -1
	g.add(bureau, target, join(base, append([]string{"__name__", name + "_sum"}, extra...)...), hs)
	hc := h
	hc.le = len(latencyBounds) - 1
	g.add(bureau, target, join(base, append([]string{"__name__", name + "_count"}, extra...)...), hc)
}

func formatLe(le float64) string {
	if math.IsInf(le, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(le, 'f', -1, 64)
}

// generator computes a series' values at its sample times. Values are
// multiples of a power-of-ten fraction computed as integer/divisor, so
// their shortest decimal form is short and parses back exactly.
type generator interface {
	fill(ts []int64, intervalSecs float64, out []float64)
}

const dayMillis = 86_400_000

// diurnal is the daily load cycle: 1 + amp*sin(time of day + phase).
func diurnal(t int64, amp, phase float64) float64 {
	return 1 + amp*math.Sin(2*math.Pi*float64(t%dayMillis)/dayMillis+phase)
}

// counterGen is a counter whose rate follows the daily cycle with noise;
// it restarts from zero at sample resetAt (-1: never; 0 is never too).
type counterGen struct {
	seed       uint64
	perSec     float64
	div        int64
	noise      float64
	amp, phase float64
	start      float64
	resetAt    int
}

func (c counterGen) fill(ts []int64, secs float64, out []float64) {
	r := rand.New(rand.NewPCG(c.seed, 1))
	units := int64(c.start * float64(c.div))
	for j, t := range ts {
		if j == c.resetAt && j > 0 {
			units = 0
		}
		inc := c.perSec * diurnal(t, c.amp, c.phase) * secs * (1 + c.noise*(2*r.Float64()-1)) * float64(c.div)
		units += int64(max(0, inc) + r.Float64())
		out[j] = float64(units) / float64(c.div)
	}
}

// gaugeGen follows the daily cycle with a drift per sample and gaussian
// noise, rounded to quantum (a power of ten below 1, or a whole number).
type gaugeGen struct {
	seed       uint64
	base       float64
	amp, phase float64
	drift      float64
	noise      float64
	quantum    float64
}

func (c gaugeGen) fill(ts []int64, _ float64, out []float64) {
	r := rand.New(rand.NewPCG(c.seed, 2))
	for j, t := range ts {
		v := c.base*(diurnal(t, c.amp, c.phase)+c.noise*r.NormFloat64()) + c.drift*float64(j)
		v = max(v, 0)
		if c.quantum >= 1 {
			out[j] = math.Round(v/c.quantum) * c.quantum
		} else {
			div := math.Round(1 / c.quantum)
			out[j] = math.Round(v*div) / div
		}
	}
}

// timeGen is node_time_seconds: the sample time in seconds.
type timeGen struct{}

func (timeGen) fill(ts []int64, _ float64, out []float64) {
	for j, t := range ts {
		out[j] = float64(t) / 1000
	}
}

// histGen is one series of a classic histogram of log-normal latencies:
// bucket le (an index into latencyBounds) or, for le -1, the sum.
type histGen struct {
	seed       uint64
	perSec     float64
	median     float64
	sigma      float64
	amp, phase float64
	resetAt    int
	le         int
}

func (h histGen) fill(ts []int64, secs float64, out []float64) {
	r := rand.New(rand.NewPCG(h.seed, 3))
	p := 1.0
	if h.le >= 0 && !math.IsInf(latencyBounds[h.le], 1) {
		z := (math.Log(latencyBounds[h.le]) - math.Log(h.median)) / h.sigma
		p = 0.5 * math.Erfc(-z/math.Sqrt2)
	}
	mean := h.median * math.Exp(h.sigma*h.sigma/2)
	var count, sumMicros int64
	for j, t := range ts {
		// Every series of the histogram draws the same three numbers per
		// sample, so they stay consistent with each other.
		n := h.perSec * diurnal(t, h.amp, h.phase) * secs * (1 + 0.3*(2*r.Float64()-1))
		u := r.Float64()
		jitter := 1 + 0.2*(2*r.Float64()-1)
		if j == h.resetAt && j > 0 {
			count, sumMicros = 0, 0
		}
		reqs := math.Floor(max(0, n) + u)
		if h.le < 0 {
			sumMicros += int64(reqs * mean * jitter * 1e6)
			out[j] = float64(sumMicros) / 1e6
			continue
		}
		count += int64(math.Floor(reqs*p + u))
		out[j] = float64(count)
	}
}
