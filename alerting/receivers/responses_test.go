package receivers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	amcommoncfg "github.com/prometheus/alertmanager/config/common"
	"github.com/prometheus/alertmanager/eventrecorder"
	"github.com/prometheus/alertmanager/featurecontrol"
	"github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
)

// kind describes one receiver kind for the tests shared by all kinds.
type kind struct {
	name string
	// config points a one-entry Config at base.
	config func(t testing.TB, base string) *Config
	ok     string
	// errBody answers 200 with a platform error code; "" if the kind has none.
	errBody func(code int) string
	// finalCode and busyCode are a non-retryable and a rate-limit code.
	finalCode, busyCode int
}

func kinds() []kind {
	errcode := func(code int) string { return fmt.Sprintf(`{"errcode":%d,"errmsg":"nope"}`, code) }
	return []kind{
		{
			name: "dingtalk",
			config: func(t testing.TB, base string) *Config {
				return &Config{DingTalk: []*DingTalkConfig{{URL: secretURL(t, base+"/robot/send?access_token=t"), Secret: "SECx"}}}
			},
			ok: `{"errcode":0,"errmsg":"ok"}`, errBody: errcode, finalCode: 310000, busyCode: 130101,
		},
		{
			name: "wecom",
			config: func(t testing.TB, base string) *Config {
				return &Config{WeCom: []*WeComConfig{{URL: secretURL(t, base+"/send?key=k")}}}
			},
			ok: `{"errcode":0,"errmsg":"ok"}`, errBody: errcode, finalCode: 93000, busyCode: 45009,
		},
		{
			name: "feishu",
			config: func(t testing.TB, base string) *Config {
				return &Config{Feishu: []*FeishuConfig{{URL: secretURL(t, base+"/hook/h"), Secret: "s"}}}
			},
			ok:        `{"code":0,"msg":"success"}`,
			errBody:   func(code int) string { return fmt.Sprintf(`{"code":%d,"msg":"nope"}`, code) },
			finalCode: 19021, busyCode: 11232,
		},
		{
			name: "sms",
			config: func(t testing.TB, base string) *Config {
				return &Config{SMS: []*SMSConfig{{
					URL: amURL(base + "/sms"), To: []string{"+8613800000000"},
					SuccessJSONField: "code", SuccessRegex: "^0$",
				}}}
			},
			ok:      `{"code":0}`,
			errBody: func(code int) string { return fmt.Sprintf(`{"code":%d}`, code) },
			// SMS gateways have no standard codes: any mismatch is final.
			finalCode: 1001,
		},
	}
}

func TestResponseHandling(t *testing.T) {
	type tc struct {
		name       string
		status     int
		body       string
		wantErr    bool
		wantRetry  bool
		wantReason notify.Reason
	}
	for _, k := range kinds() {
		cases := []tc{
			{name: "200 ok", status: 200, body: k.ok},
			{name: "500 is retried", status: 500, body: `{"error":"boom"}`, wantErr: true, wantRetry: true, wantReason: notify.ServerErrorReason},
			{name: "502 is retried", status: 502, body: "bad gateway", wantErr: true, wantRetry: true, wantReason: notify.ServerErrorReason},
			{name: "429 is retried", status: 429, body: "slow down", wantErr: true, wantRetry: true, wantReason: notify.RateLimitedReason},
			{name: "400 is final", status: 400, body: `{"error":"bad"}`, wantErr: true, wantReason: notify.ClientErrorReason},
			{name: "403 is final", status: 403, body: "forbidden", wantErr: true, wantReason: notify.AuthErrorReason},
			{name: "200 with error code is final", status: 200, body: k.errBody(k.finalCode), wantErr: true},
		}
		if k.busyCode != 0 {
			cases = append(cases, tc{name: "200 with rate-limit code is retried", status: 200, body: k.errBody(k.busyCode), wantErr: true, wantRetry: true, wantReason: notify.RateLimitedReason})
		}
		if k.name != "sms" {
			cases = append(cases, tc{name: "200 without JSON is final", status: 200, body: "<html>proxy</html>", wantErr: true})
		}
		for _, c := range cases {
			t.Run(k.name+"/"+c.name, func(t *testing.T) {
				srv := newServer(t, c.status, c.body)
				ints := integrations(t, k.config(t, srv.URL))
				retry, err := ints[0].Notify(notifyCtx(t), firing("db-1"))
				srv.next(t)
				if (err != nil) != c.wantErr || retry != c.wantRetry {
					t.Fatalf("got retry=%v err=%v, want retry=%v error=%v", retry, err, c.wantRetry, c.wantErr)
				}
				if err == nil {
					return
				}
				var ewr *notify.ErrorWithReason
				if !errors.As(err, &ewr) {
					t.Fatalf("error %v carries no reason for Alertmanager's metrics", err)
				}
				if c.wantReason != notify.DefaultReason && ewr.Reason != c.wantReason {
					t.Errorf("reason = %v, want %v", ewr.Reason, c.wantReason)
				}
			})
		}
	}
}

// TestHangingEndpointTimesOut runs all kinds at once, as Alertmanager's
// FanoutStage does, one of them against a server that never answers.
func TestHangingEndpointTimesOut(t *testing.T) {
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			hang := hangingServer(t)
			ok := newServer(t, http.StatusOK, `{"errcode":0,"errmsg":"ok"}`)
			c := k.config(t, hang.URL)
			const timeout = 300 * time.Millisecond
			setTimeout(c, model.Duration(timeout))
			c.WeCom = append(c.WeCom, &WeComConfig{URL: secretURL(t, ok.URL+"/send?key=k")})
			ints := integrations(t, c)

			type result struct {
				name  string
				retry bool
				err   error
				took  time.Duration
			}
			results := make(chan result, len(ints))
			start := time.Now()
			for _, in := range ints {
				go func() {
					retry, err := in.Notify(notifyCtx(t), firing("db-1"))
					results <- result{in.String(), retry, err, time.Since(start)}
				}()
			}
			got := map[string]result{}
			for range ints {
				select {
				case r := <-results:
					got[r.name] = r
				case <-time.After(testDeadline):
					t.Fatalf("notifiers still running at the deadline; got %v", got)
				}
			}
			hung := got[k.name+"[0]"]
			if hung.err == nil || !hung.retry || !errors.Is(hung.err, context.DeadlineExceeded) {
				t.Errorf("hanging %s: retry=%v err=%v, want a retryable deadline error", k.name, hung.retry, hung.err)
			}
			if hung.err != nil && strings.Contains(hung.err.Error(), hang.URL) {
				t.Errorf("error names the URL: %v", hung.err)
			}
			if hung.took < timeout || hung.took > timeout+3*time.Second {
				t.Errorf("hanging %s returned after %v, want about %v", k.name, hung.took, timeout)
			}
			healthy := got[fmt.Sprintf("wecom[%d]", len(c.WeCom)-1)]
			if healthy.err != nil || healthy.took >= timeout {
				t.Errorf("healthy wecom: err=%v after %v, want success before the other's timeout", healthy.err, healthy.took)
			}
		})
	}
}

func setTimeout(c *Config, d model.Duration) {
	for _, x := range c.DingTalk {
		x.Timeout = d
	}
	for _, x := range c.WeCom {
		x.Timeout = d
	}
	for _, x := range c.Feishu {
		x.Timeout = d
	}
	for _, x := range c.SMS {
		x.Timeout = d
	}
}

// TestRetryStage drives the integrations through Alertmanager's own
// RetryStage: a 500 is retried until it succeeds, a 400 is given up at once.
func TestRetryStage(t *testing.T) {
	metrics := notify.NewMetrics(prometheus.NewRegistry(), featurecontrol.NoopFlags{})
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			srv := newServer(t, http.StatusInternalServerError, "down")
			stage := notify.NewRetryStage(integrations(t, k.config(t, srv.URL))[0], "ops", metrics, eventrecorder.NopRecorder())

			done := make(chan error, 1)
			go func() {
				_, _, err := stage.Exec(notifyCtx(t), promslog.NewNopLogger(), firing("db-1"))
				done <- err
			}()
			srv.next(t)
			srv.answer(http.StatusOK, k.ok)
			srv.next(t)
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("retry stage after a 500 then a 200: %v", err)
				}
			case <-time.After(testDeadline):
				t.Fatal("retry stage did not finish before the deadline")
			}

			srv.answer(http.StatusBadRequest, "bad")
			if _, _, err := stage.Exec(notifyCtx(t), promslog.NewNopLogger(), firing("db-1")); err == nil || !strings.Contains(err.Error(), "unrecoverable error after 1 attempts") {
				t.Errorf("retry stage on a 400: %v, want it to give up after one attempt", err)
			}
			srv.next(t)
		})
	}
}

// amURL converts a test string to an SMS URL.
func amURL(s string) amcommoncfg.SecretTemplateURL { return amcommoncfg.SecretTemplateURL(s) }
