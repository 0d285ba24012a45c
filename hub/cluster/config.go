package cluster

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// Config is a hub's cluster membership. Name, BindAddress,
// AdvertiseAddress and Join expand ${VAR} from the environment, so one
// file serves every pod of a StatefulSet (e.g. bind_address:
// "${POD_IP}:7946", name: "${POD_NAME}").
type Config struct {
	// Name is this hub's unique name in the cluster; default the host name
	// plus the gossip port.
	Name string `yaml:"name"`
	// BindAddress is the gossip address (TCP and UDP), host:port.
	BindAddress string `yaml:"bind_address"`
	// AdvertiseAddress is the address peers reach this hub's gossip on;
	// default the bind address (which must then not be 0.0.0.0).
	AdvertiseAddress string `yaml:"advertise_address"`
	// Join lists peers to join: host:port seeds, or a DNS name (every A
	// record is tried, e.g. a Kubernetes headless service).
	Join []string `yaml:"join"`
	// SecretKeyFile holds the gossip encryption key (16, 24 or 32 bytes,
	// raw or base64). Required unless Insecure is set.
	SecretKeyFile string `yaml:"secret_key_file"`
	// Insecure allows unencrypted gossip; only for demos on loopback.
	Insecure bool `yaml:"insecure"`
	// ConfigVersion must be equal on every hub of a cluster: hubs whose
	// shared configuration (tenants, rule files, ownership rules) differs
	// must not split work between them. A peer with another version is
	// refused and the refusal logged.
	ConfigVersion string `yaml:"config_version"`
	// ProbeInterval, ProbeTimeout and SuspicionMult tune failure
	// detection (memberlist's). A failed hub is declared dead about one
	// probe plus SuspicionMult × max(1, log10 N) × ProbeInterval after it
	// stops answering: with the defaults (500ms, 250ms, 3) about 2-2.5 s
	// on a LAN, so a rule group fails over within its interval plus about
	// 3.5 s (with Settle).
	ProbeInterval time.Duration `yaml:"probe_interval"`
	ProbeTimeout  time.Duration `yaml:"probe_timeout"`
	SuspicionMult int           `yaml:"suspicion_mult"`
	// GossipInterval is how often membership changes and gossiped state
	// (silences, notification log) are spread.
	GossipInterval time.Duration `yaml:"gossip_interval"`
	// Settle is how long a hub must have seen itself as an item's owner
	// before it acts on it. A hub losing an item stops at once, so two
	// hubs act on one item only if their views of the ring differ for
	// longer than Settle. Keep it below the shortest evaluation interval.
	Settle time.Duration `yaml:"settle"`
}

// SetDefaults expands environment variables and fills unset fields.
func (c *Config) SetDefaults() {
	c.Name = os.ExpandEnv(c.Name)
	c.BindAddress = os.ExpandEnv(c.BindAddress)
	c.AdvertiseAddress = os.ExpandEnv(c.AdvertiseAddress)
	for i := range c.Join {
		c.Join[i] = os.ExpandEnv(c.Join[i])
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = 500 * time.Millisecond
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = 250 * time.Millisecond
	}
	if c.SuspicionMult == 0 {
		c.SuspicionMult = 3
	}
	if c.GossipInterval == 0 {
		c.GossipInterval = 200 * time.Millisecond
	}
	if c.Settle == 0 {
		c.Settle = time.Second
	}
	if c.ConfigVersion == "" {
		c.ConfigVersion = "1"
	}
	if c.Name == "" {
		h, _ := os.Hostname()
		_, port, _ := net.SplitHostPort(c.BindAddress)
		c.Name = h + ":" + port
	}
}

// Validate names the first invalid field under prefix.
func (c *Config) Validate(prefix string) error {
	host, port, err := net.SplitHostPort(c.BindAddress)
	if err != nil {
		return fmt.Errorf("%s.bind_address: %w", prefix, err)
	}
	if port == "" || port == "0" {
		return fmt.Errorf("%s.bind_address: a fixed port is required (peers join it)", prefix)
	}
	adv := c.AdvertiseAddress
	if adv == "" && (host == "" || host == "0.0.0.0" || host == "::") {
		return fmt.Errorf("%s.advertise_address: required when bind_address listens on all interfaces", prefix)
	}
	if adv != "" {
		if _, _, err := net.SplitHostPort(adv); err != nil {
			return fmt.Errorf("%s.advertise_address: %w", prefix, err)
		}
	}
	if !c.Insecure && c.SecretKeyFile == "" {
		return fmt.Errorf("%s.secret_key_file: a gossip encryption key is required (or insecure: true, for demos only)", prefix)
	}
	if c.SecretKeyFile != "" {
		if _, err := LoadKey(c.SecretKeyFile); err != nil {
			return fmt.Errorf("%s.secret_key_file: %w", prefix, err)
		}
	}
	switch {
	case c.ProbeInterval <= 0:
		return fmt.Errorf("%s.probe_interval: must be positive", prefix)
	case c.ProbeTimeout <= 0 || c.ProbeTimeout > c.ProbeInterval:
		return fmt.Errorf("%s.probe_timeout: must be positive and at most probe_interval", prefix)
	case c.SuspicionMult < 1:
		return fmt.Errorf("%s.suspicion_mult: must be at least 1", prefix)
	case c.GossipInterval <= 0:
		return fmt.Errorf("%s.gossip_interval: must be positive", prefix)
	case c.Settle < 0:
		return fmt.Errorf("%s.settle: must not be negative", prefix)
	case strings.ContainsAny(c.ConfigVersion, " \t\n"):
		return fmt.Errorf("%s.config_version: must not contain spaces", prefix)
	}
	return nil
}

// LoadKey reads a gossip key: 16, 24 or 32 raw bytes, or their base64.
func LoadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := strings.TrimSpace(string(b))
	if k, err := base64.StdEncoding.DecodeString(s); err == nil && validKeyLen(len(k)) {
		return k, nil
	}
	if validKeyLen(len(s)) {
		return []byte(s), nil
	}
	return nil, errors.New("the key must be 16, 24 or 32 bytes (raw or base64) for AES-128/192/256")
}

func validKeyLen(n int) bool { return n == 16 || n == 24 || n == 32 }
