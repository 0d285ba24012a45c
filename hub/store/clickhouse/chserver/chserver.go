// Package chserver runs a throwaway clickhouse-server of our own: its own
// directory, its own config, free loopback ports. Integration tests (through
// package chtest), benchmarks and the demo use it so that they need no
// ClickHouse set up beforehand, only the binary (Debian's clickhouse-server
// 18.16, or any later ClickHouse).
package chserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrBinaryNotFound is returned by Start when no ClickHouse server binary can
// be found; callers use it to tell "not installed" from "failed to start".
var ErrBinaryNotFound = errors.New("clickhouse server binary not found")

// errAddrInUse marks a start that failed because a port was taken, which
// happens when another process grabs a port between our picking it and the
// server binding it.
var errAddrInUse = errors.New("address already in use")

const (
	defaultStartTimeout = 60 * time.Second
	stopTimeout         = 30 * time.Second
	pollInterval        = 50 * time.Millisecond
	pingTimeout         = 2 * time.Second
	// startAttempts bounds the retries with fresh ports after errAddrInUse.
	startAttempts = 3
)

// Options configures Start.
type Options struct {
	// Dir holds the server's config, data and logs (in Dir/log). Required;
	// tests pass t.TempDir(). Start creates it if missing and rewrites the
	// config files in it on every start, keeping the data.
	Dir string
	// Binary is the server to run. A name without a slash is looked up in
	// PATH. A binary named "clickhouse" is run as `clickhouse server`.
	// Default: clickhouse-server from PATH or /usr/sbin (where Debian puts
	// it, often outside a non-root PATH), else clickhouse from PATH.
	Binary string
	// Log receives the server's stdout and stderr; nil discards them. The
	// server writes its own log files to Dir/log whatever Log is.
	Log io.Writer
	// StartTimeout bounds how long Start and Restart wait for the server to
	// answer queries. Default 60s.
	StartTimeout time.Duration
	// TCPPort (native protocol) and HTTPPort are the loopback ports to listen
	// on; 0 picks a free port.
	TCPPort, HTTPPort int
}

// Server is a running (or stopped) clickhouse-server started by Start. Its
// methods are safe for concurrent use; Stop and Restart serialise with each
// other.
type Server struct {
	dir          string
	bin          string
	args         []string
	log          io.Writer
	startTimeout time.Duration
	tcpPort      int
	httpPort     int
	client       *http.Client

	mu   sync.Mutex
	proc *process // nil when stopped
}

// process is one run of the server binary.
type process struct {
	cmd    *exec.Cmd
	output *tailWriter
	exited chan struct{} // closed once cmd.Wait returns
	err    error         // cmd.Wait's result, set before exited is closed
}

// Start writes a config into opts.Dir, starts clickhouse-server on loopback
// ports and returns once the server answers queries over HTTP. If the server
// does not become ready within opts.StartTimeout, or ctx ends first, Start
// kills it and returns an error that quotes the end of its output and error
// log. The server outlives ctx; call Stop to end it. On Linux the server is
// killed if the calling process dies.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("start clickhouse-server: Options.Dir is required")
	}
	dir, err := prepareDir(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("start clickhouse-server: %w", err)
	}
	bin, args, err := findBinary(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("start clickhouse-server: %w", err)
	}
	s := &Server{
		dir:          dir,
		bin:          bin,
		args:         args,
		log:          opts.Log,
		startTimeout: opts.StartTimeout,
		tcpPort:      opts.TCPPort,
		httpPort:     opts.HTTPPort,
		client: &http.Client{Transport: &http.Transport{
			Proxy: nil, // never send loopback queries through HTTP_PROXY
			// Below the server's keep_alive_timeout (3s), so that a POST,
			// which net/http does not retry, never goes out on a connection
			// the server is closing.
			IdleConnTimeout:     time.Second,
			MaxIdleConnsPerHost: 8,
		}},
	}
	if s.startTimeout <= 0 {
		s.startTimeout = defaultStartTimeout
	}
	pickTCP, pickHTTP := opts.TCPPort == 0, opts.HTTPPort == 0
	for attempt := 1; ; attempt++ {
		if pickTCP || pickHTTP {
			tcpPort, httpPort, err := freePorts()
			if err != nil {
				return nil, fmt.Errorf("start clickhouse-server: pick ports: %w", err)
			}
			if pickTCP {
				s.tcpPort = tcpPort
			}
			if pickHTTP {
				s.httpPort = httpPort
			}
		}
		s.mu.Lock()
		err := s.startLocked(ctx)
		s.mu.Unlock()
		if err == nil {
			return s, nil
		}
		if !(pickTCP || pickHTTP) || attempt == startAttempts || !errors.Is(err, errAddrInUse) {
			return nil, err
		}
	}
}

// Addr returns the native protocol address, "127.0.0.1:<tcp port>", for
// clickhouse-go.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.tcpPort)) }

// HTTPAddr returns the HTTP interface address, "127.0.0.1:<http port>".
func (s *Server) HTTPAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.httpPort)) }

// Dir returns the server's directory (absolute, symlinks resolved).
func (s *Server) Dir() string { return s.dir }

// PID is the running server process's id, or 0 when it is stopped. It
// changes with Restart.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// OptimizeFinal merges database.table into one part per partition
// (OPTIMIZE ... FINAL), retrying while background merges hold parts, so
// that sizes read from system.parts describe the data as it settles.
func (s *Server) OptimizeFinal(ctx context.Context, database, table string) error {
	for attempt := 0; ; attempt++ {
		if _, err := s.Query(ctx, fmt.Sprintf("OPTIMIZE TABLE %s.%s FINAL", database, table)); err != nil {
			return err
		}
		out, err := s.Query(ctx, fmt.Sprintf(`SELECT max(c) FROM (SELECT count() AS c FROM system.parts
			WHERE database = '%s' AND table = '%s' AND active GROUP BY partition)`, database, table))
		if err != nil {
			return err
		}
		if n := strings.TrimSpace(out); n == "1" || n == "0" {
			return nil
		}
		if attempt == 10 {
			return fmt.Errorf("%s.%s: still several parts per partition after OPTIMIZE FINAL", database, table)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// Stop ends the server: SIGTERM, then SIGKILL to its process group if it has
// not exited 30s later. Stopping a stopped server does nothing. Stop returns
// an error only if the server had to be killed.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked()
}

// Restart stops the server if it is running and starts it again with the
// same directory, data and ports, returning once it answers queries.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stopLocked(); err != nil {
		return err
	}
	return s.startLocked(ctx)
}

// Query runs one statement over the HTTP interface and returns the response
// body (TabSeparated unless the statement says FORMAT). A non-200 answer is
// an error carrying ClickHouse's message.
func (s *Server) Query(ctx context.Context, sql string) (string, error) {
	return s.QueryWithSettings(ctx, sql, nil)
}

// QueryWithSettings is Query with ClickHouse settings sent as URL
// parameters, for statements that need one, such as
// allow_experimental_low_cardinality_type=1 for a CREATE on 18.16.
func (s *Server) QueryWithSettings(ctx context.Context, sql string, settings map[string]string) (string, error) {
	u := url.URL{Scheme: "http", Host: s.HTTPAddr(), Path: "/"}
	if len(settings) > 0 {
		q := url.Values{}
		for k, v := range settings {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(sql))
	if err != nil {
		return "", fmt.Errorf("query %s: %w", abbreviate(sql), err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("query %s: %w", abbreviate(sql), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("query %s: read response: %w", abbreviate(sql), err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("query %s: http %d: %s", abbreviate(sql), resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

func (s *Server) startLocked(ctx context.Context) error {
	if s.proc != nil {
		return errors.New("start clickhouse-server: already running")
	}
	cfg, err := writeConfig(s.dir, s.tcpPort, s.httpPort)
	if err != nil {
		return fmt.Errorf("start clickhouse-server: write config: %w", err)
	}
	// Only what this run adds to the error log explains its failure.
	errLog := filepath.Join(s.dir, logDir, errorLogFile)
	var errLogOffset int64
	if fi, err := os.Stat(errLog); err == nil {
		errLogOffset = fi.Size()
	}

	// Config errors (bad XML, unwritable paths) are printed to stderr, not
	// logged, so keep the end of the output whatever opts.Log is.
	p := &process{output: &tailWriter{limit: 16 << 10, also: s.log}, exited: make(chan struct{})}
	p.cmd = exec.Command(s.bin, append(s.args[:len(s.args):len(s.args)], "--config-file="+cfg)...)
	p.cmd.Dir = s.dir
	p.cmd.Stdout = p.output
	p.cmd.Stderr = p.output
	p.cmd.SysProcAttr = sysProcAttr()
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start clickhouse-server: %w", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()

	if err := s.waitReady(ctx, p); err != nil {
		p.kill()
		diag := p.diagnostics(errLog, errLogOffset)
		if errors.As(err, new(strangerError)) || strings.Contains(diag, "Address already in use") {
			err = fmt.Errorf("%w (%w)", err, errAddrInUse)
		}
		return fmt.Errorf("start clickhouse-server (%s): %w%s", s.Addr(), err, diag)
	}
	s.proc = p
	return nil
}

// waitReady polls the server until it answers as ours, p exits, ctx ends or
// the start timeout passes.
func (s *Server) waitReady(parent context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(parent, s.startTimeout)
	defer cancel()
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		err := s.ping(ctx)
		if err == nil {
			return nil
		}
		var stranger strangerError
		if errors.As(err, &stranger) {
			return err
		}
		select {
		case <-p.exited:
			return fmt.Errorf("server exited before it was ready: %v", p.err)
		case <-ctx.Done():
			if parent.Err() != nil {
				return fmt.Errorf("waiting for server: %w", parent.Err())
			}
			return fmt.Errorf("server not ready after %v; last attempt: %v", s.startTimeout, err)
		case <-ticker.C:
		}
	}
}

// strangerError says another server answered on our port.
type strangerError struct{ dataPath string }

func (e strangerError) Error() string {
	return fmt.Sprintf("a different server (data path %q) answers on our port", e.dataPath)
}

// ping asks the server where it keeps the default database, which proves
// both that it serves queries and that it is the server using our Dir.
func (s *Server) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	out, err := s.Query(ctx, "SELECT data_path FROM system.databases WHERE name = 'default'")
	if err != nil {
		return err
	}
	path := strings.TrimSpace(out)
	if !strings.HasPrefix(path, filepath.Join(s.dir, dataDir)+string(filepath.Separator)) {
		return strangerError{dataPath: path}
	}
	return nil
}

func (s *Server) stopLocked() error {
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	// Idle keep-alive connections would hold up the server's shutdown.
	s.client.CloseIdleConnections()
	// Process.Signal is safe against the pid being reaped and reused.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		<-p.exited // already exited
		return nil
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-p.exited:
		return nil
	case <-timer.C:
	}
	p.kill()
	return fmt.Errorf("stop clickhouse-server: not stopped %v after SIGTERM; killed it", stopTimeout)
}

// kill SIGKILLs the process group, in case the server started children, and
// waits for the server to exit.
func (p *process) kill() {
	select {
	case <-p.exited:
		return // reaped: its pid and group id may already be someone else's
	default:
	}
	if err := signalGroup(p.cmd.Process, syscall.SIGKILL); err != nil {
		_ = p.cmd.Process.Kill()
	}
	<-p.exited
}

// findBinary resolves Options.Binary to a path and the arguments that come
// before the config flag.
func findBinary(name string) (string, []string, error) {
	argsFor := func(path string) []string {
		if filepath.Base(path) == "clickhouse" {
			return []string{"server"}
		}
		return nil
	}
	if name != "" {
		path, err := exec.LookPath(name)
		if err != nil {
			return "", nil, fmt.Errorf("%w: %w", ErrBinaryNotFound, err)
		}
		return path, argsFor(path), nil
	}
	for _, candidate := range []string{"clickhouse-server", "/usr/sbin/clickhouse-server", "clickhouse"} {
		if path, err := exec.LookPath(candidate); err == nil {
			return path, argsFor(path), nil
		}
	}
	return "", nil, fmt.Errorf("%w: no clickhouse-server or clickhouse in PATH or /usr/sbin", ErrBinaryNotFound)
}

// prepareDir creates dir and returns it absolute with symlinks resolved, the
// form the server reports its paths in.
func prepareDir(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

// freePorts returns two distinct loopback ports that were free a moment ago.
func freePorts() (int, int, error) {
	var ports [2]int
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, err
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports[0], ports[1], nil
}

func abbreviate(sql string) string {
	sql = strings.Join(strings.Fields(sql), " ")
	if len(sql) > 80 {
		sql = sql[:77] + "..."
	}
	return strconv.Quote(sql)
}
