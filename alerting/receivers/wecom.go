package receivers

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"

	amcommoncfg "github.com/prometheus/alertmanager/config/common"
	"github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/alertmanager/types"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
)

// weComMaxContentBytes is WeCom's limit on a markdown message's content.
const weComMaxContentBytes = 4096

// weComCodes are WeCom error codes worth retrying.
var weComCodes = map[int]codeRule{
	-1:    {retry: true, reason: notify.ServerErrorReason}, // system busy
	45009: {retry: true, reason: notify.RateLimitedReason}, // API frequency limit (20 messages a minute)
	45033: {retry: true, reason: notify.RateLimitedReason}, // API concurrency limit
	93000: {retry: false, reason: notify.AuthErrorReason},  // invalid webhook key
}

// WeComConfig configures a WeCom (企业微信) group robot.
type WeComConfig struct {
	amcommoncfg.NotifierConfig `yaml:",inline" json:",inline"`

	HTTPConfig *commoncfg.HTTPClientConfig `yaml:"http_config,omitempty" json:"http_config,omitempty"`
	// URL is the robot webhook,
	// https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...; the key is
	// the robot's only credential, so the URL is a secret.
	URL *amcommoncfg.SecretURL `yaml:"url,omitempty" json:"url,omitempty"`
	// Message is a template for the markdown content.
	Message string `yaml:"message,omitempty" json:"message,omitempty"`
	// Timeout bounds one request; 0 means the default, 5s.
	Timeout model.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// defaultWeComConfig is where WeCom's defaults live.
func defaultWeComConfig() WeComConfig {
	return WeComConfig{
		NotifierConfig: amcommoncfg.NotifierConfig{VSendResolved: true},
		Message:        defaultMarkdownMessage,
		Timeout:        defaultTimeout,
	}
}

// UnmarshalYAML implements yaml.Unmarshaler, applying defaults first.
func (c *WeComConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = defaultWeComConfig()
	type plain WeComConfig
	return redactUnmarshal(unmarshal((*plain)(c)), unmarshal, "url")
}

// UnmarshalJSON implements json.Unmarshaler, applying defaults first.
func (c *WeComConfig) UnmarshalJSON(b []byte) error {
	*c = defaultWeComConfig()
	type plain WeComConfig
	return json.Unmarshal(b, (*plain)(c))
}

// validate fills defaults and checks c; p is the path of c.
func (c *WeComConfig) validate(p string) error {
	if c == nil {
		return fmt.Errorf("%s: empty config", p)
	}
	c.Message = orDefault(c.Message, defaultWeComConfig().Message)
	if err := validateURL(path(p, "url"), c.URL); err != nil {
		return err
	}
	if c.URL.Query().Get("key") == "" {
		return fmt.Errorf("%s: missing key parameter", path(p, "url"))
	}
	if err := validateTemplate(path(p, "message"), c.Message); err != nil {
		return err
	}
	if err := validateHTTP(p, &c.HTTPConfig); err != nil {
		return err
	}
	return validateTimeout(p, &c.Timeout)
}

// weCom sends alerts to a WeCom group robot.
type weCom struct {
	conf   *WeComConfig
	tmpl   *template.Template
	sender sender
}

func newWeCom(c *WeComConfig, t *template.Template, l *slog.Logger) (*weCom, error) {
	s, err := newSender("wecom", c.HTTPConfig, c.Timeout, l)
	if err != nil {
		return nil, err
	}
	return &weCom{conf: c, tmpl: t, sender: s}, nil
}

type weComMessage struct {
	MsgType  string        `json:"msgtype"`
	Markdown weComMarkdown `json:"markdown"`
}

type weComMarkdown struct {
	Content string `json:"content"`
}

// Notify implements notify.Notifier.
func (n *weCom) Notify(ctx context.Context, alerts ...*types.Alert) (bool, error) {
	logger, data, err := groupData(ctx, &n.sender, n.tmpl, alerts)
	if err != nil {
		return false, err
	}

	var tmplErr error
	content := notify.TmplText(n.tmpl, data, &tmplErr)(n.conf.Message)
	if tmplErr != nil {
		return false, fmt.Errorf("execute wecom template: %w", tmplErr)
	}
	body, err := marshalJSON(weComMessage{
		MsgType:  "markdown",
		Markdown: weComMarkdown{Content: truncate(logger, "content", content, weComMaxContentBytes)},
	})
	if err != nil {
		return false, fmt.Errorf("encode wecom message: %w", err)
	}
	resp, retry, err := n.sender.post(ctx, http.MethodPost, n.conf.URL.String(), "application/json", nil, body)
	if err != nil {
		return retry, err
	}
	return checkErrcode("wecom", resp.body, weComCodes)
}
