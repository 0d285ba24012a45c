package receivers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/alertmanager/types"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
)

// maxResponseBytes bounds how much of a response body is read; the robots
// answer with a few dozen bytes, so more than this is a misbehaving server.
const maxResponseBytes = 64 << 10

// maxErrorDetail bounds how much of a response body is quoted in an error.
const maxErrorDetail = 256

// sender is the HTTP plumbing every receiver here shares.
type sender struct {
	kind    string
	client  *http.Client
	timeout time.Duration
	logger  *slog.Logger
}

// newSender builds the HTTP client from hc (nil means prometheus/common's
// defaults) with Alertmanager's tracing transport, as its notifiers do.
func newSender(kind string, hc *commoncfg.HTTPClientConfig, timeout model.Duration, l *slog.Logger) (sender, error) {
	cfg := commoncfg.DefaultHTTPClientConfig
	if hc != nil {
		cfg = *hc
	}
	client, err := notify.NewClientWithTracing(cfg, kind)
	if err != nil {
		return sender{}, fmt.Errorf("build http client: %w", err)
	}
	return sender{kind: kind, client: client, timeout: time.Duration(timeout), logger: l}, nil
}

// response is what a receiver needs of an HTTP answer.
type response struct {
	status int
	body   []byte
}

// do sends one request under the configured timeout. A transport failure is
// retryable and its error never names the URL, which carries tokens.
func (s *sender) do(ctx context.Context, method, url, contentType string, header http.Header, body []byte) (response, bool, error) {
	if s.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, s.timeout, fmt.Errorf("configured %s timeout reached (%s)", s.kind, s.timeout))
		defer cancel()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		// The URL is only ever invalid here if it was templated; do not quote it.
		return response{}, false, fmt.Errorf("build %s request: invalid url or method", s.kind)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("User-Agent", notify.UserAgentHeader)
	if contentType != "" && body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return response{}, true, contextError(ctx, notify.RedactURL(err))
	}
	defer notify.Drain(resp)
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return response{}, true, fmt.Errorf("read %s response: %w", s.kind, contextError(ctx, err))
	}
	return response{status: resp.StatusCode, body: b}, false, nil
}

// contextError makes sure an error caused by ctx ending says why (our
// timeout or the pipeline's) and matches context.DeadlineExceeded or
// context.Canceled, which Alertmanager's RetryStage looks for.
func contextError(ctx context.Context, err error) error {
	ctxErr := ctx.Err()
	if ctxErr == nil {
		return err
	}
	if cause := context.Cause(ctx); !errors.Is(err, cause) {
		err = fmt.Errorf("%w: %w", err, cause)
	}
	if !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w (%w)", err, ctxErr)
	}
	return err
}

// groupData is what every receiver's Notify starts with: a logger carrying
// the group key and the template data of the alerts.
func groupData(ctx context.Context, s *sender, t *template.Template, alerts []*types.Alert) (*slog.Logger, *template.Data, error) {
	key, err := notify.ExtractGroupKey(ctx)
	if err != nil {
		return nil, nil, err
	}
	logger := s.logger.With("group_key", key)
	return logger, notify.GetTemplateData(ctx, t, alerts, logger), nil
}

// post sends body and applies checkStatus; the caller reads the body of a
// 2xx answer.
func (s *sender) post(ctx context.Context, method, url, contentType string, header http.Header, body []byte) (response, bool, error) {
	resp, retry, err := s.do(ctx, method, url, contentType, header, body)
	if err != nil {
		return resp, retry, err
	}
	retry, err = checkStatus(resp)
	return resp, retry, err
}

// checkErrcode reads a {"errcode": n, "errmsg": "..."} answer (DingTalk,
// WeCom) and applies checkCode.
func checkErrcode(kind string, body []byte, rules map[int]codeRule) (bool, error) {
	var r struct {
		ErrCode *int   `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.ErrCode == nil {
		return false, notify.NewErrorWithReason(notify.DefaultReason, fmt.Errorf("unexpected %s response: %s", kind, detail(body)))
	}
	return checkCode(kind, *r.ErrCode, r.ErrMsg, rules)
}

// checkStatus applies Alertmanager's webhook retry convention: 2xx is
// success, 5xx and 429 are retried, everything else is final.
func checkStatus(r response) (bool, error) {
	retrier := notify.Retrier{
		RetryCodes:        []int{http.StatusTooManyRequests},
		CustomDetailsFunc: func(int, io.Reader) string { return detail(r.body) },
	}
	retry, err := retrier.Check(r.status, nil)
	if err != nil {
		return retry, notify.NewErrorWithReason(notify.GetFailureReasonFromStatusCode(r.status), err)
	}
	return false, nil
}

// detail shortens a response body for an error message.
func detail(b []byte) string {
	s, _ := notify.TruncateInBytes(string(bytes.TrimSpace(b)), maxErrorDetail)
	return s
}

// codeRule says what a platform error code means for retrying.
type codeRule struct {
	retry  bool
	reason notify.Reason
}

// checkCode turns a platform's "200 OK but errcode != 0" answer into an
// error; codes not in rules are final client errors.
func checkCode(kind string, code int, msg string, rules map[int]codeRule) (bool, error) {
	if code == 0 {
		return false, nil
	}
	rule, ok := rules[code]
	if !ok {
		rule = codeRule{retry: false, reason: notify.ClientErrorReason}
	}
	return rule.retry, notify.NewErrorWithReason(rule.reason, fmt.Errorf("%s error code %d: %s", kind, code, msg))
}

// marshalJSON encodes v without HTML escaping, so that '<' in alert text
// stays one byte and length limits computed on the text hold.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// truncate shortens s to maxBytes, logging when it did.
func truncate(l *slog.Logger, field, s string, maxBytes int) string {
	t, cut := notify.TruncateInBytes(s, maxBytes)
	if cut {
		l.Warn("truncated message", "field", field, "max_bytes", maxBytes)
	}
	return t
}
