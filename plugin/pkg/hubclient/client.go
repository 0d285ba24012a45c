// Package hubclient is a small typed client of the bureauhub hub's HTTP API
// as one bearer token sees it: the Prometheus query API, forecasts,
// recommendations, autoscale actions, alert history and hosted services.
// It reuses the hub's own response types, so a change in the hub's JSON
// breaks this module's build or tests rather than a dashboard.
package hubclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bureauhub/bureauhub/alerting/history"
	"github.com/bureauhub/bureauhub/hub/autoscale"
	"github.com/bureauhub/bureauhub/hub/forecast"
	"github.com/bureauhub/bureauhub/hub/refsvc/host"
)

// maxBody bounds how much of one answer is read; the hub's own limits
// (11000 points per series) keep real answers far below it.
const maxBody = 256 << 20

// Client calls one hub as one token. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// New returns a client of the hub at baseURL (scheme, host and an
// optional path prefix) authenticating with token; hc nil means a client
// with a 30 s timeout.
func New(baseURL, token string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("hub URL %q: %w", baseURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("hub URL %q: want http(s)://host[:port]", baseURL)
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{base: u, token: token, http: hc}, nil
}

// URL is the hub's base URL, for messages.
func (c *Client) URL() string { return c.base.String() }

// APIError is an answer of the hub other than 2xx.
type APIError struct {
	Status int    // HTTP status
	Type   string // errorType of the Prometheus envelope, if any
	Msg    string // the hub's message
}

func (e *APIError) Error() string {
	if e.Type != "" {
		return fmt.Sprintf("hub answered %d %s: %s", e.Status, e.Type, e.Msg)
	}
	return fmt.Sprintf("hub answered %d: %s", e.Status, e.Msg)
}

// UnreachableError is a request that got no HTTP answer at all.
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("hub unreachable at %s: %v", e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// IsUnauthorized reports whether err is the hub refusing the token (401).
func IsUnauthorized(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusUnauthorized
}

// get calls path with query v and decodes the envelope's data into out.
func (c *Client) get(ctx context.Context, path string, v url.Values, out any) error {
	u := *c.base
	u.Path = c.base.Path + path
	u.RawQuery = v.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &UnreachableError{URL: c.base.String(), Err: unwrapURLError(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		return apiError(resp.StatusCode, body)
	}
	env := struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
	}{}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	if env.Status != "success" {
		return &APIError{Status: resp.StatusCode, Type: env.ErrorType, Msg: env.Error}
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return fmt.Errorf("decode %s data: %w", path, err)
	}
	return nil
}

// unwrapURLError drops url.Error's "Get <url>:" prefix: the message says
// the address already.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// apiError reads the hub's two error shapes: the Prometheus envelope
// (error, errorType) and Alertmanager's (code, message).
func apiError(status int, body []byte) error {
	var e struct {
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Message   string `json:"message"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil {
		switch {
		case e.Error != "":
			msg = e.Error
		case e.Message != "":
			msg = e.Message
		}
	}
	if len(msg) > 512 {
		msg = msg[:512] + "..."
	}
	return &APIError{Status: status, Type: e.ErrorType, Msg: msg}
}

// Sample is one point of a range query's series.
type Sample struct {
	T time.Time
	V float64
}

// Series is one series of a query result: instant results have one
// sample.
type Series struct {
	Labels  map[string]string
	Samples []Sample
}

// QueryRange runs expr over [start, end] every step.
func (c *Client) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]Series, error) {
	v := url.Values{
		"query": {expr},
		"start": {formatTime(start)},
		"end":   {formatTime(end)},
		"step":  {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	}
	var data queryData
	if err := c.get(ctx, "/api/v1/query_range", v, &data); err != nil {
		return nil, err
	}
	return data.series()
}

// Query runs expr at t.
func (c *Client) Query(ctx context.Context, expr string, t time.Time) ([]Series, error) {
	var data queryData
	if err := c.get(ctx, "/api/v1/query", url.Values{"query": {expr}, "time": {formatTime(t)}}, &data); err != nil {
		return nil, err
	}
	return data.series()
}

type queryData struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

func (d queryData) series() ([]Series, error) {
	switch d.ResultType {
	case "matrix", "vector":
		var rs []struct {
			Metric map[string]string `json:"metric"`
			Values []point           `json:"values"`
			Value  *point            `json:"value"`
		}
		if err := json.Unmarshal(d.Result, &rs); err != nil {
			return nil, fmt.Errorf("decode %s: %w", d.ResultType, err)
		}
		out := make([]Series, 0, len(rs))
		for _, r := range rs {
			s := Series{Labels: r.Metric}
			if r.Value != nil {
				r.Values = append(r.Values, *r.Value)
			}
			for _, p := range r.Values {
				s.Samples = append(s.Samples, Sample(p))
			}
			out = append(out, s)
		}
		return out, nil
	case "scalar":
		var p point
		if err := json.Unmarshal(d.Result, &p); err != nil {
			return nil, fmt.Errorf("decode scalar: %w", err)
		}
		return []Series{{Labels: map[string]string{}, Samples: []Sample{Sample(p)}}}, nil
	}
	return nil, fmt.Errorf("result type %q is not supported", d.ResultType)
}

// point is a Prometheus [unix seconds, "value"] pair.
type point Sample

func (p *point) UnmarshalJSON(b []byte) error {
	var raw [2]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	var ts float64
	var vs string
	if err := json.Unmarshal(raw[0], &ts); err != nil {
		return err
	}
	if err := json.Unmarshal(raw[1], &vs); err != nil {
		return err
	}
	v, err := strconv.ParseFloat(vs, 64)
	if err != nil {
		return err
	}
	p.T = time.UnixMilli(int64(ts * 1000)).UTC()
	p.V = v
	return nil
}

// LabelValues lists the values of label name the token may see.
func (c *Client) LabelValues(ctx context.Context, name string, start, end time.Time) ([]string, error) {
	v := url.Values{}
	if !start.IsZero() {
		v.Set("start", formatTime(start))
		v.Set("end", formatTime(end))
	}
	var out []string
	err := c.get(ctx, "/api/v1/label/"+url.PathEscape(name)+"/values", v, &out)
	return out, err
}

// Forecasts returns the newest forecast of every signal the token may
// read, or of signal alone when it is not empty (nil when the hub has
// none for it).
func (c *Client) Forecasts(ctx context.Context, signal string) ([]forecast.ForecastJSON, error) {
	v := url.Values{}
	if signal != "" {
		v.Set("signal", signal)
	}
	var out []forecast.ForecastJSON
	err := c.get(ctx, "/api/v1/forecasts", v, &out)
	var ae *APIError
	if signal != "" && errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return nil, nil
	}
	return out, err
}

// Recommendations returns the autoscaler's current view of each target
// the token may read.
func (c *Client) Recommendations(ctx context.Context) ([]autoscale.TargetStatus, error) {
	var out []autoscale.TargetStatus
	err := c.get(ctx, autoscale.RecommendationsPath, nil, &out)
	return out, err
}

// ActionsQuery selects autoscale audit events; empty fields are not
// sent (the hub's defaults apply).
type ActionsQuery struct {
	Tenant, Target string
	// Events is the hub's event parameter: "" (actions and outcomes),
	// "all", or a comma-separated list of decision, action, outcome.
	Events     string
	Start, End time.Time
	Limit      int
}

// Actions returns the autoscaler's audit events, oldest first.
func (c *Client) Actions(ctx context.Context, q ActionsQuery) ([]autoscale.Event, error) {
	v := url.Values{}
	setNonEmpty(v, "tenant", q.Tenant)
	setNonEmpty(v, "target", q.Target)
	setNonEmpty(v, "event", q.Events)
	setTimes(v, q.Start, q.End)
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out []autoscale.Event
	err := c.get(ctx, autoscale.ActionsPath, v, &out)
	return out, err
}

// HistoryQuery selects alert history rows.
type HistoryQuery struct {
	Tenant string
	// Match are series selectors on the alerts' labels, ORed.
	Match      []string
	Start, End time.Time
	Limit      int
}

// AlertHistory returns the alert history rows the token may read.
func (c *Client) AlertHistory(ctx context.Context, q HistoryQuery) ([]history.Record, error) {
	v := url.Values{}
	setNonEmpty(v, "tenant", q.Tenant)
	for _, m := range q.Match {
		if strings.TrimSpace(m) != "" {
			v.Add("match[]", m)
		}
	}
	setTimes(v, q.Start, q.End)
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out []history.Record
	err := c.get(ctx, "/api/v1/alerts/history", v, &out)
	return out, err
}

// Services lists the hosted services the token may see.
func (c *Client) Services(ctx context.Context) ([]host.ServiceStatus, error) {
	var out []host.ServiceStatus
	err := c.get(ctx, "/api/v1/services", nil, &out)
	return out, err
}

func setNonEmpty(v url.Values, k, s string) {
	if s != "" {
		v.Set(k, s)
	}
}

func setTimes(v url.Values, start, end time.Time) {
	if !start.IsZero() {
		v.Set("start", formatTime(start))
	}
	if !end.IsZero() {
		v.Set("end", formatTime(end))
	}
}

func formatTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', -1, 64)
}
