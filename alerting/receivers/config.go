package receivers

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	tmpltext "text/template"
	"time"

	amcommoncfg "github.com/prometheus/alertmanager/config/common"
	"github.com/prometheus/alertmanager/template"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
)

// defaultTimeout bounds one delivery attempt. It is well under
// notify.MinTimeout, so Alertmanager's RetryStage has room for a retry
// inside one flush even when an endpoint hangs.
const defaultTimeout = model.Duration(5 * time.Second)

// Default templates, shared by the kinds. They use only the named templates
// that Alertmanager's template.FromGlobs always loads, so they work with any
// *template.Template Alertmanager builds.
const (
	defaultTitle = `{{ template "__subject" . }}`

	defaultAlertList = `{{ if gt (len .Alerts.Firing) 0 }}**Firing**
{{ template "__text_alert_list_markdown" .Alerts.Firing }}{{ end }}{{ if gt (len .Alerts.Resolved) 0 }}**Resolved**
{{ template "__text_alert_list_markdown" .Alerts.Resolved }}{{ end }}`

	// defaultMarkdownMessage heads the list with the subject, because the
	// robots show only the message body in the chat.
	defaultMarkdownMessage = `### {{ template "__subject" . }}
` + defaultAlertList

	// defaultSMSMessage is short: a text message is billed per 70 characters.
	defaultSMSMessage = `{{ template "__subject" . }}{{ with .CommonAnnotations.summary }} {{ . }}{{ end }}`
)

// validateURL checks a required webhook URL. The "<secret>" placeholder of a
// re-loaded marshalled config unmarshals to an empty URL and is rejected.
func validateURL(p string, u *amcommoncfg.SecretURL) error {
	if u == nil || u.URL == nil || u.Host == "" {
		return fmt.Errorf("%s: missing", p)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%s: scheme must be http or https", p)
	}
	return nil
}

// validateTemplate parses a template string so syntax errors show at load
// time rather than at the first alert. Names of templates it calls are
// resolved only when it runs.
func validateTemplate(p, s string) error {
	if _, err := tmpltext.New("").Option("missingkey=zero").Funcs(tmpltext.FuncMap(template.DefaultFuncs)).Parse(s); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

// validateHTTP fills the default HTTP client config and checks it.
func validateHTTP(p string, hc **commoncfg.HTTPClientConfig) error {
	if *hc == nil {
		d := commoncfg.DefaultHTTPClientConfig
		*hc = &d
	}
	if err := (*hc).Validate(); err != nil {
		return fmt.Errorf("%s: %w", path(p, "http_config"), err)
	}
	return nil
}

// validateTimeout fills the default timeout and rejects negative ones.
func validateTimeout(p string, t *model.Duration) error {
	if *t < 0 {
		return fmt.Errorf("%s: must not be negative", path(p, "timeout"))
	}
	if *t == 0 {
		*t = defaultTimeout
	}
	return nil
}

// orDefault returns s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// redactUnmarshal removes the values of the secret keys from an unmarshal
// error: url.Parse errors, for one, quote the whole URL with its token.
func redactUnmarshal(err error, unmarshal func(any) error, keys ...string) error {
	if err == nil {
		return nil
	}
	var raw map[string]any
	if unmarshal(&raw) != nil {
		return errors.New("invalid config (details withheld as they may contain secrets)")
	}
	msg := err.Error()
	for _, k := range keys {
		v, ok := raw[k].(string)
		if !ok || v == "" {
			continue
		}
		msg = strings.ReplaceAll(msg, v, amcommoncfg.SecretToken)
		if q := strconv.Quote(v); len(q) > 2 {
			msg = strings.ReplaceAll(msg, q[1:len(q)-1], amcommoncfg.SecretToken)
		}
	}
	return errors.New(msg)
}
