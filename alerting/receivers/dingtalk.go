package receivers

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	amcommoncfg "github.com/prometheus/alertmanager/config/common"
	"github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/alertmanager/types"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
)

// dingTalkMaxTextBytes is DingTalk's limit on a robot message's text.
const dingTalkMaxTextBytes = 20000

// dingTalkCodes are DingTalk error codes worth retrying.
var dingTalkCodes = map[int]codeRule{
	-1:     {retry: true, reason: notify.ServerErrorReason},  // system busy
	130101: {retry: true, reason: notify.RateLimitedReason},  // sending too fast (20 messages a minute)
	310000: {retry: false, reason: notify.AuthErrorReason},   // keyword, signature or IP allow-list rejected
	300001: {retry: false, reason: notify.AuthErrorReason},   // invalid access_token
	400013: {retry: false, reason: notify.ClientErrorReason}, // robot disabled or group dissolved
}

// DingTalkConfig configures a DingTalk group robot ("custom robot").
type DingTalkConfig struct {
	amcommoncfg.NotifierConfig `yaml:",inline" json:",inline"`

	HTTPConfig *commoncfg.HTTPClientConfig `yaml:"http_config,omitempty" json:"http_config,omitempty"`
	// URL is the robot webhook, https://oapi.dingtalk.com/robot/send?access_token=...;
	// the access token makes it a secret.
	URL *amcommoncfg.SecretURL `yaml:"url,omitempty" json:"url,omitempty"`
	// Secret is the robot's signing secret (SEC...). When set, every request
	// is signed; leave it empty for robots secured by keyword or IP list.
	Secret commoncfg.Secret `yaml:"secret,omitempty" json:"secret,omitempty"`
	// Title is a template for the notification preview title.
	Title string `yaml:"title,omitempty" json:"title,omitempty"`
	// Message is a template for the markdown text shown in the group.
	Message string `yaml:"message,omitempty" json:"message,omitempty"`
	// AtMobiles are the mobile numbers of members to @-mention.
	AtMobiles []string `yaml:"at_mobiles,omitempty" json:"at_mobiles,omitempty"`
	// AtAll @-mentions everyone in the group.
	AtAll bool `yaml:"at_all,omitempty" json:"at_all,omitempty"`
	// Timeout bounds one request; 0 means the default, 5s.
	Timeout model.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// defaultDingTalkConfig is where DingTalk's defaults live.
func defaultDingTalkConfig() DingTalkConfig {
	return DingTalkConfig{
		NotifierConfig: amcommoncfg.NotifierConfig{VSendResolved: true},
		Title:          defaultTitle,
		Message:        defaultMarkdownMessage,
		Timeout:        defaultTimeout,
	}
}

// UnmarshalYAML implements yaml.Unmarshaler, applying defaults first.
func (c *DingTalkConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = defaultDingTalkConfig()
	type plain DingTalkConfig
	return redactUnmarshal(unmarshal((*plain)(c)), unmarshal, "url", "secret")
}

// UnmarshalJSON implements json.Unmarshaler, applying defaults first.
func (c *DingTalkConfig) UnmarshalJSON(b []byte) error {
	*c = defaultDingTalkConfig()
	type plain DingTalkConfig
	return json.Unmarshal(b, (*plain)(c))
}

// validate fills defaults and checks c; p is the path of c.
func (c *DingTalkConfig) validate(p string) error {
	if c == nil {
		return fmt.Errorf("%s: empty config", p)
	}
	d := defaultDingTalkConfig()
	c.Title = orDefault(c.Title, d.Title)
	c.Message = orDefault(c.Message, d.Message)
	if err := validateURL(path(p, "url"), c.URL); err != nil {
		return err
	}
	if err := validateTemplate(path(p, "title"), c.Title); err != nil {
		return err
	}
	if err := validateTemplate(path(p, "message"), c.Message); err != nil {
		return err
	}
	for i, m := range c.AtMobiles {
		if m == "" {
			return fmt.Errorf("%s: empty", path(p, fmt.Sprintf("at_mobiles[%d]", i)))
		}
	}
	if err := validateHTTP(p, &c.HTTPConfig); err != nil {
		return err
	}
	return validateTimeout(p, &c.Timeout)
}

// dingTalk sends alerts to a DingTalk group robot.
type dingTalk struct {
	conf   *DingTalkConfig
	tmpl   *template.Template
	sender sender
	now    func() time.Time
}

func newDingTalk(c *DingTalkConfig, t *template.Template, l *slog.Logger) (*dingTalk, error) {
	s, err := newSender("dingtalk", c.HTTPConfig, c.Timeout, l)
	if err != nil {
		return nil, err
	}
	return &dingTalk{conf: c, tmpl: t, sender: s, now: time.Now}, nil
}

type dingTalkMessage struct {
	MsgType  string           `json:"msgtype"`
	Markdown dingTalkMarkdown `json:"markdown"`
	At       *dingTalkAt      `json:"at,omitempty"`
}

type dingTalkMarkdown struct {
	Title string `json:"title"`
	Text  string `json:"text"`
}

type dingTalkAt struct {
	AtMobiles []string `json:"atMobiles,omitempty"`
	IsAtAll   bool     `json:"isAtAll,omitempty"`
}

// dingTalkSign signs a request as DingTalk documents: the base64 of
// HMAC-SHA256 keyed by the secret over "timestamp\nsecret", with the
// timestamp in milliseconds. Both go into the query, URL-escaped.
func dingTalkSign(secret string, now time.Time) (timestamp, sign string) {
	timestamp = strconv.FormatInt(now.UnixMilli(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp + "\n" + secret))
	return timestamp, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Notify implements notify.Notifier.
func (n *dingTalk) Notify(ctx context.Context, alerts ...*types.Alert) (bool, error) {
	logger, data, err := groupData(ctx, &n.sender, n.tmpl, alerts)
	if err != nil {
		return false, err
	}

	var tmplErr error
	tmpl := notify.TmplText(n.tmpl, data, &tmplErr)
	title, text := strings.TrimSpace(tmpl(n.conf.Title)), tmpl(n.conf.Message)
	if tmplErr != nil {
		return false, fmt.Errorf("execute dingtalk template: %w", tmplErr)
	}
	msg := dingTalkMessage{
		MsgType: "markdown",
		Markdown: dingTalkMarkdown{
			Title: title,
			Text:  truncate(logger, "text", text, dingTalkMaxTextBytes),
		},
	}
	if len(n.conf.AtMobiles) > 0 || n.conf.AtAll {
		msg.At = &dingTalkAt{AtMobiles: n.conf.AtMobiles, IsAtAll: n.conf.AtAll}
	}
	body, err := marshalJSON(msg)
	if err != nil {
		return false, fmt.Errorf("encode dingtalk message: %w", err)
	}

	u := (*amcommoncfg.URL)(n.conf.URL).Copy()
	if n.conf.Secret != "" {
		ts, sign := dingTalkSign(string(n.conf.Secret), n.now())
		q := u.Query()
		q.Set("timestamp", ts)
		q.Set("sign", sign)
		u.RawQuery = q.Encode()
	}
	resp, retry, err := n.sender.post(ctx, http.MethodPost, u.String(), "application/json", nil, body)
	if err != nil {
		return retry, err
	}
	return checkErrcode("dingtalk", resp.body, dingTalkCodes)
}
