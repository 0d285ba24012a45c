package console

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// page is what every template gets: the layout's fields and the page's
// own Data.
type page struct {
	Title   string
	Nav     string
	Viewer  *viewer
	Now     time.Time
	Refresh int // seconds; 0: none
	Data    any
}

// pageNames are the templates besides the layout, one per page.
var pageNames = []string{"overview", "agents", "alerts", "capacity", "cluster", "login"}

func parsePages() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parse console template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// page wraps a page's builder: sign-in, then render what it built.
func (c *Console) page(name string, build func(context.Context, viewer) any) http.HandlerFunc {
	title := strings.ToUpper(name[:1]) + name[1:]
	return func(w http.ResponseWriter, r *http.Request) {
		v, ok := c.authenticate(w, r)
		if !ok {
			return
		}
		p := page{Title: title, Nav: name, Viewer: &v, Now: c.now(), Data: build(r.Context(), v)}
		if c.cfg.Refresh > 0 {
			p.Refresh = int(c.cfg.Refresh / time.Second)
		}
		c.render(w, http.StatusOK, name, p)
	}
}

// render executes a page into a buffer first, so that a template error
// is a clean 500 rather than half a page.
func (c *Console) render(w http.ResponseWriter, code int, name string, p page) {
	if p.Now.IsZero() {
		p.Now = c.now()
	}
	var buf bytes.Buffer
	if err := c.pages[name].Execute(&buf, p); err != nil {
		c.logger.Error("console page failed to render", "page", name, "err", err)
		http.Error(w, "console page failed to render", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

var funcs = template.FuncMap{
	"utc":          formatTime,
	"ago":          ago,
	"labels":       formatLabels,
	"mlabels":      func(ls model.LabelSet) string { return formatLabels(labelMap(ls)) },
	"alertname":    func(ls model.LabelSet) string { return string(ls[model.AlertNameLabel]) },
	"num":          formatNumber,
	"explain":      explainDecision,
	"explainEvent": explainEvent,
	"join":         strings.Join,
	"role": func(v *viewer) string {
		if v.CanReadAll() {
			return "cross-bureau: every bureau"
		}
		return "bureau " + v.Tenant
	},
}

func labelMap(ls model.LabelSet) map[string]string {
	m := make(map[string]string, len(ls))
	for k, v := range ls {
		m[string(k)] = string(v)
	}
	return m
}

// formatLabels prints labels sorted, alertname first.
func formatLabels(ls map[string]string) string {
	keys := make([]string, 0, len(ls))
	for k := range ls {
		if k != "alertname" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+strconv.Quote(ls[k]))
	}
	return strings.Join(parts, ", ")
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// ago is how long before now t was, to the second.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		return "in " + (-d).String()
	}
	return d.String() + " ago"
}

func formatNumber(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}
