package receivers

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	yamlv2 "gopkg.in/yaml.v2"
	yamlv3 "gopkg.in/yaml.v3"
)

// receiverYAML is one receiver's extra configs as they sit in the alerting
// config file. Every secret contains "SECRET" so leaks are easy to find.
const receiverYAML = `
dingtalk_configs:
- url: https://oapi.dingtalk.com/robot/send?access_token=dt-SECRET-1
  secret: SECdingtalk-SECRET-2
  at_mobiles: ["13800000000"]
wecom_configs:
- url: https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=wecom-SECRET-3
  send_resolved: false
  timeout: 3s
feishu_configs:
- url: https://open.feishu.cn/open-apis/bot/v2/hook/feishu-SECRET-4
  secret: feishu-SECRET-5
  msg_type: interactive
  title: '{{ .CommonLabels.alertname }}'
sms_configs:
- url: https://sms.bureau.example/send?apikey=sms-SECRET-6
  to: ["+8613800000000"]
  headers: {X-Api-Key: sms-SECRET-7}
  http_config:
    basic_auth: {username: ops, password: sms-SECRET-8}
  success_json_field: code
  success_regex: '^0$'
`

func TestUnmarshalAppliesDefaults(t *testing.T) {
	decoders := map[string]func([]byte, any) error{
		"yaml.v2": yamlv2.UnmarshalStrict,
		"yaml.v3": yamlv3.Unmarshal,
	}
	for name, unmarshal := range decoders {
		t.Run(name, func(t *testing.T) {
			var c Config
			if err := unmarshal([]byte(receiverYAML), &c); err != nil {
				t.Fatal(err)
			}
			if err := c.Validate("receivers[0]"); err != nil {
				t.Fatal(err)
			}
			dt, wc, fs, sm := c.DingTalk[0], c.WeCom[0], c.Feishu[0], c.SMS[0]
			if !dt.SendResolved() || wc.SendResolved() || !fs.SendResolved() || !sm.SendResolved() {
				t.Errorf("send_resolved = %v %v %v %v, want default true unless set false", dt.SendResolved(), wc.SendResolved(), fs.SendResolved(), sm.SendResolved())
			}
			if dt.Title != defaultTitle || dt.Message != defaultMarkdownMessage || dt.Timeout != defaultTimeout || dt.HTTPConfig == nil {
				t.Errorf("dingtalk defaults not filled: %+v", dt)
			}
			if wc.Timeout != model.Duration(3*time.Second) {
				t.Errorf("wecom timeout = %v, want 3s", wc.Timeout)
			}
			if fs.Title != "{{ .CommonLabels.alertname }}" || fs.MsgType != "interactive" {
				t.Errorf("feishu = %+v", fs)
			}
			if sm.Method != "POST" || sm.ContentType != "application/json" || sm.Body != defaultSMSBody || sm.MaxMessageRunes != defaultSMSMaxRunes {
				t.Errorf("sms defaults not filled: %+v", sm)
			}
			if string(sm.HTTPConfig.BasicAuth.Password) != "sms-SECRET-8" || string(dt.Secret) != "SECdingtalk-SECRET-2" {
				t.Error("secrets not loaded")
			}
			ints, err := c.Integrations("ops", newTemplate(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, in := range ints {
				names = append(names, in.String())
			}
			if got := strings.Join(names, " "); got != "dingtalk[0] wecom[0] feishu[0] sms[0]" {
				t.Errorf("integrations = %s", got)
			}
		})
	}
}

func TestUnmarshalJSONAppliesDefaults(t *testing.T) {
	var c Config
	if err := json.Unmarshal([]byte(`{"dingtalk_configs":[{"url":"https://oapi.dingtalk.com/robot/send?access_token=x"}]}`), &c); err != nil {
		t.Fatal(err)
	}
	if !c.DingTalk[0].SendResolved() || c.DingTalk[0].Title != defaultTitle {
		t.Errorf("defaults not applied: %+v", c.DingTalk[0])
	}
}

func TestValidate(t *testing.T) {
	u := func(s string) *DingTalkConfig { return &DingTalkConfig{URL: secretURL(t, s)} }
	ok := u("https://oapi.dingtalk.com/robot/send?access_token=dt-SECRET")
	sms := func(mod func(*SMSConfig)) *Config {
		c := &SMSConfig{URL: "https://sms.example/send?k=sms-SECRET", To: []string{"13800000000"}}
		mod(c)
		return &Config{SMS: []*SMSConfig{c}}
	}
	tests := []struct {
		name    string
		prefix  string
		conf    *Config
		wantErr string // prefix of the error; "" means valid
	}{
		{name: "valid", prefix: "receivers[2]", conf: &Config{DingTalk: []*DingTalkConfig{ok}}},
		{name: "missing url", prefix: "receivers[2]", conf: &Config{DingTalk: []*DingTalkConfig{{}}}, wantErr: "receivers[2].dingtalk_configs[0].url: missing"},
		{name: "second entry named", prefix: "receivers[2]", conf: &Config{DingTalk: []*DingTalkConfig{ok, {}}}, wantErr: "receivers[2].dingtalk_configs[1].url: missing"},
		{name: "no prefix", conf: &Config{DingTalk: []*DingTalkConfig{{}}}, wantErr: "dingtalk_configs[0].url: missing"},
		{name: "nil entry", prefix: "r", conf: &Config{WeCom: []*WeComConfig{nil}}, wantErr: "r.wecom_configs[0]: empty config"},
		{name: "bad title template", prefix: "r", conf: &Config{DingTalk: []*DingTalkConfig{{URL: ok.URL, Title: "{{ .Status "}}}, wantErr: "r.dingtalk_configs[0].title: "},
		{name: "empty mention", prefix: "r", conf: &Config{DingTalk: []*DingTalkConfig{{URL: ok.URL, AtMobiles: []string{""}}}}, wantErr: "r.dingtalk_configs[0].at_mobiles[0]: empty"},
		{name: "negative timeout", prefix: "r", conf: &Config{DingTalk: []*DingTalkConfig{{URL: ok.URL, Timeout: -1}}}, wantErr: "r.dingtalk_configs[0].timeout: must not be negative"},
		{name: "bad http_config", prefix: "r", conf: &Config{DingTalk: []*DingTalkConfig{{URL: ok.URL, HTTPConfig: &commoncfg.HTTPClientConfig{
			BasicAuth: &commoncfg.BasicAuth{Username: "u", Password: "p"}, BearerToken: "b",
		}}}}, wantErr: "r.dingtalk_configs[0].http_config: "},
		{name: "wecom url without key", prefix: "r", conf: &Config{WeCom: []*WeComConfig{{URL: secretURL(t, "https://qyapi.weixin.qq.com/cgi-bin/webhook/send")}}}, wantErr: "r.wecom_configs[0].url: missing key parameter"},
		{name: "feishu msg_type", prefix: "r", conf: &Config{Feishu: []*FeishuConfig{{URL: ok.URL, MsgType: "post"}}}, wantErr: `r.feishu_configs[0].msg_type: must be "text" or "interactive"`},
		{name: "sms valid", prefix: "r", conf: sms(func(*SMSConfig) {})},
		{name: "sms missing url", prefix: "r", conf: sms(func(c *SMSConfig) { c.URL = "" }), wantErr: "r.sms_configs[0].url: missing"},
		{name: "sms bad url", prefix: "r", conf: sms(func(c *SMSConfig) { c.URL = "ftp://sms-SECRET@x" }), wantErr: "r.sms_configs[0].url: must be an http or https URL"},
		{name: "sms missing to", prefix: "r", conf: sms(func(c *SMSConfig) { c.To = nil }), wantErr: "r.sms_configs[0].to: missing"},
		{name: "sms bad phone", prefix: "r", conf: sms(func(c *SMSConfig) { c.To = []string{"13800000000", "call me"} }), wantErr: `r.sms_configs[0].to[1]: not a phone number`},
		{name: "sms bad method", prefix: "r", conf: sms(func(c *SMSConfig) { c.Method = "DELETE" }), wantErr: "r.sms_configs[0].method: must be POST, PUT or GET"},
		{name: "sms GET with body", prefix: "r", conf: sms(func(c *SMSConfig) { c.Method = "GET"; c.Body = "x" }), wantErr: "r.sms_configs[0].body: must be empty with method GET"},
		{name: "sms content-type header", prefix: "r", conf: sms(func(c *SMSConfig) { c.Headers = map[string]commoncfg.Secret{"content-type": "x"} }), wantErr: "r.sms_configs[0].headers.Content-Type: set content_type instead"},
		{name: "sms bad regex", prefix: "r", conf: sms(func(c *SMSConfig) { c.SuccessRegex = "(" }), wantErr: "r.sms_configs[0].success_regex: "},
		{name: "sms field without regex", prefix: "r", conf: sms(func(c *SMSConfig) { c.SuccessJSONField = "code" }), wantErr: "r.sms_configs[0].success_regex: required with success_json_field"},
		{name: "sms bad body template", prefix: "r", conf: sms(func(c *SMSConfig) { c.Body = "{{ end }}" }), wantErr: "r.sms_configs[0].body: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.conf.Validate(tc.prefix)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("no error, want %q", tc.wantErr)
			case err != nil && !strings.HasPrefix(err.Error(), tc.wantErr):
				t.Fatalf("error %q, want it to start with %q", err, tc.wantErr)
			case err != nil && strings.Contains(err.Error(), "SECRET"):
				t.Fatalf("error leaks a secret: %v", err)
			}
		})
	}
}

// TestSecretsNeverShown marshals a loaded config every way the core might,
// and provokes the errors and logs a secret could leak into.
func TestSecretsNeverShown(t *testing.T) {
	var c Config
	if err := yamlv2.UnmarshalStrict([]byte(receiverYAML), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate("receivers[0]"); err != nil {
		t.Fatal(err)
	}
	noSecret := func(t *testing.T, what, s string) {
		t.Helper()
		if strings.Contains(s, "SECRET") {
			t.Errorf("%s shows a secret:\n%s", what, s)
		}
	}

	t.Run("marshal", func(t *testing.T) {
		for name, marshal := range map[string]func(any) ([]byte, error){
			"yaml.v2": yamlv2.Marshal,
			"yaml.v3": yamlv3.Marshal,
			"json":    json.Marshal,
		} {
			out, err := marshal(c)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			noSecret(t, name, string(out))
			// url, secret, url, url, secret, url, header, password.
			n := strings.Count(string(out), "<secret>") + strings.Count(string(out), `\u003csecret\u003e`)
			if n != 8 {
				t.Errorf("%s: %d secrets masked, want 8:\n%s", name, n, out)
			}
		}
	})

	t.Run("unmarshal errors", func(t *testing.T) {
		for _, bad := range []string{
			"dingtalk_configs: [{url: 'https://oapi.dingtalk.com/robot/send%zz?access_token=dt-SECRET'}]",
			"dingtalk_configs: [{url: 'ftp://dt-SECRET@x/'}]",
			"wecom_configs: [{url: 'https://qyapi.weixin.qq.com/send%zz?key=wc-SECRET'}]",
			"feishu_configs: [{url: 'https://open.feishu.cn/hook/fs-SECRET\x7f'}]",
			"sms_configs: [{url: 'https://sms.example/send%zz?k=sms-SECRET'}]",
		} {
			var c Config
			err := yamlv2.UnmarshalStrict([]byte(bad), &c)
			if err == nil {
				t.Errorf("no error for %s", bad)
				continue
			}
			noSecret(t, "error", err.Error())
		}
	})

	t.Run("notify errors and logs", func(t *testing.T) {
		var logs bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		srv := newServer(t, http.StatusBadRequest, `{"errcode":40001,"errmsg":"invalid"}`)
		closed := newServer(t, http.StatusOK, "")
		closed.Close()
		for _, base := range []string{srv.URL, closed.URL} {
			c := &Config{
				DingTalk: []*DingTalkConfig{{URL: secretURL(t, base+"/robot/send?access_token=dt-SECRET"), Secret: "SEC-SECRET"}},
				WeCom:    []*WeComConfig{{URL: secretURL(t, base+"/send?key=wc-SECRET")}},
				Feishu:   []*FeishuConfig{{URL: secretURL(t, base+"/hook/fs-SECRET"), Secret: "fs-SECRET"}},
				SMS: []*SMSConfig{{
					URL: amURL(base + "/send?k=sms-SECRET"), To: []string{"13800000000"}, Headers: map[string]commoncfg.Secret{"X-Key": "hdr-SECRET"},
					HTTPConfig: &commoncfg.HTTPClientConfig{Authorization: &commoncfg.Authorization{Type: "Bearer", Credentials: "tok-SECRET"}},
				}},
			}
			if err := c.Validate(""); err != nil {
				t.Fatal(err)
			}
			ints, err := c.Integrations("ops", newTemplate(t), logger)
			if err != nil {
				t.Fatal(err)
			}
			for _, in := range ints {
				_, err := in.Notify(notifyCtx(t), firing("db-1"))
				if err == nil {
					t.Fatalf("%s against %s: no error", in.String(), base)
				}
				noSecret(t, in.String()+" error", err.Error())
			}
		}
		noSecret(t, "logs", logs.String())
	})
}
