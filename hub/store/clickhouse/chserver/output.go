package chserver

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
)

// tailWriter keeps the last limit bytes written to it and passes everything
// on to also (if set), ignoring also's errors so that a broken log never
// stalls the server's output pipe.
type tailWriter struct {
	limit int
	also  io.Writer

	mu  sync.Mutex
	buf []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	if w.also != nil {
		_, _ = w.also.Write(p)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - w.limit; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}

const diagLines = 20

// stackFrame matches the numbered stack trace lines that 18.16 writes after
// every logged exception; they would crowd the message out of a short tail.
var stackFrame = regexp.MustCompile(`^\s*(\d+\. |Stack trace:)`)

// diagnostics returns, for an error message, the end of the server's output
// and of what it appended to its error log since offset.
func (p *process) diagnostics(errLog string, offset int64) string {
	var b strings.Builder
	if out := lastLines(p.output.String(), diagLines); out != "" {
		fmt.Fprintf(&b, "\nserver output:\n%s", out)
	}
	if data, err := readFrom(errLog, offset, 256<<10); err == nil {
		if out := lastLines(string(data), diagLines); out != "" {
			fmt.Fprintf(&b, "\nerror log %s:\n%s", errLog, out)
		}
	}
	return b.String()
}

// lastLines returns the last n non-blank lines of s that are not stack
// frames, each indented.
func lastLines(s string, n int) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		if strings.TrimSpace(line) == "" || stackFrame.MatchString(line) {
			continue
		}
		keep = append(keep, "  "+line)
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	if len(keep) == 0 {
		return ""
	}
	return strings.Join(keep, "\n")
}

// readFrom reads path from offset, at most the last max bytes.
func readFrom(path string, offset, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() < offset { // rotated
		offset = 0
	}
	if fi.Size()-offset > max {
		offset = fi.Size() - max
	}
	var buf bytes.Buffer
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, err
	}
	_, err = buf.ReadFrom(f)
	return buf.Bytes(), err
}
