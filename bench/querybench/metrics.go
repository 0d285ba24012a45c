package querybench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// metricSample is one line of a /metrics page.
type metricSample struct {
	name   string
	labels map[string]string
	value  float64
}

type metricPage []metricSample

func (m metricPage) sum(name string) float64 {
	var s float64
	for _, x := range m {
		if x.name == name {
			s += x.value
		}
	}
	return s
}

// scrape reads a /metrics page in the Prometheus text format.
func scrape(ctx context.Context, url, token string) (metricPage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := noProxy.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: http %d", url, resp.StatusCode)
	}
	return parseMetrics(string(body)), nil
}

// parseMetrics parses the text exposition format's sample lines; lines it
// cannot parse are skipped.
func parseMetrics(text string) metricPage {
	var out metricPage
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		s := metricSample{labels: map[string]string{}}
		i := strings.IndexAny(line, "{ ")
		if i < 0 {
			continue
		}
		s.name = line[:i]
		rest := line[i:]
		if rest[0] == '{' {
			end, ok := parseLabels(rest[1:], s.labels)
			if !ok {
				continue
			}
			rest = rest[1+end:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		s.value = v
		out = append(out, s)
	}
	return out
}

// parseLabels reads name="value" pairs up to the closing brace and
// returns the index just past it.
func parseLabels(s string, into map[string]string) (int, bool) {
	i := 0
	for {
		for i < len(s) && (s[i] == ',' || s[i] == ' ') {
			i++
		}
		if i < len(s) && s[i] == '}' {
			return i + 1, true
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 || i+eq+1 >= len(s) || s[i+eq+1] != '"' {
			return 0, false
		}
		name := s[i : i+eq]
		i += eq + 2
		var v strings.Builder
		for {
			if i >= len(s) {
				return 0, false
			}
			c := s[i]
			if c == '\\' && i+1 < len(s) {
				switch s[i+1] {
				case 'n':
					v.WriteByte('\n')
				default:
					v.WriteByte(s[i+1])
				}
				i += 2
				continue
			}
			i++
			if c == '"' {
				break
			}
			v.WriteByte(c)
		}
		into[name] = v.String()
	}
}
