package alerting

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/prometheus/alertmanager/config"
	"github.com/prometheus/alertmanager/dispatch"
	yamlv2 "gopkg.in/yaml.v2"
	"gopkg.in/yaml.v3"

	"github.com/bureauhub/bureauhub/alerting/history"
	"github.com/bureauhub/bureauhub/alerting/receivers"
)

// TenantLabel is the label that carries an alert's tenant (bureau).
const TenantLabel = "bureau"

// Config configures the alerting component. The notification policy itself
// (routes, receivers, inhibit rules, ...) lives in ConfigFile, in
// Alertmanager's format with bureauhub's extensions (see Definition).
type Config struct {
	// ConfigFile is the Alertmanager-format configuration file.
	ConfigFile string `yaml:"config_file"`
	// DataDir keeps the silences and notification log snapshots, so that
	// both survive a restart.
	DataDir string `yaml:"data_dir"`
	// Retention is how long expired silences and notification log entries
	// are kept (Alertmanager's --data.retention).
	Retention time.Duration `yaml:"retention"`
	// MaintenanceInterval is how often silences and the notification log
	// are garbage collected and snapshotted to DataDir.
	MaintenanceInterval time.Duration `yaml:"maintenance_interval"`
	// AlertGCInterval is how often resolved alerts are dropped from memory.
	AlertGCInterval time.Duration `yaml:"alert_gc_interval"`
	// DispatchMaintenanceInterval is how often empty aggregation groups are
	// removed.
	DispatchMaintenanceInterval time.Duration `yaml:"dispatch_maintenance_interval"`
	// StatusInterval is how often alerts' silenced and inhibited status is
	// re-evaluated for the history.
	StatusInterval time.Duration `yaml:"status_interval"`
	// ExternalURL is where the hub is reachable; templates link to it.
	ExternalURL string `yaml:"external_url"`
	// History configures the ClickHouse alert history.
	History history.Config `yaml:"history"`
}

// SetDefaults fills unset fields with Alertmanager's defaults.
func (c *Config) SetDefaults() {
	if c.Retention == 0 {
		c.Retention = 120 * time.Hour
	}
	if c.MaintenanceInterval == 0 {
		c.MaintenanceInterval = 15 * time.Minute
	}
	if c.AlertGCInterval == 0 {
		c.AlertGCInterval = 30 * time.Minute
	}
	if c.DispatchMaintenanceInterval == 0 {
		c.DispatchMaintenanceInterval = 30 * time.Second
	}
	if c.StatusInterval == 0 {
		c.StatusInterval = 15 * time.Second
	}
	c.History.SetDefaults()
}

// Validate checks the fields and that ConfigFile loads.
func (c *Config) Validate() error {
	if c.ConfigFile == "" {
		return errors.New("alerting.config_file: required")
	}
	if c.DataDir == "" {
		return errors.New("alerting.data_dir: required")
	}
	for name, d := range map[string]time.Duration{
		"retention": c.Retention, "maintenance_interval": c.MaintenanceInterval,
		"alert_gc_interval": c.AlertGCInterval, "dispatch_maintenance_interval": c.DispatchMaintenanceInterval,
		"status_interval": c.StatusInterval,
	} {
		if d <= 0 {
			return fmt.Errorf("alerting.%s: must be positive", name)
		}
	}
	if c.ExternalURL != "" {
		if _, err := url.Parse(c.ExternalURL); err != nil {
			return fmt.Errorf("alerting.external_url: %w", err)
		}
	}
	if err := c.History.Validate(); err != nil {
		return fmt.Errorf("alerting.%w", err)
	}
	if _, err := LoadDefinitionFile(c.ConfigFile); err != nil {
		return fmt.Errorf("alerting.config_file: %w", err)
	}
	return nil
}

// Extension keys bureauhub adds to Alertmanager's configuration format.
const (
	// ResolvedImmediatelyKey on a route sends resolved notifications as soon
	// as an alert resolves, not at the group's next group_interval.
	ResolvedImmediatelyKey = "send_resolved_immediately"
)

// receiverExtensionKeys are the receiver kinds of alerting/receivers.
var receiverExtensionKeys = []string{"dingtalk_configs", "wecom_configs", "feishu_configs", "sms_configs"}

// Definition is a parsed notification policy: Alertmanager's configuration
// plus bureauhub's extensions, which are stripped from the YAML before
// Alertmanager's config.Load sees it.
type Definition struct {
	// AM is Alertmanager's configuration, with `bureau` added to every
	// inhibit rule's equal list.
	AM *config.Config
	// Receivers holds, per receiver name, the bureauhub receiver kinds
	// (DingTalk, WeCom, Feishu, SMS) configured in that receiver,
	// validated and with defaults filled.
	Receivers map[string]*receivers.Config
	// resolvedImmediately holds the child-index paths of the routes with
	// send_resolved_immediately set, true or false; the root is the
	// empty path.
	resolvedImmediately map[string]bool
}

// LoadDefinitionFile reads and parses a notification policy file.
func LoadDefinitionFile(path string) (*Definition, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseDefinition(b)
}

// ParseDefinition parses a notification policy. Errors name the field: the
// extensions' own, or Alertmanager's (which names unknown fields and the
// offending values).
func ParseDefinition(b []byte) (*Definition, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	d := &Definition{Receivers: map[string]*receivers.Config{}, resolvedImmediately: map[string]bool{}}
	var rest []byte
	if len(doc.Content) == 1 && doc.Content[0].Kind == yaml.MappingNode {
		root := doc.Content[0]
		if r := mapValue(root, "route"); r != nil {
			if err := d.stripRoute(r, "route", ""); err != nil {
				return nil, err
			}
		}
		if rs := mapValue(root, "receivers"); rs != nil && rs.Kind == yaml.SequenceNode {
			for i, r := range rs.Content {
				if err := d.stripReceiver(r, i); err != nil {
					return nil, err
				}
			}
		}
		var buf bytes.Buffer
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(&doc); err != nil {
			return nil, fmt.Errorf("re-encode configuration: %w", err)
		}
		rest = buf.Bytes()
	} else {
		rest = b // let Alertmanager report what is wrong
	}
	am, err := config.Load(string(rest))
	if err != nil {
		return nil, err
	}
	for i := range am.InhibitRules {
		// An inhibit rule never crosses tenants: otherwise an alert posted
		// by one bureau could mute another bureau's alerts.
		if !slices.Contains(am.InhibitRules[i].Equal, TenantLabel) {
			am.InhibitRules[i].Equal = append(am.InhibitRules[i].Equal, TenantLabel)
		}
	}
	d.AM = am
	return d, nil
}

// stripRoute removes send_resolved_immediately from a route and its
// children, recording it by path.
func (d *Definition) stripRoute(n *yaml.Node, field, path string) error {
	if n.Kind != yaml.MappingNode {
		return nil // Alertmanager reports it
	}
	if v := removeKey(n, ResolvedImmediatelyKey); v != nil {
		var b bool
		if err := v.Decode(&b); err != nil {
			return fmt.Errorf("%s.%s: line %d: must be true or false", field, ResolvedImmediatelyKey, v.Line)
		}
		d.resolvedImmediately[path] = b
	}
	if rs := mapValue(n, "routes"); rs != nil && rs.Kind == yaml.SequenceNode {
		for i, c := range rs.Content {
			if err := d.stripRoute(c, fmt.Sprintf("%s.routes[%d]", field, i), fmt.Sprintf("%s/%d", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// stripReceiver moves the bureauhub receiver kinds out of receiver i.
func (d *Definition) stripReceiver(n *yaml.Node, i int) error {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	ext := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, k := range receiverExtensionKeys {
		if v := removeKey(n, k); v != nil {
			if v.Kind != yaml.SequenceNode {
				return fmt.Errorf("receivers[%d].%s: line %d: must be a list", i, k, v.Line)
			}
			ext.Content = append(ext.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, v)
		}
	}
	if len(ext.Content) == 0 {
		return nil
	}
	name := mapValue(n, "name")
	if name == nil || name.Value == "" {
		return fmt.Errorf("receivers[%d].name: missing name in receiver", i)
	}
	// Decode as Alertmanager decodes its own receivers: yaml.v2, strictly,
	// so unknown fields are errors and the secret types apply.
	b, err := yaml.Marshal(ext)
	if err != nil {
		return fmt.Errorf("receivers[%d]: %w", i, err)
	}
	var rc receivers.Config
	if err := yamlv2.UnmarshalStrict(b, &rc); err != nil {
		return fmt.Errorf("receivers[%d] (%s): %w", i, name.Value, err)
	}
	if err := rc.Validate(fmt.Sprintf("receivers[%d]", i)); err != nil {
		return err
	}
	d.Receivers[name.Value] = &rc
	return nil
}

// ResolvedImmediately returns the IDs (dispatch.Route.ID) of the routes of
// tree, built from d.AM.Route, on which resolved notifications are sent at
// once. The flag is inherited by child routes unless they set it.
func (d *Definition) ResolvedImmediately(tree *dispatch.Route) map[string]bool {
	out := map[string]bool{}
	var walk func(r *dispatch.Route, path string, inherited bool)
	walk = func(r *dispatch.Route, path string, inherited bool) {
		on := inherited
		if v, ok := d.resolvedImmediately[path]; ok {
			on = v
		}
		if on {
			out[r.ID()] = true
		}
		for i, c := range r.Routes {
			walk(c, fmt.Sprintf("%s/%d", path, i), on)
		}
	}
	walk(tree, "", false)
	return out
}

// String returns the configuration with secrets masked, as Alertmanager's
// status API shows it, the bureauhub receiver kinds included.
func (d *Definition) String() string {
	s := d.AM.String()
	if len(d.Receivers) == 0 {
		return s
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(s), &doc); err != nil || len(doc.Content) != 1 {
		return s
	}
	rs := mapValue(doc.Content[0], "receivers")
	if rs == nil {
		return s
	}
	for _, r := range rs.Content {
		name := mapValue(r, "name")
		if name == nil || d.Receivers[name.Value] == nil {
			continue
		}
		rc := d.Receivers[name.Value]
		b, err := yamlv2.Marshal(rc) // the secret types print "<secret>"
		if err != nil {
			return s
		}
		var ext yaml.Node
		if err := yaml.Unmarshal(b, &ext); err != nil || len(ext.Content) != 1 {
			return s
		}
		r.Content = append(r.Content, ext.Content[0].Content...)
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return s
	}
	return string(out)
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func removeKey(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			v := m.Content[i+1]
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return v
		}
	}
	return nil
}
