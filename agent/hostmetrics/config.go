// Package hostmetrics collects the system metrics of the host the agent runs
// on (CPU, load, memory, disks, filesystems, network, uname, time) from
// procfs, sysfs and statfs(2). It exports node_exporter's metric and label
// names exactly, so dashboards and rules written for node_exporter work
// unchanged. It reads Linux interfaces and is meant for Linux hosts.
package hostmetrics

import (
	"errors"
	"fmt"
	"regexp"
)

// Config selects where the collector reads the host's state from and which
// filesystems and network devices it skips.
type Config struct {
	// ProcPath is where the host's procfs is mounted; default /proc.
	ProcPath string `yaml:"proc_path"`
	// SysPath is where the host's sysfs is mounted; default /sys.
	SysPath string `yaml:"sys_path"`
	// RootfsPath is where the host's root filesystem is mounted; mount points
	// are looked up under it with statfs, so the agent can run in a container
	// with the host's / mounted at, say, /host. Default /.
	RootfsPath string `yaml:"rootfs_path"`
	// FilesystemTypesExclude lists filesystem types not reported. Nil means
	// node_exporter's default list; an empty, non-nil list excludes nothing.
	FilesystemTypesExclude []string `yaml:"filesystem_types_exclude"`
	// NetworkDevicesExclude is a regular expression; network devices whose
	// name it matches are not reported. Default "^$", which matches none.
	NetworkDevicesExclude string `yaml:"network_devices_exclude"`
}

// DefaultFilesystemTypesExclude returns node_exporter's default list of
// filesystem types left out of the filesystem metrics: virtual, pseudo and
// read-only image filesystems whose sizes say nothing about disk space.
func DefaultFilesystemTypesExclude() []string {
	return []string{
		"autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs",
		"debugfs", "devpts", "devtmpfs", "fusectl", "hugetlbfs", "iso9660",
		"mqueue", "nsfs", "overlay", "proc", "procfs", "pstore", "rpc_pipefs",
		"securityfs", "selinuxfs", "squashfs", "sysfs", "tracefs",
	}
}

// SetDefaults fills the fields left empty with their defaults. Fields already
// set are kept, so calling it twice changes nothing.
func (c *Config) SetDefaults() {
	if c.ProcPath == "" {
		c.ProcPath = "/proc"
	}
	if c.SysPath == "" {
		c.SysPath = "/sys"
	}
	if c.RootfsPath == "" {
		c.RootfsPath = "/"
	}
	if c.FilesystemTypesExclude == nil {
		c.FilesystemTypesExclude = DefaultFilesystemTypesExclude()
	}
	if c.NetworkDevicesExclude == "" {
		// An empty regexp would match, and so exclude, every device.
		c.NetworkDevicesExclude = "^$"
	}
}

// Validate reports every invalid field of a defaulted Config; each error
// names the field by its YAML key.
func (c *Config) Validate() error {
	var errs []error
	paths := []struct{ key, value string }{
		{"proc_path", c.ProcPath},
		{"sys_path", c.SysPath},
		{"rootfs_path", c.RootfsPath},
	}
	for _, p := range paths {
		if p.value == "" {
			errs = append(errs, fmt.Errorf("hostmetrics.%s: must not be empty", p.key))
		}
	}
	for i, t := range c.FilesystemTypesExclude {
		if t == "" {
			errs = append(errs, fmt.Errorf("hostmetrics.filesystem_types_exclude[%d]: must not be empty", i))
		}
	}
	if _, err := regexp.Compile(c.NetworkDevicesExclude); err != nil {
		errs = append(errs, fmt.Errorf("hostmetrics.network_devices_exclude: invalid regexp: %w", err))
	}
	return errors.Join(errs...)
}
