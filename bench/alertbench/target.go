package alertbench

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// surgeTargets are the scrape targets of the latency phase: Targets
// listeners on loopback, each exposing the gauge bench_surge{trial} of the
// trials assigned to it. Every system scrapes its own path
// (/metrics/<system>) so that each scrape is attributed to its system;
// the content is the same for all.
//
// A scrape's time is taken under the lock that also guards the flip of a
// trial's value, so "the first scrape after T0" is exactly the first
// scrape that saw the new value.
type surgeTargets struct {
	listeners []net.Listener
	servers   []*http.Server

	mu      sync.Mutex
	values  []map[int]float64        // per target: trial -> value
	scrapes map[string][][]time.Time // system -> per target: scrape times
	flipped map[int]time.Time        // trial -> T0
	errors  map[string]int           // requests to unexpected paths
}

func newSurgeTargets(n, trials int) (*surgeTargets, error) {
	t := &surgeTargets{scrapes: map[string][][]time.Time{}, flipped: map[int]time.Time{}, errors: map[string]int{}}
	t.values = make([]map[int]float64, n)
	for i := range t.values {
		t.values[i] = map[int]float64{}
	}
	for trial := range trials {
		t.values[targetOf(trial, n)][trial] = 0
	}
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.close()
			return nil, err
		}
		srv := &http.Server{Handler: t.handler(i), ReadHeaderTimeout: 10 * time.Second}
		t.listeners = append(t.listeners, l)
		t.servers = append(t.servers, srv)
		go srv.Serve(l)
	}
	return t, nil
}

// targetOf assigns trials to targets round robin.
func targetOf(trial, targets int) int { return trial % targets }

// addrs are the targets' host:port, in target order.
func (t *surgeTargets) addrs() []string {
	out := make([]string, len(t.listeners))
	for i, l := range t.listeners {
		out[i] = l.Addr().String()
	}
	return out
}

func (t *surgeTargets) handler(target int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		system, ok := strings.CutPrefix(r.URL.Path, "/metrics/")
		if !ok || system == "" {
			t.mu.Lock()
			t.errors[r.URL.Path]++
			t.mu.Unlock()
			http.NotFound(w, r)
			return
		}
		var b strings.Builder
		b.WriteString("# HELP bench_surge 1 once the trial's surge started, else 0.\n# TYPE bench_surge gauge\n")
		t.mu.Lock()
		now := time.Now()
		per := t.scrapes[system]
		if per == nil {
			per = make([][]time.Time, len(t.values))
			t.scrapes[system] = per
		}
		per[target] = append(per[target], now)
		for trial, v := range t.values[target] {
			fmt.Fprintf(&b, "bench_surge{trial=%q} %s\n", strconv.Itoa(trial), strconv.FormatFloat(v, 'g', -1, 64))
		}
		t.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte(b.String()))
	})
}

// flip sets trial's gauge to 1 and returns T0.
func (t *surgeTargets) flip(trial int) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	t.values[targetOf(trial, len(t.values))][trial] = 1
	t.flipped[trial] = now
	return now
}

// scrapeCount is how often system scraped its least-scraped target.
func (t *surgeTargets) scrapeCount(system string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	per := t.scrapes[system]
	if per == nil {
		return 0
	}
	n := -1
	for _, s := range per {
		if n < 0 || len(s) < n {
			n = len(s)
		}
	}
	return n
}

// firstScrapeAfter is system's first scrape of target at or after t0.
func (t *surgeTargets) firstScrapeAfter(system string, target int, t0 time.Time) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	per := t.scrapes[system]
	if per == nil {
		return time.Time{}, false
	}
	for _, s := range per[target] {
		if !s.Before(t0) {
			return s, true
		}
	}
	return time.Time{}, false
}

// scrapeTimes returns a copy of system's scrape times of target.
func (t *surgeTargets) scrapeTimes(system string, target int) []time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	per := t.scrapes[system]
	if per == nil {
		return nil
	}
	return append([]time.Time(nil), per[target]...)
}

func (t *surgeTargets) close() {
	for _, s := range t.servers {
		s.Close()
	}
}
