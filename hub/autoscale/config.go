package autoscale

import (
	"fmt"
	"regexp"
	"time"
)

// Config is the autoscaler's configuration.
type Config struct {
	// Targets are the scaled workloads.
	Targets []TargetConfig `yaml:"targets"`
	// AuditTable is the ClickHouse table of the audit trail, created if
	// missing (default "autoscale_events").
	AuditTable string `yaml:"audit_table"`
	// AuditQueueSize bounds the events waiting to be written; beyond it
	// events are dropped and counted (default 10000).
	AuditQueueSize int `yaml:"audit_queue_size"`
	// AuditFlushInterval is how often queued events are written (default 1 s).
	AuditFlushInterval time.Duration `yaml:"audit_flush_interval"`
	// RunbookURL goes into the AutoscaleActionFailing alert.
	RunbookURL string `yaml:"runbook_url"`
}

// ActuatorConfig says what a target scales. Kind is "hosted" (implied by
// the target's service), "kubernetes" or "webhook".
type ActuatorConfig struct {
	Kind       string           `yaml:"kind"`
	Kubernetes KubernetesConfig `yaml:"kubernetes"`
	Webhook    WebhookConfig    `yaml:"webhook"`
}

// Actuator kinds.
const (
	KindHosted     = "hosted"
	KindKubernetes = "kubernetes"
	KindWebhook    = "webhook"
)

// TargetConfig is one scaled workload.
type TargetConfig struct {
	// Name identifies the target in metrics, the API and the audit trail.
	Name string `yaml:"name"`
	// Tenant is the bureau that owns the workload.
	Tenant string `yaml:"tenant"`
	// Service is the hosted reference service scaled (kind hosted).
	Service string `yaml:"service"`
	// Actuator scales anything else.
	Actuator ActuatorConfig `yaml:"actuator"`
	// Signal is the forecast signal predicting the target's request rate;
	// empty: reactive only.
	Signal string `yaml:"signal"`
	// RateExpr is a PromQL expression of the observed request rate
	// (requests per second over all replicas).
	RateExpr string `yaml:"rate_expr"`
	// LatencyExpr is a PromQL expression of the p99 latency in seconds;
	// with SLOLatency it tells whether the SLO held (for learning the
	// capacity and for the audit's outcome).
	LatencyExpr string        `yaml:"latency_expr"`
	SLOLatency  time.Duration `yaml:"slo_latency"`
	// Mode is off, dry-run (default) or on.
	Mode Mode `yaml:"mode"`
	// Min and Max bound the replica count (defaults 1 and 10).
	Min int `yaml:"min"`
	Max int `yaml:"max"`
	// TargetUtilization is the fraction of capacity replicas are sized to
	// run at (default 0.7).
	TargetUtilization float64 `yaml:"target_utilization"`
	// WarmUp is how long a new replica takes to become ready (default
	// 30 s); LearnWarmUp replaces it by what the actuator reports, when
	// the actuator can (hosted services).
	WarmUp      time.Duration `yaml:"warm_up"`
	LearnWarmUp bool          `yaml:"learn_warm_up"`
	// SyncInterval is the time between decisions (default 15 s).
	SyncInterval time.Duration `yaml:"sync_interval"`
	// ScaleDownStabilization (default 5 m): scale down only to the highest
	// recommendation of this window.
	ScaleDownStabilization time.Duration `yaml:"scale_down_stabilization"`
	// CooldownUp and CooldownDown are the least time after an action
	// before the next scale-up, respectively scale-down (default 0).
	CooldownUp   time.Duration `yaml:"cooldown_up"`
	CooldownDown time.Duration `yaml:"cooldown_down"`
	// MaxStep bounds one action's change (0: unbounded).
	MaxStep int `yaml:"max_step"`
	// MaxActionsPerHour bounds actions per hour (0: unbounded).
	MaxActionsPerHour int `yaml:"max_actions_per_hour"`
	// TrustedMAPE (default 0.15): a forecast with a larger backtest error
	// (or none) is trusted little, and with UseForecastUpper (default
	// true) sized for its upper bound.
	TrustedMAPE      float64 `yaml:"trusted_mape"`
	UseForecastUpper *bool   `yaml:"use_forecast_upper_when_untrusted"`
	// IgnoreForecastAboveMAPE drops a forecast this wrong (default 1.0;
	// the reactive floor still holds).
	IgnoreForecastAboveMAPE float64 `yaml:"ignore_forecast_above_mape"`
	// Tolerance (default 0.1, the HPA's): while the observed rate is
	// within this fraction of what the current count is sized for, the
	// reactive floor holds the current count. Negative: none.
	Tolerance float64 `yaml:"tolerance"`
	// ForecastShortensHold (default true): a scale-down held by the
	// stabilization window goes down to what the forecast's peak over the
	// whole window needs, when the forecast reaches that far (its horizon
	// covers the window) and is not ignored.
	ForecastShortensHold *bool `yaml:"forecast_shortens_hold"`
	// Capacity is the per-replica capacity model.
	Capacity CapacityConfig `yaml:"capacity"`
	// RetryAttempts is how often a failed action is tried in all (default
	// 3), RetryBackoff the first wait between tries, doubled each time
	// (default 1 s).
	RetryAttempts int           `yaml:"retry_attempts"`
	RetryBackoff  time.Duration `yaml:"retry_backoff"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.AuditTable == "" {
		c.AuditTable = "autoscale_events"
	}
	if c.AuditQueueSize == 0 {
		c.AuditQueueSize = 10000
	}
	if c.AuditFlushInterval == 0 {
		c.AuditFlushInterval = time.Second
	}
	if c.RunbookURL == "" {
		c.RunbookURL = "https://runbooks.bureauhub.example/#autoscaleactionfailing"
	}
	for i := range c.Targets {
		c.Targets[i].SetDefaults()
	}
}

// SetDefaults fills unset fields.
func (t *TargetConfig) SetDefaults() {
	if t.Actuator.Kind == "" && t.Service != "" {
		t.Actuator.Kind = KindHosted
	}
	switch t.Actuator.Kind {
	case KindKubernetes:
		t.Actuator.Kubernetes.SetDefaults()
	case KindWebhook:
		t.Actuator.Webhook.SetDefaults()
	}
	if t.Mode == "" {
		t.Mode = ModeDryRun
	}
	if t.Min == 0 {
		t.Min = 1
	}
	if t.Max == 0 {
		t.Max = 10
	}
	if t.TargetUtilization == 0 {
		t.TargetUtilization = 0.7
	}
	if t.WarmUp == 0 {
		t.WarmUp = 30 * time.Second
	}
	if t.SyncInterval == 0 {
		t.SyncInterval = 15 * time.Second
	}
	if t.ScaleDownStabilization == 0 {
		t.ScaleDownStabilization = 5 * time.Minute
	}
	if t.TrustedMAPE == 0 {
		t.TrustedMAPE = 0.15
	}
	if t.UseForecastUpper == nil {
		yes := true
		t.UseForecastUpper = &yes
	}
	if t.IgnoreForecastAboveMAPE == 0 {
		t.IgnoreForecastAboveMAPE = 1
	}
	if t.Tolerance == 0 {
		t.Tolerance = 0.1
	}
	if t.ForecastShortensHold == nil {
		yes := true
		t.ForecastShortensHold = &yes
	}
	if t.RetryAttempts == 0 {
		t.RetryAttempts = 3
	}
	if t.RetryBackoff == 0 {
		t.RetryBackoff = time.Second
	}
	t.Capacity.SetDefaults()
}

var (
	targetNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	identRE      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Validate names the first invalid field under prefix ("autoscale").
func (c *Config) Validate(prefix string) error {
	if !identRE.MatchString(c.AuditTable) {
		return fmt.Errorf("%s.audit_table: %q is not a plain identifier", prefix, c.AuditTable)
	}
	if c.AuditQueueSize < 1 {
		return fmt.Errorf("%s.audit_queue_size: must be at least 1", prefix)
	}
	if c.AuditFlushInterval <= 0 {
		return fmt.Errorf("%s.audit_flush_interval: must be positive", prefix)
	}
	seen := map[string]bool{}
	for i := range c.Targets {
		p := fmt.Sprintf("%s.targets[%d]", prefix, i)
		if err := c.Targets[i].Validate(p); err != nil {
			return err
		}
		if seen[c.Targets[i].Name] {
			return fmt.Errorf("%s.name: %q is used by another target", p, c.Targets[i].Name)
		}
		seen[c.Targets[i].Name] = true
	}
	return nil
}

// Validate names the first invalid field under prefix.
func (t *TargetConfig) Validate(prefix string) error {
	switch {
	case !targetNameRE.MatchString(t.Name):
		return fmt.Errorf("%s.name: %q must match %s", prefix, t.Name, targetNameRE)
	case t.Tenant == "":
		return fmt.Errorf("%s.tenant: required (the bureau that owns the workload)", prefix)
	case t.RateExpr == "":
		return fmt.Errorf("%s.rate_expr: required (the observed request rate, the reactive floor)", prefix)
	case t.Mode != ModeOff && t.Mode != ModeDryRun && t.Mode != ModeOn:
		return fmt.Errorf("%s.mode: %q is not off, dry-run or on", prefix, t.Mode)
	case t.Min < 0:
		return fmt.Errorf("%s.min: must not be negative", prefix)
	case t.Max < 1 || t.Max < t.Min:
		return fmt.Errorf("%s.max: must be at least 1 and at least min (%d)", prefix, t.Min)
	case !(t.TargetUtilization > 0 && t.TargetUtilization <= 1):
		return fmt.Errorf("%s.target_utilization: must be in (0, 1]", prefix)
	case t.WarmUp < 0:
		return fmt.Errorf("%s.warm_up: must not be negative", prefix)
	case t.SyncInterval <= 0:
		return fmt.Errorf("%s.sync_interval: must be positive", prefix)
	case t.ScaleDownStabilization < 0:
		return fmt.Errorf("%s.scale_down_stabilization: must not be negative", prefix)
	case t.CooldownUp < 0:
		return fmt.Errorf("%s.cooldown_up: must not be negative", prefix)
	case t.CooldownDown < 0:
		return fmt.Errorf("%s.cooldown_down: must not be negative", prefix)
	case t.MaxStep < 0:
		return fmt.Errorf("%s.max_step: must not be negative (0: unbounded)", prefix)
	case t.MaxActionsPerHour < 0:
		return fmt.Errorf("%s.max_actions_per_hour: must not be negative (0: unbounded)", prefix)
	case t.TrustedMAPE < 0:
		return fmt.Errorf("%s.trusted_mape: must not be negative", prefix)
	case t.IgnoreForecastAboveMAPE < 0:
		return fmt.Errorf("%s.ignore_forecast_above_mape: must not be negative", prefix)
	case t.Tolerance >= 1:
		return fmt.Errorf("%s.tolerance: must be below 1, got %v", prefix, t.Tolerance)
	case t.RetryAttempts < 1:
		return fmt.Errorf("%s.retry_attempts: must be at least 1", prefix)
	case t.RetryBackoff <= 0:
		return fmt.Errorf("%s.retry_backoff: must be positive", prefix)
	case t.LatencyExpr != "" && t.SLOLatency <= 0:
		return fmt.Errorf("%s.slo_latency: required with latency_expr", prefix)
	case t.Capacity.Learn && t.LatencyExpr == "":
		return fmt.Errorf("%s.capacity.learn: needs latency_expr and slo_latency to tell when the SLO held", prefix)
	}
	if err := t.Capacity.Validate(prefix + ".capacity"); err != nil {
		return err
	}
	ap := prefix + ".actuator"
	switch t.Actuator.Kind {
	case KindHosted:
		if t.Service == "" {
			return fmt.Errorf("%s.service: required for a hosted actuator", prefix)
		}
	case KindKubernetes:
		return t.Actuator.Kubernetes.Validate(ap + ".kubernetes")
	case KindWebhook:
		return t.Actuator.Webhook.Validate(ap + ".webhook")
	case "":
		return fmt.Errorf("%s.kind: required (or set service for a hosted service)", ap)
	default:
		return fmt.Errorf("%s.kind: %q is not hosted, kubernetes or webhook", ap, t.Actuator.Kind)
	}
	return nil
}

// policy is the target's decision policy.
func (t *TargetConfig) policy() Policy {
	return Policy{Mode: t.Mode, Min: t.Min, Max: t.Max, TargetUtilization: t.TargetUtilization,
		SyncInterval: t.SyncInterval, ScaleDownStabilization: t.ScaleDownStabilization,
		CooldownUp: t.CooldownUp, CooldownDown: t.CooldownDown, MaxStep: t.MaxStep,
		MaxActionsPerHour: t.MaxActionsPerHour, TrustedMAPE: t.TrustedMAPE,
		UseUpperWhenUntrusted:   t.UseForecastUpper != nil && *t.UseForecastUpper,
		IgnoreForecastAboveMAPE: t.IgnoreForecastAboveMAPE,
		ForecastShortensHold:    t.ForecastShortensHold != nil && *t.ForecastShortensHold,
		Tolerance:               max(0, t.Tolerance)}
}
