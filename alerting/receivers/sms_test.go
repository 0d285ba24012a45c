package receivers

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/alertmanager/types"
	commoncfg "github.com/prometheus/common/config"
)

func TestSMSNotify(t *testing.T) {
	tests := []struct {
		name   string
		conf   func(base string) *SMSConfig
		answer string
		alerts []*types.Alert
		check  func(t *testing.T, r request)
	}{
		{
			name: "default JSON body with basic auth",
			conf: func(base string) *SMSConfig {
				return &SMSConfig{
					URL: amURL(base + "/v1/sms"), To: []string{"+8613800000000", "13900000000"},
					HTTPConfig: &commoncfg.HTTPClientConfig{BasicAuth: &commoncfg.BasicAuth{Username: "bureau", Password: "pw-123"}},
				}
			},
			alerts: []*types.Alert{firing("db-1")},
			check: func(t *testing.T, r request) {
				if u, p, ok := (&http.Request{Header: r.header}).BasicAuth(); !ok || u != "bureau" || p != "pw-123" {
					t.Errorf("basic auth = %q %q %v, want bureau pw-123", u, p, ok)
				}
				if r.method != http.MethodPost || r.header.Get("Content-Type") != "application/json" {
					t.Errorf("got %s %q, want POST application/json", r.method, r.header.Get("Content-Type"))
				}
				var got struct {
					To      []string `json:"to"`
					Message string   `json:"message"`
				}
				if err := json.Unmarshal(r.body, &got); err != nil {
					t.Fatalf("body %s: %v", r.body, err)
				}
				if strings.Join(got.To, ",") != "+8613800000000,13900000000" {
					t.Errorf("to = %v", got.To)
				}
				if want := "[FIRING:1] DiskFull (db-1) disk /data is 97% full"; got.Message != want {
					t.Errorf("message = %q, want %q", got.Message, want)
				}
			},
		},
		{
			name: "form body with bearer token and headers, resolved",
			conf: func(base string) *SMSConfig {
				return &SMSConfig{
					URL: amURL(base + "/send"), To: []string{"13800000000"},
					HTTPConfig:  &commoncfg.HTTPClientConfig{Authorization: &commoncfg.Authorization{Type: "Bearer", Credentials: "tok-456"}},
					Headers:     map[string]commoncfg.Secret{"X-App-Id": "bureau-ops"},
					ContentType: "application/x-www-form-urlencoded",
					Message:     `{{ .Status }} {{ .CommonLabels.alertname }}`,
					Body:        `mobile={{ join "," .To }}&content={{ .Message | urlquery }}&alerts={{ len .Alerts }}`,
				}
			},
			alerts: []*types.Alert{resolved("db-1")},
			check: func(t *testing.T, r request) {
				if got := r.header.Get("Authorization"); got != "Bearer tok-456" {
					t.Errorf("Authorization = %q", got)
				}
				if got := r.header.Get("X-App-Id"); got != "bureau-ops" {
					t.Errorf("X-App-Id = %q", got)
				}
				if got := r.header.Get("Content-Type"); got != "application/x-www-form-urlencoded" {
					t.Errorf("Content-Type = %q", got)
				}
				form, err := url.ParseQuery(string(r.body))
				if err != nil {
					t.Fatalf("body %s: %v", r.body, err)
				}
				if form.Get("mobile") != "13800000000" || form.Get("content") != "resolved DiskFull" || form.Get("alerts") != "1" {
					t.Errorf("form = %v", form)
				}
			},
		},
		{
			name: "GET with templated query and regex on body",
			conf: func(base string) *SMSConfig {
				return &SMSConfig{
					URL:    amURL(base + `/api?to={{ index .To 0 }}&text={{ .Message | urlquery }}`),
					Method: "get", To: []string{"13800000000"},
					Message:      `alert {{ .CommonLabels.alertname }}`,
					SuccessRegex: `^OK`,
				}
			},
			answer: "OK 1 sent",
			alerts: []*types.Alert{firing("db-1")},
			check: func(t *testing.T, r request) {
				if r.method != http.MethodGet || len(r.body) != 0 {
					t.Errorf("got %s with body %q, want GET without body", r.method, r.body)
				}
				if q := r.url.Query(); q.Get("to") != "13800000000" || q.Get("text") != "alert DiskFull" {
					t.Errorf("query = %v", q)
				}
			},
		},
		{
			name: "message truncated to max runes",
			conf: func(base string) *SMSConfig {
				return &SMSConfig{
					URL: amURL(base + "/sms"), To: []string{"13800000000"},
					Message:         `告警{{ range .Alerts }}{{ .Annotations.summary }}{{ end }}`,
					MaxMessageRunes: 20,
				}
			},
			alerts: []*types.Alert{firing("a"), firing("b"), firing("c")},
			check: func(t *testing.T, r request) {
				var got struct{ Message string }
				if err := json.Unmarshal(r.body, &got); err != nil {
					t.Fatal(err)
				}
				if n := utf8.RuneCountInString(got.Message); n != 20 || !strings.HasPrefix(got.Message, "告警disk") || !strings.HasSuffix(got.Message, "…") {
					t.Errorf("message %q has %d runes, want 20 ending in a marker", got.Message, n)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			answer := tc.answer
			if answer == "" {
				answer = `{"code":0}`
			}
			srv := newServer(t, http.StatusOK, answer)
			c := &Config{SMS: []*SMSConfig{tc.conf(srv.URL)}}
			if retry, err := integrations(t, c)[0].Notify(notifyCtx(t), tc.alerts...); err != nil {
				t.Fatalf("notify: retry=%v err=%v", retry, err)
			}
			tc.check(t, srv.next(t))
		})
	}
}

func TestSMSSuccessCheck(t *testing.T) {
	tests := []struct {
		name, field, regex, body string
		wantErr                  bool
	}{
		{name: "no check", body: `{"code":1}`},
		{name: "nested field matches", field: "result.status", regex: "^(OK|SENT)$", body: `{"result":{"status":"SENT"}}`},
		{name: "array index", field: "results.0.code", regex: "^0$", body: `{"results":[{"code":0}]}`},
		{name: "number as written", field: "code", regex: "^200$", body: `{"code":200}`},
		{name: "field mismatch", field: "code", regex: "^0$", body: `{"code":1001,"msg":"no balance"}`, wantErr: true},
		{name: "field missing", field: "code", regex: "^0$", body: `{"status":0}`, wantErr: true},
		{name: "not JSON", field: "code", regex: "^0$", body: `OK`, wantErr: true},
		{name: "body regex mismatch", regex: `"ok":\s*true`, body: `{"ok": false}`, wantErr: true},
		{name: "body regex match", regex: `"ok":\s*true`, body: `{"ok": true}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, http.StatusOK, tc.body)
			c := &Config{SMS: []*SMSConfig{{URL: amURL(srv.URL), To: []string{"13800000000"}, SuccessJSONField: tc.field, SuccessRegex: tc.regex}}}
			retry, err := integrations(t, c)[0].Notify(notifyCtx(t), firing("db-1"))
			srv.next(t)
			if (err != nil) != tc.wantErr || retry {
				t.Errorf("retry=%v err=%v, want error=%v and no retry", retry, err, tc.wantErr)
			}
		})
	}
}
