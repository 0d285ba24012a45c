package scrape

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/model/relabel"
	"gopkg.in/yaml.v2"

	// Service discovery mechanisms the agent supports besides
	// static_configs: they register their *_sd_configs keys with
	// discovery's registry, which the scrape config's parser consults.
	_ "github.com/prometheus/prometheus/discovery/file"
	_ "github.com/prometheus/prometheus/discovery/http"
)

// Config is the part of a Prometheus configuration the agent takes:
// global scrape defaults and scrape_configs, in Prometheus's syntax and
// with its defaults. The agent has its own scraper rather than
// Prometheus's scrape package, whose config package links the cloud SDKs
// of remote_write authentication and most of the agent's mapped code
// (docs/benchmarks.md, "Reading the agent results"); the YAML a Prometheus
// user writes is the same.
type Config struct {
	Global        GlobalConfig    `yaml:"global"`
	ScrapeConfigs []*ScrapeConfig `yaml:"scrape_configs"`
	// Other top-level sections: the agent's own, which it reads and
	// checks itself (agent.ParseConfig hands over its whole file).
	Other map[string]any `yaml:",inline"`
}

// GlobalConfig holds the defaults of every scrape config.
type GlobalConfig struct {
	// ScrapeInterval defaults to 1m, ScrapeTimeout to 10s, as in
	// Prometheus.
	ScrapeInterval model.Duration `yaml:"scrape_interval,omitempty"`
	ScrapeTimeout  model.Duration `yaml:"scrape_timeout,omitempty"`
}

// ScrapeConfig is one scrape job, a subset of Prometheus's scrape_config
// with the same field names and defaults. Fields the agent does not
// implement are refused by the parser rather than ignored.
type ScrapeConfig struct {
	JobName         string         `yaml:"job_name"`
	HonorLabels     bool           `yaml:"honor_labels,omitempty"`
	HonorTimestamps bool           `yaml:"honor_timestamps"`
	Params          url.Values     `yaml:"params,omitempty"`
	ScrapeInterval  model.Duration `yaml:"scrape_interval,omitempty"`
	ScrapeTimeout   model.Duration `yaml:"scrape_timeout,omitempty"`
	MetricsPath     string         `yaml:"metrics_path,omitempty"`
	Scheme          string         `yaml:"scheme,omitempty"`
	// EnableCompression asks targets for gzip (default true).
	EnableCompression bool `yaml:"enable_compression"`
	// SampleLimit fails a scrape with more samples after metric
	// relabeling (0: no limit), as Prometheus does.
	SampleLimit uint `yaml:"sample_limit,omitempty"`
	// LabelLimit, LabelNameLengthLimit and LabelValueLengthLimit fail a
	// scrape with a series beyond them (0: no limit).
	LabelLimit            uint `yaml:"label_limit,omitempty"`
	LabelNameLengthLimit  uint `yaml:"label_name_length_limit,omitempty"`
	LabelValueLengthLimit uint `yaml:"label_value_length_limit,omitempty"`

	// ServiceDiscoveryConfigs holds static_configs, file_sd_configs and
	// http_sd_configs, parsed by discovery's registry.
	ServiceDiscoveryConfigs discovery.Configs `yaml:"-"`
	// HTTPClientConfig: basic_auth, authorization, oauth2, tls_config,
	// proxy_url, follow_redirects, enable_http2 and the rest of
	// Prometheus's HTTP client settings.
	HTTPClientConfig     commoncfg.HTTPClientConfig `yaml:",inline"`
	RelabelConfigs       []*relabel.Config          `yaml:"relabel_configs,omitempty"`
	MetricRelabelConfigs []*relabel.Config          `yaml:"metric_relabel_configs,omitempty"`
}

// UnmarshalYAML applies Prometheus's defaults, then reads the fields and
// the service discovery sections.
func (c *ScrapeConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = ScrapeConfig{
		HonorTimestamps:   true,
		EnableCompression: true,
		MetricsPath:       "/metrics",
		Scheme:            "http",
		HTTPClientConfig:  commoncfg.DefaultHTTPClientConfig,
	}
	return discovery.UnmarshalYAMLWithInlineConfigs(c, unmarshal)
}

// unknownField matches yaml.v2's strict-mode error, whose type name for a
// scrape config is a generated struct of every field.
var unknownField = regexp.MustCompile(`field (\S+) not found in type .*`)

// ParseConfig parses YAML holding global and scrape_configs, applies the
// defaults and validates every job; relative file paths (file_sd_configs,
// TLS and credential files) are resolved against dir. Unknown fields are
// errors.
func ParseConfig(text []byte, dir string) (*Config, error) {
	var cfg Config
	if err := yaml.UnmarshalStrict(text, &cfg); err != nil {
		// Line numbers are the agent's file's (agent.ParseConfig).
		return nil, fmt.Errorf("global and scrape_configs: %s", unknownField.ReplaceAllString(err.Error(),
			"field $1 is not supported by the agent (it takes static_configs, file_sd_configs, http_sd_configs and Prometheus's scrape and HTTP client fields)"))
	}
	if err := cfg.validate(dir); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func (c *Config) validate(dir string) error {
	g := &c.Global
	if g.ScrapeInterval == 0 {
		g.ScrapeInterval = model.Duration(time.Minute)
	}
	if g.ScrapeTimeout == 0 { // Prometheus's default, 10s, if the interval allows
		g.ScrapeTimeout = min(model.Duration(10*time.Second), g.ScrapeInterval)
	}
	if g.ScrapeTimeout > g.ScrapeInterval {
		return fmt.Errorf("global.scrape_timeout: %s is greater than global.scrape_interval %s", g.ScrapeTimeout, g.ScrapeInterval)
	}
	jobs := make(map[string]int, len(c.ScrapeConfigs))
	for i, sc := range c.ScrapeConfigs {
		if sc == nil {
			return fmt.Errorf("scrape_configs[%d]: empty scrape config", i)
		}
		if prev, dup := jobs[sc.JobName]; dup {
			return fmt.Errorf("scrape_configs[%d].job_name: %q is also the name of scrape_configs[%d]", i, sc.JobName, prev)
		}
		jobs[sc.JobName] = i
		if err := sc.validate(g, dir); err != nil {
			return fmt.Errorf("scrape_configs[%d] (job %q).%w", i, sc.JobName, err)
		}
	}
	return nil
}

// validate fills the job's defaults from g and checks it; errors start
// with the field's name.
func (c *ScrapeConfig) validate(g *GlobalConfig, dir string) error {
	if c.JobName == "" {
		return errors.New("job_name: missing")
	}
	if c.ScrapeInterval == 0 {
		c.ScrapeInterval = g.ScrapeInterval
	}
	if c.ScrapeTimeout == 0 {
		c.ScrapeTimeout = min(g.ScrapeTimeout, c.ScrapeInterval)
	}
	if c.ScrapeTimeout > c.ScrapeInterval {
		return fmt.Errorf("scrape_timeout: %s is greater than scrape_interval %s", c.ScrapeTimeout, c.ScrapeInterval)
	}
	if c.Scheme != "http" && c.Scheme != "https" {
		return fmt.Errorf("scheme: %q is neither http nor https", c.Scheme)
	}
	if c.MetricsPath == "" || c.MetricsPath[0] != '/' {
		return fmt.Errorf("metrics_path: %q does not start with /", c.MetricsPath)
	}
	c.HTTPClientConfig.SetDirectory(dir)
	if err := c.HTTPClientConfig.Validate(); err != nil {
		return fmt.Errorf("http client settings: %w", err)
	}
	c.ServiceDiscoveryConfigs.SetDirectory(dir)
	for _, f := range []struct {
		name string
		rcs  []*relabel.Config
	}{{"relabel_configs", c.RelabelConfigs}, {"metric_relabel_configs", c.MetricRelabelConfigs}} {
		name := f.name
		for i, rc := range f.rcs {
			if rc == nil {
				return fmt.Errorf("%s[%d]: empty relabeling rule", name, i)
			}
			if err := rc.Validate(model.UTF8Validation); err != nil {
				return fmt.Errorf("%s[%d]: %w", name, i, err)
			}
		}
	}
	return nil
}
