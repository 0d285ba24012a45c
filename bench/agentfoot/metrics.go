package agentfoot

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// FetchMetrics reads a Prometheus text exposition from url and returns each
// sample's value by its series as written (name, or name{labels}).
func FetchMetrics(ctx context.Context, url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch metrics from %s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		// The value follows the series, after the closing brace if any.
		rest := line
		series := ""
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			series, rest = line[:i+1], strings.TrimSpace(line[i+1:])
		} else {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			series, rest = f[0], f[1]
		}
		vs, _, _ := strings.Cut(rest, " ") // drop a timestamp
		v, err := strconv.ParseFloat(vs, 64)
		if err != nil {
			continue
		}
		out[series] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics from %s: %w", url, err)
	}
	return out, nil
}

// Sum adds the values of every series of the metric name.
func Sum(ms map[string]float64, name string) float64 {
	var s float64
	for k, v := range ms {
		if k == name || strings.HasPrefix(k, name+"{") {
			s += v
		}
	}
	return s
}
