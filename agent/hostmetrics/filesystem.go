package hostmetrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// filesystemCollector reports statfs(2) of the host's mount points, like
// node_exporter's filesystem collector.
type filesystemCollector struct {
	proc               procfs.FS
	rootfs             string
	typesExclude       map[string]bool
	mountPointsExclude *regexp.Regexp
	statfs             func(path string, buf *unix.Statfs_t) error
	timeout            time.Duration
	logger             *slog.Logger

	size, free, avail, files, filesFree, readonly, deviceError *prometheus.Desc

	mu    sync.Mutex
	stuck map[string]bool // statfs paths whose timed-out call has not returned
}

// mount is one mount point to report, with its metric labels.
type mount struct {
	device, mountPoint, fsType string
	readonly                   bool
}

// describe builds the collector's descriptors.
func (c *filesystemCollector) describe(ds *descSet) {
	labels := []string{"device", "mountpoint", "fstype"}
	c.size = ds.add("filesystem_size_bytes", "Filesystem size in bytes.", labels...)
	c.free = ds.add("filesystem_free_bytes", "Filesystem free space in bytes.", labels...)
	c.avail = ds.add("filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.", labels...)
	c.files = ds.add("filesystem_files", "Filesystem total file nodes.", labels...)
	c.filesFree = ds.add("filesystem_files_free", "Filesystem total free file nodes.", labels...)
	c.readonly = ds.add("filesystem_readonly", "Filesystem read-only status.", labels...)
	c.deviceError = ds.add("filesystem_device_error",
		"Whether an error occurred while getting statistics for the given device.", labels...)
}

// update sends the metrics of every mount point not excluded. A mount point
// whose statfs fails or times out gets node_filesystem_device_error 1 and no
// other metrics; only an unreadable mount table fails the collector.
func (c *filesystemCollector) update(ch chan<- prometheus.Metric) error {
	mounts, err := c.mounts()
	if err != nil {
		return err
	}
	for _, m := range mounts {
		labels := []string{m.device, m.mountPoint, m.fsType}
		buf, err := c.statfsWithTimeout(filepath.Join(c.rootfs, m.mountPoint))
		if err != nil {
			// Warn once when a mount hangs; later scrapes skip it quietly.
			level := slog.LevelDebug
			if _, ok := errors.AsType[*statfsTimeoutError](err); ok {
				level = slog.LevelWarn
			}
			c.logger.Log(context.Background(), level, "skip filesystem", "mountpoint", m.mountPoint, "err", err)
			ch <- prometheus.MustNewConstMetric(c.deviceError, prometheus.GaugeValue, 1, labels...)
			continue
		}
		ro := 0.0
		if m.readonly {
			ro = 1
		}
		bsize := float64(buf.Bsize)
		gauges := [...]struct {
			desc  *prometheus.Desc
			value float64
		}{
			{c.deviceError, 0},
			{c.size, float64(buf.Blocks) * bsize},
			{c.free, float64(buf.Bfree) * bsize},
			{c.avail, float64(buf.Bavail) * bsize},
			{c.files, float64(buf.Files)},
			{c.filesFree, float64(buf.Ffree)},
			{c.readonly, ro},
		}
		for _, g := range gauges {
			ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, g.value, labels...)
		}
	}
	return nil
}

// mounts reads the mount table, one entry per mount point, without the
// excluded ones.
func (c *filesystemCollector) mounts() ([]mount, error) {
	// PID 1's table is the host's when the agent shares the host's PID
	// namespace; hidepid or a container may hide it, so fall back to ours.
	infos, err := c.proc.GetProcMounts(1)
	if err != nil {
		var selfErr error
		if infos, selfErr = c.proc.GetMounts(); selfErr != nil {
			return nil, fmt.Errorf("read mountinfo: %w", errors.Join(err, selfErr))
		}
	}
	seen := make(map[string]bool, len(infos))
	var out []mount
	// A later mount on the same point hides the earlier ones and is the one
	// statfs sees, so walk backwards and keep the first of each point.
	for _, info := range slices.Backward(infos) {
		mp := c.stripRootfs(unescapeMountPath(info.MountPoint))
		if seen[mp] {
			continue
		}
		seen[mp] = true
		if c.typesExclude[info.FSType] || c.mountPointsExclude.MatchString(mp) {
			continue
		}
		_, ro := info.Options["ro"]
		out = append(out, mount{device: info.Source, mountPoint: mp, fsType: info.FSType, readonly: ro})
	}
	return out, nil
}

// stripRootfs turns a mount point seen from inside a container, such as
// /host/boot, into the host's path, /boot.
func (c *filesystemCollector) stripRootfs(path string) string {
	if c.rootfs == "/" {
		return path
	}
	if path == c.rootfs {
		return "/"
	}
	if rest, ok := strings.CutPrefix(path, c.rootfs); ok && strings.HasPrefix(rest, "/") {
		return rest
	}
	return path
}

// unescapeMountPath undoes the kernel's octal escapes (\040 for a space,
// \011, \012, \134) in a mountinfo path.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// statfsWithTimeout runs statfs in a goroutine and gives up after c.timeout,
// so a hung network filesystem cannot hang the scrape. The path is then
// marked stuck and skipped, without starting another goroutine, until the
// call returns.
func (c *filesystemCollector) statfsWithTimeout(path string) (unix.Statfs_t, error) {
	c.mu.Lock()
	stuck := c.stuck[path]
	c.mu.Unlock()
	if stuck {
		return unix.Statfs_t{}, fmt.Errorf("statfs %q: still stuck in an earlier call", path)
	}

	type result struct {
		buf unix.Statfs_t
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		r.err = c.statfs(path, &r.buf)
		done <- r
		c.mu.Lock()
		wasStuck := c.stuck[path]
		delete(c.stuck, path)
		c.mu.Unlock()
		if wasStuck {
			c.logger.Info("statfs returned, mount point reported again", "path", path)
		}
	}()

	timer := time.NewTimer(c.timeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return wrapStatfs(path, r.buf, r.err)
	case <-timer.C:
	}
	// The goroutine sends before it takes the lock, so under the lock either
	// its result is here or its later delete will see the mark set below.
	c.mu.Lock()
	select {
	case r := <-done:
		c.mu.Unlock()
		return wrapStatfs(path, r.buf, r.err)
	default:
		c.stuck[path] = true
	}
	c.mu.Unlock()
	return unix.Statfs_t{}, &statfsTimeoutError{path: path, timeout: c.timeout}
}

// statfsTimeoutError reports a statfs call that has just timed out, as
// opposed to one skipped because an earlier call is still stuck.
type statfsTimeoutError struct {
	path    string
	timeout time.Duration
}

func (e *statfsTimeoutError) Error() string {
	return fmt.Sprintf("statfs %q: timed out after %s, skipping until it returns", e.path, e.timeout)
}

// wrapStatfs adds the path to a statfs error.
func wrapStatfs(path string, buf unix.Statfs_t, err error) (unix.Statfs_t, error) {
	if err != nil {
		return buf, fmt.Errorf("statfs %q: %w", path, err)
	}
	return buf, nil
}
