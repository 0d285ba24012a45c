package grafana_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The structs follow Grafana's provisioning file format; decoding is
// strict, so a misspelt key fails the test instead of being ignored by
// Grafana.

type datasourcesFile struct {
	APIVersion  int          `yaml:"apiVersion"`
	Datasources []datasource `yaml:"datasources"`
}

type datasource struct {
	Name           string            `yaml:"name"`
	UID            string            `yaml:"uid"`
	Type           string            `yaml:"type"`
	Access         string            `yaml:"access"`
	URL            string            `yaml:"url"`
	IsDefault      bool              `yaml:"isDefault"`
	Editable       bool              `yaml:"editable"`
	JSONData       map[string]any    `yaml:"jsonData"`
	SecureJSONData map[string]string `yaml:"secureJsonData"`
}

type dashboardsFile struct {
	APIVersion int        `yaml:"apiVersion"`
	Providers  []provider `yaml:"providers"`
}

type provider struct {
	Name                  string `yaml:"name"`
	OrgID                 int    `yaml:"orgId"`
	Folder                string `yaml:"folder"`
	Type                  string `yaml:"type"`
	DisableDeletion       bool   `yaml:"disableDeletion"`
	AllowUIUpdates        bool   `yaml:"allowUiUpdates"`
	UpdateIntervalSeconds int    `yaml:"updateIntervalSeconds"`
	Options               struct {
		Path                      string `yaml:"path"`
		FoldersFromFilesStructure bool   `yaml:"foldersFromFilesStructure"`
	} `yaml:"options"`
}

func decodeStrict(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestProvisioningFilesParse decodes every provisioning file by its
// directory's format, so a new file cannot escape the checks.
func TestProvisioningFilesParse(t *testing.T) {
	files, err := filepath.Glob("provisioning/*/*")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no provisioning files")
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			if ext := filepath.Ext(f); ext != ".yml" && ext != ".yaml" {
				t.Fatalf("Grafana reads only .yml and .yaml provisioning files")
			}
			switch dir := filepath.Base(filepath.Dir(f)); dir {
			case "datasources":
				var df datasourcesFile
				decodeStrict(t, f, &df)
				if df.APIVersion != 1 {
					t.Errorf("apiVersion %d, want 1", df.APIVersion)
				}
			case "dashboards":
				var pf dashboardsFile
				decodeStrict(t, f, &pf)
				if pf.APIVersion != 1 {
					t.Errorf("apiVersion %d, want 1", pf.APIVersion)
				}
			default:
				t.Fatalf("unexpected provisioning directory %q", dir)
			}
		})
	}
}

// TestDatasources checks the hub's two data sources: Grafana's Prometheus
// data source with the token as a bearer header, and the bureauhub plugin.
func TestDatasources(t *testing.T) {
	var df datasourcesFile
	decodeStrict(t, "provisioning/datasources/bureauhub.yml", &df)
	byType := map[string]datasource{}
	uids := map[string]bool{}
	defaults := 0
	for _, ds := range df.Datasources {
		if ds.Name == "" || ds.UID == "" {
			t.Errorf("data source %+v: name and uid are required", ds)
		}
		if uids[ds.UID] {
			t.Errorf("uid %q used twice", ds.UID)
		}
		uids[ds.UID] = true
		if ds.IsDefault {
			defaults++
		}
		byType[ds.Type] = ds
	}
	if defaults != 1 {
		t.Errorf("%d default data sources, want 1", defaults)
	}

	prom, ok := byType["prometheus"]
	switch {
	case !ok:
		t.Error("no Prometheus data source")
	case prom.URL != "http://hub:9301" || prom.Access != "proxy":
		t.Errorf("Prometheus data source: url %q access %q, want http://hub:9301 through the Grafana server (proxy)", prom.URL, prom.Access)
	case prom.JSONData["httpHeaderName1"] != "Authorization":
		t.Errorf("Prometheus data source: httpHeaderName1 %v, want Authorization", prom.JSONData["httpHeaderName1"])
	case prom.SecureJSONData["httpHeaderValue1"] != "Bearer ${BUREAUHUB_TOKEN}":
		t.Errorf("Prometheus data source: httpHeaderValue1 %q, want the token from the environment", prom.SecureJSONData["httpHeaderValue1"])
	case !prom.IsDefault:
		t.Error("the Prometheus data source should be the default: the dashboards' datasource variable picks it")
	}
	for k, v := range prom.JSONData {
		if s, ok := v.(string); ok && strings.Contains(s, "BUREAUHUB_TOKEN") {
			t.Errorf("jsonData.%s holds the token: secrets belong in secureJsonData", k)
		}
	}

	plugin, ok := byType["bureauhub-hub-datasource"]
	switch {
	case !ok:
		t.Error("no bureauhub plugin data source")
	case plugin.JSONData["url"] != "http://hub:9301":
		t.Errorf("plugin data source: jsonData.url %v, want http://hub:9301", plugin.JSONData["url"])
	case plugin.SecureJSONData["token"] != "${BUREAUHUB_TOKEN}":
		t.Errorf("plugin data source: secureJsonData.token %q, want the token from the environment", plugin.SecureJSONData["token"])
	}
}

// TestDashboardProvider checks the file provider loads the directory the
// compose file mounts dashboards/ at, and that every dashboard's data
// source variable finds a provisioned data source of its type.
func TestDashboardProvider(t *testing.T) {
	var pf dashboardsFile
	decodeStrict(t, "provisioning/dashboards/bureauhub.yml", &pf)
	if len(pf.Providers) != 1 {
		t.Fatalf("%d providers, want 1", len(pf.Providers))
	}
	p := pf.Providers[0]
	if p.Type != "file" || p.Options.Path != "/var/lib/grafana/dashboards" || p.Name == "" || p.OrgID != 1 {
		t.Errorf("provider %+v: want a named file provider for org 1 reading /var/lib/grafana/dashboards", p)
	}

	var df datasourcesFile
	decodeStrict(t, "provisioning/datasources/bureauhub.yml", &df)
	types := map[string]bool{}
	for _, ds := range df.Datasources {
		types[ds.Type] = true
	}
	dashboards, err := filepath.Glob("../../dashboards/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(dashboards) == 0 {
		t.Fatal("no dashboards found in ../../dashboards")
	}
	for _, f := range dashboards {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Templating struct {
				List []struct {
					Type  string          `json:"type"`
					Query json.RawMessage `json:"query"`
				} `json:"list"`
			} `json:"templating"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, v := range d.Templating.List {
			if v.Type != "datasource" {
				continue
			}
			var dsType string
			if err := json.Unmarshal(v.Query, &dsType); err != nil || !types[dsType] {
				t.Errorf("%s: data source variable of type %s, which no provisioned data source has", f, v.Query)
			}
		}
	}
}
