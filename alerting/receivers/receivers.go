// Package receivers holds the notification receivers that Prometheus
// Alertmanager lacks: DingTalk and WeCom group robots, Feishu (Lark) custom
// bots, and SMS gateways reached through a configurable HTTP request.
//
// Each receiver is an Alertmanager notify.Notifier, so it plugs into
// Alertmanager's own notification pipeline (dedup, retry with back-off,
// metrics) unchanged. A notifier reports whether a failure is worth retrying:
// network errors, timeouts, HTTP 5xx and 429, and the platforms' own
// "too fast" or "busy" error codes are; HTTP 4xx and other error codes are
// not, so Alertmanager's RetryStage gives up on them at once.
//
// Secrets (webhook URLs with their tokens, signing secrets, SMS credentials)
// use prometheus/common's Secret and Alertmanager's SecretURL types, so
// marshalling a Config prints "<secret>" instead, and errors never quote them.
package receivers

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/common/promslog"
)

// The notifiers plug into Alertmanager's pipeline as they are.
var (
	_ notify.Notifier = (*dingTalk)(nil)
	_ notify.Notifier = (*weCom)(nil)
	_ notify.Notifier = (*feishu)(nil)
	_ notify.Notifier = (*sms)(nil)
)

// Config holds the receiver kinds Alertmanager lacks. In the alerting config
// file these fields sit inside a receiver next to Alertmanager's own
// *_configs; the core strips them out before handing the rest to
// Alertmanager's config loader, and unmarshals them into Config.
type Config struct {
	DingTalk []*DingTalkConfig `yaml:"dingtalk_configs,omitempty" json:"dingtalk_configs,omitempty"`
	WeCom    []*WeComConfig    `yaml:"wecom_configs,omitempty" json:"wecom_configs,omitempty"`
	Feishu   []*FeishuConfig   `yaml:"feishu_configs,omitempty" json:"feishu_configs,omitempty"`
	SMS      []*SMSConfig      `yaml:"sms_configs,omitempty" json:"sms_configs,omitempty"`
}

// Validate fills defaults and reports the first invalid field, prefixed by
// prefix (e.g. `receivers[2].dingtalk_configs[0].url`). An empty prefix
// yields paths starting at the list name (`dingtalk_configs[0].url`).
//
// Defaults are filled for zero-valued fields, except send_resolved: a
// bool cannot tell "unset" from "false", so its default (true) is applied
// when a config is unmarshalled from YAML or JSON, as Alertmanager does.
func (c *Config) Validate(prefix string) error {
	for i, dc := range c.DingTalk {
		if err := dc.validate(path(prefix, fmt.Sprintf("dingtalk_configs[%d]", i))); err != nil {
			return err
		}
	}
	for i, wc := range c.WeCom {
		if err := wc.validate(path(prefix, fmt.Sprintf("wecom_configs[%d]", i))); err != nil {
			return err
		}
	}
	for i, fc := range c.Feishu {
		if err := fc.validate(path(prefix, fmt.Sprintf("feishu_configs[%d]", i))); err != nil {
			return err
		}
	}
	for i, sc := range c.SMS {
		if err := sc.validate(path(prefix, fmt.Sprintf("sms_configs[%d]", i))); err != nil {
			return err
		}
	}
	return nil
}

// Integrations builds one notify.Integration per entry, named "dingtalk",
// "wecom", "feishu" and "sms" with their index in their list, for the
// receiver receiverName, as Alertmanager's BuildReceiverIntegrations does.
// Call Validate first: Integrations does not fill defaults. A nil logger
// discards logs. All entries are tried; the errors are joined.
func (c *Config) Integrations(receiverName string, tmpl *template.Template, logger *slog.Logger) ([]notify.Integration, error) {
	if logger == nil {
		logger = promslog.NewNopLogger()
	}
	var (
		errs         error
		integrations []notify.Integration
		add          = func(name string, i int, rs notify.ResolvedSender, f func(*slog.Logger) (notify.Notifier, error)) {
			n, err := f(logger.With("integration", name))
			if err != nil {
				errs = errors.Join(errs, fmt.Errorf("%s[%d]: %w", name, i, err))
				return
			}
			integrations = append(integrations, notify.NewIntegration(n, rs, name, i, receiverName))
		}
	)
	for i, dc := range c.DingTalk {
		add("dingtalk", i, dc, func(l *slog.Logger) (notify.Notifier, error) { return newDingTalk(dc, tmpl, l) })
	}
	for i, wc := range c.WeCom {
		add("wecom", i, wc, func(l *slog.Logger) (notify.Notifier, error) { return newWeCom(wc, tmpl, l) })
	}
	for i, fc := range c.Feishu {
		add("feishu", i, fc, func(l *slog.Logger) (notify.Notifier, error) { return newFeishu(fc, tmpl, l) })
	}
	for i, sc := range c.SMS {
		add("sms", i, sc, func(l *slog.Logger) (notify.Notifier, error) { return newSMS(sc, tmpl, l) })
	}
	return integrations, errs
}

// path joins a field path; an empty prefix leaves the name alone.
func path(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
