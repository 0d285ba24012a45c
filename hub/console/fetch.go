package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// maxAPIBody bounds what one in-process API call may answer.
const maxAPIBody = 32 << 20

// recorder is the smallest ResponseWriter that keeps a response.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
	over   bool
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	if r.body.Len()+len(b) > maxAPIBody {
		r.over = true
		return 0, fmt.Errorf("response larger than %d bytes", maxAPIBody)
	}
	return r.body.Write(b)
}

// get calls the hub's API at path (with query) as v and decodes the JSON
// body into out.
func (c *Console) get(ctx context.Context, v viewer, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	req.Header.Set("Authorization", "Bearer "+v.token)
	req.Header.Set("Accept", "application/json")
	req.RemoteAddr = "console"
	rec := &recorder{header: http.Header{}}
	c.deps.API.ServeHTTP(rec, req)
	if rec.over {
		return fmt.Errorf("GET %s: response larger than %d bytes", req.URL.Path, maxAPIBody)
	}
	if rec.code != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", req.URL.Path, rec.code, errorText(rec.body.Bytes()))
	}
	if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
		return fmt.Errorf("GET %s: decode: %w", req.URL.Path, err)
	}
	return nil
}

// getData is get for the APIs that answer in the Prometheus envelope
// {"status":"success","data":...}.
func (c *Console) getData(ctx context.Context, v viewer, path string, data any) error {
	env := struct {
		Status string `json:"status"`
		Data   any    `json:"data"`
	}{Data: data}
	if err := c.get(ctx, v, path, &env); err != nil {
		return err
	}
	if env.Status != "success" {
		return fmt.Errorf("GET %s: status %q", path, env.Status)
	}
	return nil
}

// errorText is the message of an API error body in any of the hub's
// error shapes, or the body itself, shortened.
func errorText(b []byte) string {
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &e) == nil {
		if e.Error != "" {
			return e.Error
		}
		if e.Message != "" {
			return e.Message
		}
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// sample is one element of an instant vector.
type sample struct {
	Metric map[string]string
	Value  float64
}

// instant runs a PromQL instant query as v, through the query API and so
// scoped to v's tenant.
func (c *Console) instant(ctx context.Context, v viewer, expr string) ([]sample, error) {
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := c.getData(ctx, v, "/api/v1/query?query="+url.QueryEscape(expr), &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: got a %s, want a vector", expr, data.ResultType)
	}
	out := make([]sample, 0, len(data.Result))
	for _, r := range data.Result {
		s, _ := r.Value[1].(string)
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %q: %w", expr, s, err)
		}
		out = append(out, sample{Metric: r.Metric, Value: f})
	}
	return out, nil
}
