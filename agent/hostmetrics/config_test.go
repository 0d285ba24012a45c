package hostmetrics

import (
	"slices"
	"strings"
	"testing"
)

func TestConfigSetDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Config
		want Config
	}{
		{
			name: "empty gets every default",
			want: Config{
				ProcPath: "/proc", SysPath: "/sys", RootfsPath: "/",
				FilesystemTypesExclude: DefaultFilesystemTypesExclude(),
				NetworkDevicesExclude:  "^$",
			},
		},
		{
			name: "set fields are kept and an empty exclude list stays empty",
			in: Config{
				ProcPath: "/host/proc", SysPath: "/host/sys", RootfsPath: "/host",
				FilesystemTypesExclude: []string{}, NetworkDevicesExclude: "^veth",
			},
			want: Config{
				ProcPath: "/host/proc", SysPath: "/host/sys", RootfsPath: "/host",
				FilesystemTypesExclude: []string{}, NetworkDevicesExclude: "^veth",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in
			got.SetDefaults()
			if got.ProcPath != tt.want.ProcPath || got.SysPath != tt.want.SysPath ||
				got.RootfsPath != tt.want.RootfsPath || got.NetworkDevicesExclude != tt.want.NetworkDevicesExclude ||
				!slices.Equal(got.FilesystemTypesExclude, tt.want.FilesystemTypesExclude) ||
				(got.FilesystemTypesExclude == nil) != (tt.want.FilesystemTypesExclude == nil) {
				t.Errorf("SetDefaults() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		modify  func(*Config)
		wantErr []string // substrings; none means valid
	}{
		{name: "defaults are valid", modify: func(*Config) {}},
		{
			name:    "bad network regexp",
			modify:  func(c *Config) { c.NetworkDevicesExclude = "^(eth" },
			wantErr: []string{"hostmetrics.network_devices_exclude: invalid regexp: "},
		},
		{
			name:    "empty proc path",
			modify:  func(c *Config) { c.ProcPath = "" },
			wantErr: []string{"hostmetrics.proc_path: must not be empty"},
		},
		{
			name:    "empty filesystem type",
			modify:  func(c *Config) { c.FilesystemTypesExclude = []string{"tmpfs", ""} },
			wantErr: []string{"hostmetrics.filesystem_types_exclude[1]: must not be empty"},
		},
		{
			name: "every error is reported",
			modify: func(c *Config) {
				c.SysPath, c.RootfsPath, c.NetworkDevicesExclude = "", "", "["
			},
			wantErr: []string{"hostmetrics.sys_path:", "hostmetrics.rootfs_path:", "hostmetrics.network_devices_exclude:"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			c.SetDefaults()
			tt.modify(&c)
			err := c.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	_, err := New(Config{NetworkDevicesExclude: "("}, nil)
	if err == nil || !strings.Contains(err.Error(), "hostmetrics.network_devices_exclude") {
		t.Fatalf("New() error = %v, want one naming network_devices_exclude", err)
	}
}
