package autoscale

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/bureauhub/bureauhub/hub/refsvc/host"
)

// Actuator reads and sets a target's replica count. Implementations are
// safe for concurrent use; Scale returns once the change is accepted, not
// when the replicas are ready.
type Actuator interface {
	// Current is the desired and the ready replica counts.
	Current(ctx context.Context) (desired, ready int, err error)
	// Scale sets the desired count.
	Scale(ctx context.Context, n int) error
}

// DecisionScaler is implemented by actuators that want the whole decision
// (the webhook forwards it); the autoscaler calls ScaleDecision instead of
// Scale when it is there.
type DecisionScaler interface {
	ScaleDecision(ctx context.Context, target, tenant string, d Decision) error
}

// WarmUpReporter is implemented by actuators that can tell how long their
// replicas took to become ready (for learning warm_up).
type WarmUpReporter interface {
	// ObservedWarmUp is the longest ready_at − started_at of the current
	// replicas, in wall time; ok is false when no replica is ready.
	ObservedWarmUp(ctx context.Context) (d time.Duration, ok bool, err error)
}

// ServiceHost is the part of *host.Host the hosted actuator needs.
type ServiceHost interface {
	Scale(name string, n int) error
	Status(name string) (host.ServiceStatus, error)
}

var (
	_ ServiceHost    = (*host.Host)(nil)
	_ Actuator       = (*HostedActuator)(nil)
	_ WarmUpReporter = (*HostedActuator)(nil)
	_ Actuator       = (*KubernetesActuator)(nil)
	_ Actuator       = (*WebhookActuator)(nil)
	_ DecisionScaler = (*WebhookActuator)(nil)
)

// HostedActuator scales one of the hub's hosted reference services.
type HostedActuator struct {
	host    ServiceHost
	service string
}

// NewHostedActuator scales service on h.
func NewHostedActuator(h ServiceHost, service string) *HostedActuator {
	return &HostedActuator{host: h, service: service}
}

// Current reads the service's status.
func (a *HostedActuator) Current(context.Context) (int, int, error) {
	st, err := a.host.Status(a.service)
	if err != nil {
		return 0, 0, fmt.Errorf("status of hosted service %s: %w", a.service, err)
	}
	return st.Desired, st.Ready, nil
}

// Scale sets the service's replica count.
func (a *HostedActuator) Scale(_ context.Context, n int) error {
	if err := a.host.Scale(a.service, n); err != nil {
		return fmt.Errorf("scale hosted service %s: %w", a.service, err)
	}
	return nil
}

// ObservedWarmUp is the longest warm-up among the ready replicas.
func (a *HostedActuator) ObservedWarmUp(context.Context) (time.Duration, bool, error) {
	st, err := a.host.Status(a.service)
	if err != nil {
		return 0, false, fmt.Errorf("status of hosted service %s: %w", a.service, err)
	}
	var longest time.Duration
	ok := false
	for _, r := range st.Replicas {
		if r.ReadyAt.IsZero() || r.StartedAt.IsZero() {
			continue
		}
		ok = true
		longest = max(longest, r.ReadyAt.Sub(r.StartedAt))
	}
	return longest, ok, nil
}

// KubernetesConfig reaches a Deployment through the API server.
type KubernetesConfig struct {
	// APIServer is the API server's base URL. Default: in-cluster
	// (https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT).
	APIServer  string `yaml:"api_server"`
	Namespace  string `yaml:"namespace"`
	Deployment string `yaml:"deployment"`
	// TokenFile holds the bearer token; it is re-read on every call, as
	// projected service-account tokens rotate. Default: the in-cluster
	// service-account token.
	TokenFile string `yaml:"token_file"`
	// CAFile verifies the API server. Default: the in-cluster CA.
	CAFile string `yaml:"ca_file"`
	// Timeout bounds one request (default 10 s).
	Timeout time.Duration `yaml:"timeout"`
}

const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount/"

// SetDefaults fills unset fields with the in-cluster values.
func (c *KubernetesConfig) SetDefaults() {
	if c.APIServer == "" {
		if h, p := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT"); h != "" && p != "" {
			c.APIServer = "https://" + h + ":" + p
		}
	}
	if c.TokenFile == "" {
		c.TokenFile = serviceAccountDir + "token"
	}
	if c.CAFile == "" {
		c.CAFile = serviceAccountDir + "ca.crt"
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
}

// Validate names the first invalid field under prefix.
func (c *KubernetesConfig) Validate(prefix string) error {
	u, err := url.Parse(c.APIServer)
	switch {
	case c.APIServer == "":
		return fmt.Errorf("%s.api_server: required outside a cluster", prefix)
	case err != nil || u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("%s.api_server: %q is not an https URL", prefix, c.APIServer)
	case c.Namespace == "":
		return fmt.Errorf("%s.namespace: required", prefix)
	case c.Deployment == "":
		return fmt.Errorf("%s.deployment: required", prefix)
	case c.Timeout <= 0:
		return fmt.Errorf("%s.timeout: must be positive", prefix)
	}
	return nil
}

// KubernetesActuator scales a Deployment through its scale subresource.
// It needs get on deployments and get, update on deployments/scale.
type KubernetesActuator struct {
	cfg    KubernetesConfig
	client *http.Client
}

// NewKubernetesActuator reads the CA file; the token is read per request.
func NewKubernetesActuator(cfg KubernetesConfig) (*KubernetesActuator, error) {
	pem, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("read kubernetes ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("kubernetes ca_file %s: no PEM certificate", cfg.CAFile)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return &KubernetesActuator{cfg: cfg, client: &http.Client{Transport: tr, Timeout: cfg.Timeout}}, nil
}

func (a *KubernetesActuator) path(sub string) string {
	return strings.TrimRight(a.cfg.APIServer, "/") + "/apis/apps/v1/namespaces/" + url.PathEscape(a.cfg.Namespace) +
		"/deployments/" + url.PathEscape(a.cfg.Deployment) + sub
}

// k8sScale is the autoscaling/v1 Scale object.
type k8sScale struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name            string `json:"name"`
		Namespace       string `json:"namespace"`
		ResourceVersion string `json:"resourceVersion,omitempty"`
	} `json:"metadata"`
	Spec struct {
		Replicas int `json:"replicas"`
	} `json:"spec"`
	Status struct {
		Replicas int    `json:"replicas"`
		Selector string `json:"selector,omitempty"`
	} `json:"status"`
}

func (a *KubernetesActuator) do(ctx context.Context, method, u string, body, out any) error {
	tok, err := os.ReadFile(a.cfg.TokenFile)
	if err != nil {
		return fmt.Errorf("read kubernetes token_file: %w", err)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return &httpStatusError{method: method, url: u, code: resp.StatusCode, body: strings.TrimSpace(string(b))}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", method, u, err)
		}
	}
	return nil
}

type httpStatusError struct {
	method, url string
	code        int
	body        string
}

func (e *httpStatusError) Error() string {
	if len(e.body) > 300 {
		e.body = e.body[:300]
	}
	return fmt.Sprintf("%s %s: %d %s", e.method, e.url, e.code, e.body)
}

// Current reads the Deployment's spec.replicas and status.readyReplicas.
func (a *KubernetesActuator) Current(ctx context.Context) (int, int, error) {
	var dep struct {
		Spec struct {
			Replicas *int `json:"replicas"`
		} `json:"spec"`
		Status struct {
			ReadyReplicas int `json:"readyReplicas"`
		} `json:"status"`
	}
	if err := a.do(ctx, http.MethodGet, a.path(""), nil, &dep); err != nil {
		return 0, 0, err
	}
	desired := 1 // the API's default when unset
	if dep.Spec.Replicas != nil {
		desired = *dep.Spec.Replicas
	}
	return desired, dep.Status.ReadyReplicas, nil
}

// Scale reads the scale subresource (for its resourceVersion) and puts it
// back with spec.replicas = n, retrying once on a write conflict.
func (a *KubernetesActuator) Scale(ctx context.Context, n int) error {
	var err error
	for range 2 {
		var s k8sScale
		if err = a.do(ctx, http.MethodGet, a.path("/scale"), nil, &s); err != nil {
			return err
		}
		s.APIVersion, s.Kind = "autoscaling/v1", "Scale"
		s.Spec.Replicas = n
		err = a.do(ctx, http.MethodPut, a.path("/scale"), &s, nil)
		var se *httpStatusError
		if err == nil || !errors.As(err, &se) || se.code != http.StatusConflict {
			return err
		}
	}
	return err
}

// WebhookConfig posts decisions to an HTTP endpoint.
type WebhookConfig struct {
	// URL receives a POST of WebhookPayload per action.
	URL string `yaml:"url"`
	// StatusURL, if set, answers GET with {"desired_replicas": n,
	// "ready_replicas": m} (the hosted services' replica API does); without
	// it the webhook reports the last count it sent as both.
	StatusURL string `yaml:"status_url"`
	// BearerTokenFile, if set, authorizes the requests.
	BearerTokenFile string `yaml:"bearer_token_file"`
	// Timeout bounds one request (default 10 s).
	Timeout time.Duration `yaml:"timeout"`
}

// SetDefaults fills unset fields.
func (c *WebhookConfig) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
}

// Validate names the first invalid field under prefix.
func (c *WebhookConfig) Validate(prefix string) error {
	for _, f := range []struct{ name, v string }{{"url", c.URL}, {"status_url", c.StatusURL}} {
		if f.v == "" && f.name == "status_url" {
			continue
		}
		u, err := url.Parse(f.v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s.%s: %q is not an http(s) URL", prefix, f.name, f.v)
		}
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("%s.timeout: must be positive", prefix)
	}
	return nil
}

// WebhookPayload is the JSON body the webhook receives.
type WebhookPayload struct {
	Target   string    `json:"target"`
	Tenant   string    `json:"tenant"`
	Replicas int       `json:"replicas"`
	Decision *Decision `json:"decision,omitempty"`
}

// WebhookActuator posts each action to a URL.
type WebhookActuator struct {
	cfg            WebhookConfig
	target, tenant string
	client         *http.Client

	mu   sync.Mutex
	last int
}

// NewWebhookActuator posts target's actions; initial is what Current
// reports before the first action when there is no status URL.
func NewWebhookActuator(cfg WebhookConfig, target, tenant string, initial int) *WebhookActuator {
	return &WebhookActuator{cfg: cfg, target: target, tenant: tenant, client: &http.Client{Timeout: cfg.Timeout}, last: initial}
}

func (a *WebhookActuator) request(ctx context.Context, method, u string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.cfg.BearerTokenFile != "" {
		tok, err := os.ReadFile(a.cfg.BearerTokenFile)
		if err != nil {
			return nil, fmt.Errorf("read webhook bearer_token_file: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s webhook: %w", method, err)
	}
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, &httpStatusError{method: method, url: u, code: resp.StatusCode, body: strings.TrimSpace(string(b))}
	}
	return resp, nil
}

// Current asks the status URL, or reports the last count sent.
func (a *WebhookActuator) Current(ctx context.Context) (int, int, error) {
	if a.cfg.StatusURL == "" {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.last, a.last, nil
	}
	resp, err := a.request(ctx, http.MethodGet, a.cfg.StatusURL, nil)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var st struct {
		Desired int `json:"desired_replicas"`
		Ready   int `json:"ready_replicas"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return 0, 0, fmt.Errorf("decode webhook status: %w", err)
	}
	return st.Desired, st.Ready, nil
}

// Scale posts a payload without a decision.
func (a *WebhookActuator) Scale(ctx context.Context, n int) error {
	return a.post(ctx, WebhookPayload{Target: a.target, Tenant: a.tenant, Replicas: n})
}

// ScaleDecision posts the decision.
func (a *WebhookActuator) ScaleDecision(ctx context.Context, target, tenant string, d Decision) error {
	return a.post(ctx, WebhookPayload{Target: target, Tenant: tenant, Replicas: d.Replicas, Decision: &d})
}

func (a *WebhookActuator) post(ctx context.Context, p WebhookPayload) error {
	resp, err := a.request(ctx, http.MethodPost, a.cfg.URL, p)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	a.mu.Lock()
	a.last = p.Replicas
	a.mu.Unlock()
	return nil
}
