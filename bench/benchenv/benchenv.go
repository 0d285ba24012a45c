// Package benchenv holds what every benchmark harness records about its
// run and where it runs: the machine, the module root, the revision, and
// its JSON results file.
package benchenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/bureauhub/bureauhub/e2e"
)

// Machine describes where a run happened.
type Machine struct {
	CPUs     int     `json:"cpus"`
	CPUModel string  `json:"cpu_model"`
	MemGiB   float64 `json:"memory_gib"`
	Kernel   string  `json:"kernel"`
	// LoadAvg is /proc/loadavg's 1-minute figure at the start (NaN if
	// unknown; JSON cannot hold NaN, so it is written as 0 then).
	LoadAvg float64 `json:"load_average_1m"`
}

// ReadMachine reads the CPU count and model, memory, kernel and load.
func ReadMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), LoadAvg: LoadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.MemGiB = kb / (1 << 20)
			}
		}
	}
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		m.Kernel = strings.TrimSpace(string(out))
	}
	if math.IsNaN(m.LoadAvg) {
		m.LoadAvg = 0
	}
	return m
}

// LoadAvg is the 1-minute load average now, NaN if unknown.
func LoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return math.NaN()
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return math.NaN()
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// ModuleRoot finds the bureauhub module from the working directory up.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/bureauhub/bureauhub\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the bureauhub module")
		}
		dir = parent
	}
}

// GitDescribe names the revision measured, e.g. "bureauhub 3c23841-dirty".
func GitDescribe(root string) string {
	cmd := exec.Command("git", "describe", "--always", "--dirty")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "bureauhub (no git)"
	}
	return "bureauhub " + strings.TrimSpace(string(out))
}

// WriteJSON writes v indented, with a final newline.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// loopback never sends requests through HTTP_PROXY.
var loopback = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 30 * time.Second}

// WaitReady polls url until it answers 200, p exits or the timeout ends;
// the error carries the tail of p's log.
func WaitReady(ctx context.Context, url string, p *e2e.Process, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := loopback.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("http %d", resp.StatusCode)
		}
		last = err
		if p.Exited() {
			return fmt.Errorf("%s exited before %s answered; log:\n%s", p.Name, url, Tail(p.Log(), 20))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last error: %v); log:\n%s", url, ctx.Err(), last, Tail(p.Log(), 20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WorkDir returns dir made absolute and created, or, when dir is empty, a
// new temporary directory named after prefix.
func WorkDir(dir, prefix string) (string, error) {
	if dir == "" {
		return os.MkdirTemp("", prefix+"-")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return filepath.Abs(dir)
}

// Rerender rewrites a report from an earlier run's JSON results (from):
// markdown renders them, the result goes to mdPath and to out.
func Rerender[R any](from, mdPath string, markdown func(*R) string, out io.Writer) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	var res R
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("%s: %w", from, err)
	}
	md := markdown(&res)
	if err := os.WriteFile(mdPath, []byte(md), 0o644); err != nil {
		return err
	}
	_, err = io.WriteString(out, md)
	return err
}
