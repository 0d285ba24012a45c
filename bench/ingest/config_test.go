package ingest

import (
	"reflect"
	"testing"
)

func TestParseHubSettings(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []HubSetting
		wantErr bool
	}{
		{name: "empty", in: "", want: nil},
		{name: "one", in: "500000x2", want: []HubSetting{{500000, 2}}},
		{name: "several with spaces", in: "500000x2, 1000000x4", want: []HubSetting{{500000, 2}, {1000000, 4}}},
		{name: "no writers", in: "500000", wantErr: true},
		{name: "zero", in: "0x2", wantErr: true},
		{name: "not a number", in: "ax2", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseHubSettings(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseHubSettings(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseHubSettings(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestNum(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567", -45000: "-45,000"} {
		if got := num(in); got != want {
			t.Errorf("num(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestSettingOf(t *testing.T) {
	m := &Measurement{Setting: "TLS, flush_samples=1000000, writers=4, 4 streams x 32 in flight"}
	if got := settingOf(m); got != "1000000x4" {
		t.Errorf("settingOf = %q, want 1000000x4", got)
	}
}
