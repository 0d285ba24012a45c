package dashboards_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/bureauhub/bureauhub/hub/store/clickhouse/chtest"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// promql parses as the hub's engine does: Prometheus's default options.
var promql = parser.NewParser(parser.Options{})

// dashboard is the part of Grafana's dashboard JSON model the tests check.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []annotation `json:"list"`
	} `json:"annotations"`
}

type panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *datasourceRef `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []target `json:"targets"`
	// Panels are the children of a collapsed row.
	Panels []panel `json:"panels"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type target struct {
	RefID      string         `json:"refId"`
	Datasource *datasourceRef `json:"datasource"`
	Expr       string         `json:"expr"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Datasource *datasourceRef  `json:"datasource"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
}

type annotation struct {
	Name       string         `json:"name"`
	BuiltIn    int            `json:"builtIn"`
	Datasource *datasourceRef `json:"datasource"`
	Expr       string         `json:"expr"`
}

// query is one PromQL expression of a dashboard: a panel target or an
// annotation.
type query struct {
	File, Panel, RefID, Expr string
}

func (q query) String() string { return fmt.Sprintf("%s / %q / %s", q.File, q.Panel, q.RefID) }

// promDatasource is how every query names its data source: the dashboard's
// data source variable, a Prometheus data source pointed at the hub.
const promDatasource = "${datasource}"

// grafanaVars are Grafana's built-in variables the dashboards may use,
// with the values the tests substitute.
var grafanaVars = map[string]string{
	"__rate_interval": "1m",
	"__interval":      "15s",
	"__range":         "5m",
}

// dashboardVarValues are the values substituted for the dashboards' own
// variables: every bureau, as Grafana's "All" with allValue .+ expands.
var dashboardVarValues = map[string]string{
	"bureau":     ".+",
	"datasource": "bureauhub",
}

var varRef = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]`)

// substitute replaces Grafana variables in s; it reports names it does not
// know.
func substitute(s string, defined map[string]bool) (string, []string) {
	var unknown []string
	out := varRef.ReplaceAllStringFunc(s, func(m string) string {
		g := varRef.FindStringSubmatch(m)
		name := g[1] + g[2] + g[3]
		if v, ok := grafanaVars[name]; ok {
			return v
		}
		if v, ok := dashboardVarValues[name]; ok && defined[name] {
			return v
		}
		unknown = append(unknown, name)
		return m
	})
	return out, unknown
}

// loadDashboards parses every dashboards/*.json.
func loadDashboards(t testing.TB) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob("*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no dashboards/*.json")
	}
	out := map[string]dashboard{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		dec := json.NewDecoder(strings.NewReader(string(b)))
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[f] = d
	}
	return out
}

// allPanels flattens rows: a collapsed row holds its panels.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// queries returns every PromQL expression of d, file order kept.
func queries(file string, d dashboard) []query {
	var out []query
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			out = append(out, query{File: file, Panel: p.Title, RefID: tg.RefID, Expr: tg.Expr})
		}
	}
	for _, a := range d.Annotations.List {
		if a.BuiltIn == 0 {
			out = append(out, query{File: file, Panel: "annotation " + a.Name, RefID: "annotation", Expr: a.Expr})
		}
	}
	return out
}

func definedVars(d dashboard) map[string]bool {
	m := map[string]bool{}
	for _, v := range d.Templating.List {
		m[v.Name] = true
	}
	return m
}

// variableQuery returns a query variable's query text, whether Grafana
// stored it as a string or as the Prometheus editor's object.
func variableQuery(v variable) (string, error) {
	var s string
	if err := json.Unmarshal(v.Query, &s); err == nil {
		return s, nil
	}
	var o struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(v.Query, &o); err != nil {
		return "", fmt.Errorf("query is neither a string nor an object with a query: %s", v.Query)
	}
	return o.Query, nil
}

var labelValuesRE = regexp.MustCompile(`^label_values\((?:(.+),\s*)?(\w+)\)$`)

// parseLabelValues splits label_values(selector, label) (selector
// optional) as Grafana's Prometheus data source reads it.
func parseLabelValues(q string) (selector, label string, err error) {
	m := labelValuesRE.FindStringSubmatch(strings.TrimSpace(q))
	if m == nil {
		return "", "", fmt.Errorf("%q is not label_values([selector,] label)", q)
	}
	if m[1] != "" {
		if _, err := promql.ParseMetricSelector(m[1]); err != nil {
			return "", "", fmt.Errorf("%q: selector: %w", q, err)
		}
	}
	return m[1], m[2], nil
}

// TestDashboards checks every dashboard's structure, its variables, and
// that every query is valid PromQL once Grafana's variables are
// substituted.
func TestDashboards(t *testing.T) {
	dashboards := loadDashboards(t)
	uids := map[string]string{}
	names := make([]string, 0, len(dashboards))
	for f := range dashboards {
		names = append(names, f)
	}
	sort.Strings(names)
	for _, f := range names {
		d := dashboards[f]
		t.Run(f, func(t *testing.T) {
			if d.Title == "" {
				t.Error("no title")
			}
			if d.UID == "" || len(d.UID) > 40 {
				t.Errorf("uid %q: required, at most 40 characters", d.UID)
			}
			if other, dup := uids[d.UID]; dup {
				t.Errorf("uid %q is also %s's", d.UID, other)
			}
			uids[d.UID] = f
			if d.SchemaVersion < 39 {
				t.Errorf("schemaVersion %d, want at least 39", d.SchemaVersion)
			}

			vars := map[string]variable{}
			for _, v := range d.Templating.List {
				if _, dup := vars[v.Name]; dup {
					t.Errorf("variable %q defined twice", v.Name)
				}
				vars[v.Name] = v
			}
			if v, ok := vars["datasource"]; !ok || v.Type != "datasource" || string(v.Query) != `"prometheus"` {
				t.Errorf("variable datasource: want a Prometheus data source variable, got %+v", v)
			}
			if v, ok := vars["bureau"]; !ok {
				t.Error("no bureau variable")
			} else if q, err := variableQuery(v); err != nil || q != "label_values(up, bureau)" {
				t.Errorf("variable bureau: query %q (%v), want label_values(up, bureau)", q, err)
			}
			defined := definedVars(d)
			for _, v := range d.Templating.List {
				if v.Type != "query" {
					continue
				}
				if v.Datasource == nil || v.Datasource.UID != promDatasource {
					t.Errorf("variable %s: datasource %+v, want uid %s", v.Name, v.Datasource, promDatasource)
				}
				q, err := variableQuery(v)
				if err == nil {
					_, _, err = parseLabelValues(q)
				}
				if err != nil {
					t.Errorf("variable %s: %v", v.Name, err)
				}
			}

			ids := map[int]string{}
			for _, p := range allPanels(d.Panels) {
				if p.ID <= 0 {
					t.Errorf("panel %q: id %d", p.Title, p.ID)
				}
				if other, dup := ids[p.ID]; dup {
					t.Errorf("panel %q: id %d is also %q's", p.Title, p.ID, other)
				}
				ids[p.ID] = p.Title
				if p.Title == "" {
					t.Errorf("panel %d: no title", p.ID)
				}
				if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
					t.Errorf("panel %q: gridPos %+v", p.Title, p.GridPos)
				}
				if p.Type == "row" {
					continue
				}
				if p.Datasource == nil || p.Datasource.UID != promDatasource {
					t.Errorf("panel %q: datasource %+v, want uid %s", p.Title, p.Datasource, promDatasource)
				}
				if len(p.Targets) == 0 {
					t.Errorf("panel %q: no targets", p.Title)
				}
				refs := map[string]bool{}
				for _, tg := range p.Targets {
					if tg.RefID == "" || refs[tg.RefID] {
						t.Errorf("panel %q: refId %q empty or repeated", p.Title, tg.RefID)
					}
					refs[tg.RefID] = true
					if tg.Datasource == nil || tg.Datasource.UID != promDatasource {
						t.Errorf("panel %q %s: datasource %+v, want uid %s", p.Title, tg.RefID, tg.Datasource, promDatasource)
					}
				}
			}
			for _, a := range d.Annotations.List {
				if a.BuiltIn == 0 && (a.Datasource == nil || a.Datasource.UID != promDatasource) {
					t.Errorf("annotation %q: datasource %+v, want uid %s", a.Name, a.Datasource, promDatasource)
				}
			}

			for _, q := range queries(f, d) {
				if strings.TrimSpace(q.Expr) == "" {
					t.Errorf("%s: empty expression", q)
					continue
				}
				expr, unknown := substitute(q.Expr, defined)
				if len(unknown) > 0 {
					t.Errorf("%s: undefined variables %v in %s", q, unknown, q.Expr)
					continue
				}
				if _, err := promql.ParseExpr(expr); err != nil {
					t.Errorf("%s: %v\n%s", q, err, expr)
				}
			}
		})
	}
}

// TestSubstitute pins the variable syntaxes Grafana accepts.
func TestSubstitute(t *testing.T) {
	defined := map[string]bool{"bureau": true}
	for _, tc := range []struct{ name, in, want, unknown string }{
		{"dollar", `up{bureau=~"$bureau"}`, `up{bureau=~".+"}`, ""},
		{"braces", `up{bureau=~"${bureau}"}`, `up{bureau=~".+"}`, ""},
		{"braces with format", `up{bureau=~"${bureau:regex}"}`, `up{bureau=~".+"}`, ""},
		{"brackets", `up{bureau=~"[[bureau]]"}`, `up{bureau=~".+"}`, ""},
		{"rate interval", `rate(x[$__rate_interval])`, `rate(x[1m])`, ""},
		{"undefined", `up{job="$job"}`, `up{job="$job"}`, "job"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, unknown := substitute(tc.in, defined)
			if got != tc.want || strings.Join(unknown, ",") != tc.unknown {
				t.Fatalf("substitute(%q) = %q, unknown %v; want %q, unknown %q", tc.in, got, unknown, tc.want, tc.unknown)
			}
		})
	}
}
