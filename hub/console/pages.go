package console

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/bureauhub/bureauhub/alerting/history"
	"github.com/bureauhub/bureauhub/hub/autoscale"
	"github.com/bureauhub/bureauhub/hub/forecast"
	"github.com/bureauhub/bureauhub/hub/refsvc/host"
	"github.com/bureauhub/bureauhub/hub/site"
)

// Rows shown per list; the APIs hold the rest.
const (
	historyRows = 100
	actionRows  = 50
	// recentWindow is how far back the history and actions lists look.
	recentWindow = time.Hour
)

// section is one source's outcome on a page: Off when its component is
// not configured, Err when its API failed (the page still renders).
type section struct {
	Off bool
	Err string
}

func (s *section) fail(err error) bool {
	if err != nil {
		s.Err = err.Error()
		return true
	}
	return false
}

// --- agents ---------------------------------------------------------------

// opt is a value that may be unknown; it prints "–" then.
type opt struct {
	V  float64
	OK bool
}

func (o opt) String() string {
	if !o.OK || math.IsNaN(o.V) {
		return "–"
	}
	return formatNumber(o.V)
}

// agentMetrics are one agent's self-reported metrics, by instance label:
// they exist only for agents that scrape their own /metrics.
type agentMetrics struct {
	Instance       string
	Connected      opt
	BacklogSamples opt
	BacklogBytes   opt
	OldestUnacked  opt
	Dropped        opt
	Dropped1h      opt
	Rejected       opt
}

type bureauAgents struct {
	Bureau       string
	Live, Silent int
	Agents       []site.AgentStatus
	Instances    []agentMetrics
}

type agentsView struct {
	Agents  section
	Metrics section
	Bureaus []*bureauAgents
}

// agentQueries are the agents' own metrics, one value per agent instance.
var agentQueries = []struct {
	expr string
	set  func(*agentMetrics, float64)
}{
	{`max by (bureau, instance) (bureauhub_agent_ship_connected)`, func(m *agentMetrics, v float64) { m.Connected = opt{v, true} }},
	{`max by (bureau, instance) (bureauhub_agent_buffer_samples)`, func(m *agentMetrics, v float64) { m.BacklogSamples = opt{v, true} }},
	{`max by (bureau, instance) (bureauhub_agent_buffer_bytes)`, func(m *agentMetrics, v float64) { m.BacklogBytes = opt{v, true} }},
	{`max by (bureau, instance) (bureauhub_agent_buffer_oldest_unacked_age_seconds)`, func(m *agentMetrics, v float64) { m.OldestUnacked = opt{v, true} }},
	{`max by (bureau, instance) (bureauhub_agent_buffer_dropped_samples_total)`, func(m *agentMetrics, v float64) { m.Dropped = opt{v, true} }},
	{`max by (bureau, instance) (increase(bureauhub_agent_buffer_dropped_samples_total[1h]))`, func(m *agentMetrics, v float64) { m.Dropped1h = opt{v, true} }},
	{`max by (bureau, instance) (bureauhub_agent_ship_rejected_samples_total)`, func(m *agentMetrics, v float64) { m.Rejected = opt{v, true} }},
}

func (c *Console) agents(ctx context.Context, v viewer) any {
	view := &agentsView{}
	byBureau := map[string]*bureauAgents{}
	bureau := func(name string) *bureauAgents {
		b := byBureau[name]
		if b == nil {
			b = &bureauAgents{Bureau: name}
			byBureau[name] = b
		}
		return b
	}
	var agents []site.AgentStatus
	if !view.Agents.fail(c.getData(ctx, v, AgentsPath, &agents)) {
		for _, a := range agents {
			b := bureau(a.Tenant)
			b.Agents = append(b.Agents, a)
			if a.Live {
				b.Live++
			} else {
				b.Silent++
			}
		}
	}
	type key struct{ bureau, instance string }
	metrics := map[key]*agentMetrics{}
	for _, q := range agentQueries {
		res, err := c.instant(ctx, v, q.expr)
		if view.Metrics.fail(err) {
			break
		}
		for _, s := range res {
			k := key{s.Metric["bureau"], s.Metric["instance"]}
			m := metrics[k]
			if m == nil {
				m = &agentMetrics{Instance: k.instance}
				metrics[k] = m
			}
			q.set(m, s.Value)
		}
	}
	for k, m := range metrics {
		b := bureau(k.bureau)
		b.Instances = append(b.Instances, *m)
	}
	for _, b := range byBureau {
		sort.Slice(b.Instances, func(i, j int) bool { return b.Instances[i].Instance < b.Instances[j].Instance })
		view.Bureaus = append(view.Bureaus, b)
	}
	sort.Slice(view.Bureaus, func(i, j int) bool { return view.Bureaus[i].Bureau < view.Bureaus[j].Bureau })
	return view
}

// --- alerts ---------------------------------------------------------------

// apiAlert is what the console reads of Alertmanager's v2 GettableAlert.
type apiAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	Fingerprint string            `json:"fingerprint"`
	Receivers   []struct {
		Name string `json:"name"`
	} `json:"receivers"`
	Status struct {
		State       string   `json:"state"`
		SilencedBy  []string `json:"silencedBy"`
		InhibitedBy []string `json:"inhibitedBy"`
	} `json:"status"`
}

// apiSilence is what the console reads of a v2 GettableSilence.
type apiSilence struct {
	ID     string `json:"id"`
	Status struct {
		State string `json:"state"`
	} `json:"status"`
	Matchers []struct {
		Name    string `json:"name"`
		Value   string `json:"value"`
		IsRegex bool   `json:"isRegex"`
		IsEqual *bool  `json:"isEqual"`
	} `json:"matchers"`
	StartsAt  time.Time `json:"startsAt"`
	EndsAt    time.Time `json:"endsAt"`
	CreatedBy string    `json:"createdBy"`
	Comment   string    `json:"comment"`
}

// MatchersText renders the matchers as in amtool.
func (s apiSilence) MatchersText() string {
	out := ""
	for i, m := range s.Matchers {
		op := "="
		neg := m.IsEqual != nil && !*m.IsEqual
		switch {
		case m.IsRegex && neg:
			op = "!~"
		case m.IsRegex:
			op = "=~"
		case neg:
			op = "!="
		}
		if i > 0 {
			out += ", "
		}
		out += m.Name + op + strconv.Quote(m.Value)
	}
	return out
}

type alertsView struct {
	Alerts     section
	Firing     []apiAlert
	Suppressed []apiAlert
	Silences   []apiSilence
	History    section
	Records    []history.Record
	// Truncated says the window held more records than were read.
	Truncated bool
	Since     time.Time
}

func (c *Console) alerts(ctx context.Context, v viewer) any {
	view := &alertsView{}
	if !c.deps.Available.Alerting {
		view.Alerts.Off, view.History.Off = true, true
		return view
	}
	var all []apiAlert
	if !view.Alerts.fail(c.get(ctx, v, "/api/v2/alerts", &all)) {
		for _, a := range all {
			if a.Status.State == "suppressed" {
				view.Suppressed = append(view.Suppressed, a)
			} else {
				view.Firing = append(view.Firing, a)
			}
		}
		var sils []apiSilence
		if !view.Alerts.fail(c.get(ctx, v, "/api/v2/silences", &sils)) {
			for _, s := range sils {
				if s.Status.State != "expired" {
					view.Silences = append(view.Silences, s)
				}
			}
		}
	}
	// The history API returns the oldest rows of a window first: read the
	// whole recent window and show its newest rows.
	now := c.now()
	view.Since = now.Add(-recentWindow)
	const limit = 2000
	q := url.Values{"start": {view.Since.UTC().Format(time.RFC3339)}, "end": {now.UTC().Format(time.RFC3339)}, "limit": {strconv.Itoa(limit)}}
	var recs []history.Record
	if !view.History.fail(c.getData(ctx, v, "/api/v1/alerts/history?"+q.Encode(), &recs)) {
		view.Truncated = len(recs) >= limit
		slices.Reverse(recs)
		view.Records = recs[:min(len(recs), historyRows)]
	}
	return view
}

// --- capacity -------------------------------------------------------------

type capacityView struct {
	Recommendations section
	Targets         []autoscale.TargetStatus
	Actions         section
	Events          []autoscale.Event
	Services        section
	Hosted          []host.ServiceStatus
	Forecasts       section
	Fitted          []forecast.ForecastJSON
	Since           time.Time
}

func (c *Console) capacity(ctx context.Context, v viewer) any {
	view := &capacityView{}
	now := c.now()
	view.Since = now.Add(-recentWindow)
	if !c.deps.Available.Autoscale {
		view.Recommendations.Off, view.Actions.Off = true, true
	} else {
		view.Recommendations.fail(c.getData(ctx, v, autoscale.RecommendationsPath, &view.Targets))
		q := url.Values{"start": {view.Since.UTC().Format(time.RFC3339)}, "end": {now.UTC().Format(time.RFC3339)}, "limit": {"1000"}}
		var events []autoscale.Event
		if !view.Actions.fail(c.getData(ctx, v, autoscale.ActionsPath+"?"+q.Encode(), &events)) {
			slices.Reverse(events)
			view.Events = events[:min(len(events), actionRows)]
		}
	}
	if !c.deps.Available.Services {
		view.Services.Off = true
	} else {
		view.Services.fail(c.getData(ctx, v, "/api/v1/services", &view.Hosted))
	}
	if !c.deps.Available.Forecast {
		view.Forecasts.Off = true
	} else {
		view.Forecasts.fail(c.getData(ctx, v, "/api/v1/forecasts", &view.Fitted))
	}
	return view
}

// explainDecision summarises an explanation in one line.
func explainDecision(e autoscale.Explanation) string {
	s := fmt.Sprintf("decided by %s; observed %s req/s", orDash(e.Term), formatNumber(float64(e.ObservedRate)))
	learned := "default"
	if e.CapacityLearned {
		learned = "learned"
	}
	s += fmt.Sprintf(", %s req/s per replica (%s) at %s utilization → reactive floor %d",
		formatNumber(float64(e.CapacityPerReplica)), learned, formatNumber(float64(e.TargetUtilization)), e.ReactiveFloor)
	if f := e.Forecast; f != nil {
		if f.Ignored != "" {
			s += "; forecast ignored: " + f.Ignored
		} else {
			s += fmt.Sprintf("; forecast %s peak %s (%s bound, MAPE %s) → %d", f.Model, formatNumber(float64(f.Used)), f.Bound,
				formatNumber(float64(f.MAPE)), e.ForecastReplicas)
		}
	}
	for _, b := range e.Bounds {
		s += "; bound " + b
	}
	for _, n := range e.Notes {
		s += "; " + n
	}
	return s
}

// explainEvent is explainDecision of an audit event's stored explanation.
func explainEvent(raw string) string {
	if raw == "" {
		return ""
	}
	var e autoscale.Explanation
	if err := json.Unmarshal([]byte(raw), &e); err != nil {
		return raw
	}
	return explainDecision(e)
}

// --- cluster and overview -------------------------------------------------

type clusterView struct {
	Members []Member
}

func (c *Console) cluster(context.Context, viewer) any {
	ms := c.deps.Members.Members()
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	return clusterView{Members: ms}
}

type overviewView struct {
	Agents       section
	Bureaus      int
	Live, Silent int
	Alerts       section
	Firing       int
	Suppressed   int
	Autoscale    section
	Targets      int
	Changes      int
	Services     section
	ServiceCount int
	Members      int
}

// overview reads only the in-memory APIs (no ClickHouse): it is the page
// ops keep open.
func (c *Console) overview(ctx context.Context, v viewer) any {
	view := &overviewView{}
	var agents []site.AgentStatus
	if !view.Agents.fail(c.getData(ctx, v, AgentsPath, &agents)) {
		seen := map[string]bool{}
		for _, a := range agents {
			seen[a.Tenant] = true
			if a.Live {
				view.Live++
			} else {
				view.Silent++
			}
		}
		view.Bureaus = len(seen)
	}
	if !c.deps.Available.Alerting {
		view.Alerts.Off = true
	} else {
		var all []apiAlert
		if !view.Alerts.fail(c.get(ctx, v, "/api/v2/alerts", &all)) {
			for _, a := range all {
				if a.Status.State == "suppressed" {
					view.Suppressed++
				} else {
					view.Firing++
				}
			}
		}
	}
	if !c.deps.Available.Autoscale {
		view.Autoscale.Off = true
	} else {
		var ts []autoscale.TargetStatus
		if !view.Autoscale.fail(c.getData(ctx, v, autoscale.RecommendationsPath, &ts)) {
			view.Targets = len(ts)
			for _, t := range ts {
				if t.Decision != nil && t.Recommended != t.Current {
					view.Changes++
				}
			}
		}
	}
	if !c.deps.Available.Services {
		view.Services.Off = true
	} else {
		var ss []host.ServiceStatus
		if !view.Services.fail(c.getData(ctx, v, "/api/v1/services", &ss)) {
			view.ServiceCount = len(ss)
		}
	}
	view.Members = len(c.deps.Members.Members())
	return view
}
