package receivers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"

	amcommoncfg "github.com/prometheus/alertmanager/config/common"
	"github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/alertmanager/types"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
)

// defaultSMSMaxRunes keeps a message to about four or five concatenated
// segments, which gateways bill and deliver reliably.
const defaultSMSMaxRunes = 300

// defaultSMSBody suits gateways that take a JSON list of numbers and a text.
const defaultSMSBody = `{"to":{{ toJson .To }},"message":{{ toJson .Message }}}`

// phoneRE accepts international and national numbers with optional spacing.
var phoneRE = regexp.MustCompile(`^\+?[0-9][0-9 \-]{2,31}$`)

// SMSConfig configures an SMS gateway reached by one HTTP request per
// notification, built from templates. Authentication goes in http_config:
// basic_auth, or authorization with type Bearer; both hold their
// credentials as secrets (or read them from files).
type SMSConfig struct {
	amcommoncfg.NotifierConfig `yaml:",inline" json:",inline"`

	HTTPConfig *commoncfg.HTTPClientConfig `yaml:"http_config,omitempty" json:"http_config,omitempty"`
	// URL is the gateway endpoint. It may be a template over SMSData (for
	// gateways taking the text in the query; use urlquery). It may hold an
	// API key, so it is a secret.
	URL amcommoncfg.SecretTemplateURL `yaml:"url,omitempty" json:"url,omitempty"`
	// Method is POST (the default), PUT or GET. GET sends no body.
	Method string `yaml:"method,omitempty" json:"method,omitempty"`
	// Headers are added to the request. Their values are secrets, since
	// gateways often take API keys in headers. Content-Type is content_type.
	Headers map[string]commoncfg.Secret `yaml:"headers,omitempty" json:"headers,omitempty"`
	// ContentType is the body's media type, application/json by default.
	ContentType string `yaml:"content_type,omitempty" json:"content_type,omitempty"`
	// To are the recipients' phone numbers, available to templates as .To.
	To []string `yaml:"to,omitempty" json:"to,omitempty"`
	// Message is a template for the text, available to templates as .Message.
	Message string `yaml:"message,omitempty" json:"message,omitempty"`
	// MaxMessageRunes truncates the message; 0 means the default, 300.
	MaxMessageRunes int `yaml:"max_message_runes,omitempty" json:"max_message_runes,omitempty"`
	// Body is a template over SMSData for the request body; by default
	// {"to":[...],"message":"..."}.
	Body string `yaml:"body,omitempty" json:"body,omitempty"`
	// SuccessJSONField is a dotted path (numbers index arrays) into a JSON
	// response whose value must match SuccessRegex for the send to count.
	SuccessJSONField string `yaml:"success_json_field,omitempty" json:"success_json_field,omitempty"`
	// SuccessRegex must match the SuccessJSONField value or, without a
	// field, the whole response body; unanchored. Empty means any 2xx is
	// success.
	SuccessRegex string `yaml:"success_regex,omitempty" json:"success_regex,omitempty"`
	// Timeout bounds one request; 0 means the default, 5s.
	Timeout model.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// SMSData is what the SMS url and body templates are executed with:
// Alertmanager's template data, so its named templates such as
// "__subject" work, plus the recipients and the rendered message.
type SMSData struct {
	*template.Data
	// To are the recipients' phone numbers from the config.
	To []string
	// Message is the config's message, rendered and truncated.
	Message string
}

// defaultSMSConfig is where the SMS defaults live. Body is defaulted in
// validate, since GET takes none.
func defaultSMSConfig() SMSConfig {
	return SMSConfig{
		NotifierConfig:  amcommoncfg.NotifierConfig{VSendResolved: true},
		Method:          http.MethodPost,
		ContentType:     "application/json",
		Message:         defaultSMSMessage,
		MaxMessageRunes: defaultSMSMaxRunes,
		Timeout:         defaultTimeout,
	}
}

// UnmarshalYAML implements yaml.Unmarshaler, applying defaults first.
func (c *SMSConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = defaultSMSConfig()
	type plain SMSConfig
	return redactUnmarshal(unmarshal((*plain)(c)), unmarshal, "url")
}

// UnmarshalJSON implements json.Unmarshaler, applying defaults first.
func (c *SMSConfig) UnmarshalJSON(b []byte) error {
	*c = defaultSMSConfig()
	type plain SMSConfig
	return json.Unmarshal(b, (*plain)(c))
}

// validate fills defaults and checks c; p is the path of c.
func (c *SMSConfig) validate(p string) error {
	if c == nil {
		return fmt.Errorf("%s: empty config", p)
	}
	d := defaultSMSConfig()
	c.Method = strings.ToUpper(orDefault(c.Method, d.Method))
	c.ContentType = orDefault(c.ContentType, d.ContentType)
	c.Message = orDefault(c.Message, d.Message)
	if c.MaxMessageRunes == 0 {
		c.MaxMessageRunes = d.MaxMessageRunes
	}
	if c.Body == "" && c.Method != http.MethodGet {
		c.Body = defaultSMSBody
	}

	if err := validateSMSURL(path(p, "url"), string(c.URL)); err != nil {
		return err
	}
	switch c.Method {
	case http.MethodPost, http.MethodPut:
	case http.MethodGet:
		if c.Body != "" {
			return fmt.Errorf("%s: must be empty with method GET", path(p, "body"))
		}
	default:
		return fmt.Errorf("%s: must be POST, PUT or GET, got %q", path(p, "method"), c.Method)
	}
	for name := range c.Headers {
		switch textproto.CanonicalMIMEHeaderKey(name) {
		case "":
			return fmt.Errorf("%s: empty header name", path(p, "headers"))
		case "Content-Type":
			return fmt.Errorf("%s: set content_type instead", path(p, "headers.Content-Type"))
		}
	}
	if len(c.To) == 0 {
		return fmt.Errorf("%s: missing", path(p, "to"))
	}
	for i, to := range c.To {
		if !phoneRE.MatchString(to) {
			return fmt.Errorf("%s: not a phone number: %q", path(p, fmt.Sprintf("to[%d]", i)), to)
		}
	}
	if c.MaxMessageRunes < 0 {
		return fmt.Errorf("%s: must not be negative", path(p, "max_message_runes"))
	}
	if err := validateTemplate(path(p, "message"), c.Message); err != nil {
		return err
	}
	if err := validateTemplate(path(p, "body"), c.Body); err != nil {
		return err
	}
	if _, err := regexp.Compile(c.SuccessRegex); err != nil {
		return fmt.Errorf("%s: %w", path(p, "success_regex"), err)
	}
	if c.SuccessJSONField != "" && c.SuccessRegex == "" {
		return fmt.Errorf("%s: required with success_json_field", path(p, "success_regex"))
	}
	if err := validateHTTP(p, &c.HTTPConfig); err != nil {
		return err
	}
	return validateTimeout(p, &c.Timeout)
}

// validateSMSURL checks a possibly templated URL without quoting it.
func validateSMSURL(p, u string) error {
	if u == "" || u == amcommoncfg.SecretToken {
		return fmt.Errorf("%s: missing", p)
	}
	templated, err := amcommoncfg.ContainsTemplating(u)
	if err != nil {
		return fmt.Errorf("%s: invalid template", p)
	}
	if !templated {
		if _, err := amcommoncfg.ParseURL(u); err != nil {
			return fmt.Errorf("%s: must be an http or https URL with a host", p)
		}
	}
	return nil
}

// sms sends alerts as text messages through an HTTP gateway.
type sms struct {
	conf      *SMSConfig
	tmpl      *template.Template
	sender    sender
	successRE *regexp.Regexp
}

func newSMS(c *SMSConfig, t *template.Template, l *slog.Logger) (*sms, error) {
	re, err := regexp.Compile(c.SuccessRegex)
	if err != nil {
		return nil, fmt.Errorf("compile success_regex: %w", err)
	}
	s, err := newSender("sms", c.HTTPConfig, c.Timeout, l)
	if err != nil {
		return nil, err
	}
	return &sms{conf: c, tmpl: t, sender: s, successRE: re}, nil
}

// Notify implements notify.Notifier.
func (n *sms) Notify(ctx context.Context, alerts ...*types.Alert) (bool, error) {
	logger, data, err := groupData(ctx, &n.sender, n.tmpl, alerts)
	if err != nil {
		return false, err
	}

	msg, err := n.tmpl.ExecuteTextString(n.conf.Message, data)
	if err != nil {
		return false, fmt.Errorf("execute sms message template: %w", err)
	}
	msg, cut := notify.TruncateInRunes(msg, n.conf.MaxMessageRunes)
	if cut {
		logger.Warn("truncated message", "field", "message", "max_runes", n.conf.MaxMessageRunes)
	}
	sd := &SMSData{Data: data, To: n.conf.To, Message: msg}

	u, err := n.tmpl.ExecuteTextString(string(n.conf.URL), sd)
	if err != nil {
		// Template errors quote the failing action, which may hold a key.
		return false, errors.New("execute sms url template failed")
	}
	var body []byte
	if n.conf.Body != "" {
		b, err := n.tmpl.ExecuteTextString(n.conf.Body, sd)
		if err != nil {
			return false, fmt.Errorf("execute sms body template: %w", err)
		}
		body = []byte(b)
	}
	header := make(http.Header, len(n.conf.Headers))
	for k, v := range n.conf.Headers {
		header.Set(k, string(v))
	}

	resp, retry, err := n.sender.post(ctx, n.conf.Method, u, n.conf.ContentType, header, body)
	if err != nil {
		return retry, err
	}
	if err := n.checkBody(resp.body); err != nil {
		return false, notify.NewErrorWithReason(notify.ClientErrorReason, err)
	}
	return false, nil
}

// checkBody applies success_json_field and success_regex to a 2xx answer.
func (n *sms) checkBody(body []byte) error {
	if n.conf.SuccessRegex == "" {
		return nil
	}
	value := string(body)
	if n.conf.SuccessJSONField != "" {
		v, err := jsonField(body, n.conf.SuccessJSONField)
		if err != nil {
			return fmt.Errorf("sms gateway response: %w: %s", err, detail(body))
		}
		value = v
	}
	if !n.successRE.MatchString(value) {
		return fmt.Errorf("sms gateway rejected the message: %s", detail(body))
	}
	return nil
}

// jsonField returns the value at a dotted path in a JSON document, as
// text: strings bare, numbers as written, anything else as JSON.
func jsonField(body []byte, field string) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("not JSON")
	}
	for _, part := range strings.Split(field, ".") {
		switch node := v.(type) {
		case map[string]any:
			next, ok := node[part]
			if !ok {
				return "", fmt.Errorf("no field %q", field)
			}
			v = next
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(node) {
				return "", fmt.Errorf("no field %q", field)
			}
			v = node[i]
		default:
			return "", fmt.Errorf("no field %q", field)
		}
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return "", err
		}
		return string(b), nil
	}
}
