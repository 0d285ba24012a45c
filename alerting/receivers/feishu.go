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

// feishuMaxTextBytes keeps the text under Feishu's 20 KB request body limit
// with room for the JSON around it.
const feishuMaxTextBytes = 18000

// Feishu message types.
const (
	feishuText        = "text"
	feishuInteractive = "interactive"
)

// feishuCodes are Feishu error codes with a known meaning.
var feishuCodes = map[int]codeRule{
	11232: {retry: true, reason: notify.RateLimitedReason},  // frequency limited
	19021: {retry: false, reason: notify.AuthErrorReason},   // signature mismatch or stale timestamp
	19022: {retry: false, reason: notify.AuthErrorReason},   // IP not allowed
	19024: {retry: false, reason: notify.ClientErrorReason}, // keyword missing
}

// FeishuConfig configures a Feishu (Lark) custom bot.
type FeishuConfig struct {
	amcommoncfg.NotifierConfig `yaml:",inline" json:",inline"`

	HTTPConfig *commoncfg.HTTPClientConfig `yaml:"http_config,omitempty" json:"http_config,omitempty"`
	// URL is the bot webhook, https://open.feishu.cn/open-apis/bot/v2/hook/...;
	// the hook ID is a credential, so the URL is a secret.
	URL *amcommoncfg.SecretURL `yaml:"url,omitempty" json:"url,omitempty"`
	// Secret is the bot's signing secret. When set, every request is signed.
	Secret commoncfg.Secret `yaml:"secret,omitempty" json:"secret,omitempty"`
	// MsgType is "text" (the default) or "interactive" (a message card with
	// the title as a red or green header and the message as lark_md).
	MsgType string `yaml:"msg_type,omitempty" json:"msg_type,omitempty"`
	// Title is a template for the card header, or the first line of a text.
	Title string `yaml:"title,omitempty" json:"title,omitempty"`
	// Message is a template for the body.
	Message string `yaml:"message,omitempty" json:"message,omitempty"`
	// Timeout bounds one request; 0 means the default, 5s.
	Timeout model.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// defaultFeishuConfig is where Feishu's defaults live.
func defaultFeishuConfig() FeishuConfig {
	return FeishuConfig{
		NotifierConfig: amcommoncfg.NotifierConfig{VSendResolved: true},
		MsgType:        feishuText,
		Title:          defaultTitle,
		Message:        defaultAlertList,
		Timeout:        defaultTimeout,
	}
}

// UnmarshalYAML implements yaml.Unmarshaler, applying defaults first.
func (c *FeishuConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = defaultFeishuConfig()
	type plain FeishuConfig
	return redactUnmarshal(unmarshal((*plain)(c)), unmarshal, "url", "secret")
}

// UnmarshalJSON implements json.Unmarshaler, applying defaults first.
func (c *FeishuConfig) UnmarshalJSON(b []byte) error {
	*c = defaultFeishuConfig()
	type plain FeishuConfig
	return json.Unmarshal(b, (*plain)(c))
}

// validate fills defaults and checks c; p is the path of c.
func (c *FeishuConfig) validate(p string) error {
	if c == nil {
		return fmt.Errorf("%s: empty config", p)
	}
	d := defaultFeishuConfig()
	c.MsgType = orDefault(c.MsgType, d.MsgType)
	c.Title = orDefault(c.Title, d.Title)
	c.Message = orDefault(c.Message, d.Message)
	if err := validateURL(path(p, "url"), c.URL); err != nil {
		return err
	}
	if c.MsgType != feishuText && c.MsgType != feishuInteractive {
		return fmt.Errorf("%s: must be %q or %q, got %q", path(p, "msg_type"), feishuText, feishuInteractive, c.MsgType)
	}
	if err := validateTemplate(path(p, "title"), c.Title); err != nil {
		return err
	}
	if err := validateTemplate(path(p, "message"), c.Message); err != nil {
		return err
	}
	if err := validateHTTP(p, &c.HTTPConfig); err != nil {
		return err
	}
	return validateTimeout(p, &c.Timeout)
}

// feishu sends alerts to a Feishu custom bot.
type feishu struct {
	conf   *FeishuConfig
	tmpl   *template.Template
	sender sender
	now    func() time.Time
}

func newFeishu(c *FeishuConfig, t *template.Template, l *slog.Logger) (*feishu, error) {
	s, err := newSender("feishu", c.HTTPConfig, c.Timeout, l)
	if err != nil {
		return nil, err
	}
	return &feishu{conf: c, tmpl: t, sender: s, now: time.Now}, nil
}

type feishuMessage struct {
	Timestamp string         `json:"timestamp,omitempty"`
	Sign      string         `json:"sign,omitempty"`
	MsgType   string         `json:"msg_type"`
	Content   *feishuContent `json:"content,omitempty"`
	Card      *feishuCard    `json:"card,omitempty"`
}

type feishuContent struct {
	Text string `json:"text"`
}

type feishuCard struct {
	Config   feishuCardConfig    `json:"config"`
	Header   feishuCardHeader    `json:"header"`
	Elements []feishuCardElement `json:"elements"`
}

type feishuCardConfig struct {
	WideScreenMode bool `json:"wide_screen_mode"`
}

type feishuCardHeader struct {
	Title    feishuCardText `json:"title"`
	Template string         `json:"template"`
}

type feishuCardElement struct {
	Tag  string         `json:"tag"`
	Text feishuCardText `json:"text"`
}

type feishuCardText struct {
	Tag     string `json:"tag"`
	Content string `json:"content"`
}

// feishuResponse covers both the current answer (code, msg) and the legacy
// one (StatusCode, StatusMessage) that Feishu still sends alongside.
type feishuResponse struct {
	Code          *int   `json:"code"`
	Msg           string `json:"msg"`
	StatusCode    *int   `json:"StatusCode"`
	StatusMessage string `json:"StatusMessage"`
}

// feishuSign signs a request as Feishu documents: the base64 of
// HMAC-SHA256 keyed by "timestamp\nsecret" over an empty message, with the
// timestamp in seconds. Both go into the JSON body.
func feishuSign(secret string, now time.Time) (timestamp, sign string) {
	timestamp = strconv.FormatInt(now.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(timestamp+"\n"+secret))
	return timestamp, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Notify implements notify.Notifier.
func (n *feishu) Notify(ctx context.Context, alerts ...*types.Alert) (bool, error) {
	logger, data, err := groupData(ctx, &n.sender, n.tmpl, alerts)
	if err != nil {
		return false, err
	}

	var tmplErr error
	tmpl := notify.TmplText(n.tmpl, data, &tmplErr)
	title, text := strings.TrimSpace(tmpl(n.conf.Title)), tmpl(n.conf.Message)
	if tmplErr != nil {
		return false, fmt.Errorf("execute feishu template: %w", tmplErr)
	}

	msg := feishuMessage{MsgType: n.conf.MsgType}
	switch n.conf.MsgType {
	case feishuInteractive:
		color := "red"
		if data.Status == string(model.AlertResolved) {
			color = "green"
		}
		msg.Card = &feishuCard{
			Config: feishuCardConfig{WideScreenMode: true},
			Header: feishuCardHeader{Title: feishuCardText{Tag: "plain_text", Content: title}, Template: color},
			Elements: []feishuCardElement{{
				Tag:  "div",
				Text: feishuCardText{Tag: "lark_md", Content: truncate(logger, "text", text, feishuMaxTextBytes)},
			}},
		}
	default:
		if title != "" {
			text = title + "\n" + text
		}
		msg.Content = &feishuContent{Text: truncate(logger, "text", text, feishuMaxTextBytes)}
	}
	if n.conf.Secret != "" {
		msg.Timestamp, msg.Sign = feishuSign(string(n.conf.Secret), n.now())
	}
	body, err := marshalJSON(msg)
	if err != nil {
		return false, fmt.Errorf("encode feishu message: %w", err)
	}

	// Feishu answers malformed requests with a 400 and a code; the status
	// decides retrying there.
	resp, retry, err := n.sender.post(ctx, http.MethodPost, n.conf.URL.String(), "application/json", nil, body)
	if err != nil {
		return retry, err
	}
	var fr feishuResponse
	if err := json.Unmarshal(resp.body, &fr); err != nil {
		return false, notify.NewErrorWithReason(notify.DefaultReason, fmt.Errorf("unexpected feishu response: %s", detail(resp.body)))
	}
	code, codeMsg := fr.Code, fr.Msg
	if code == nil {
		code, codeMsg = fr.StatusCode, fr.StatusMessage
	}
	if code == nil {
		return false, notify.NewErrorWithReason(notify.DefaultReason, fmt.Errorf("unexpected feishu response: %s", detail(resp.body)))
	}
	return checkCode("feishu", *code, codeMsg, feishuCodes)
}
