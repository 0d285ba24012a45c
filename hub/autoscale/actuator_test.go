package autoscale

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bureauhub/bureauhub/hub/refsvc/host"
)

// fakeHost is a ServiceHost with one service.
type fakeHost struct {
	mu       sync.Mutex
	desired  int
	ready    int
	scaleErr error
	scales   []int
	replicas []host.ReplicaStatus
}

func (h *fakeHost) Scale(name string, n int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if name != "booking" {
		return host.ErrUnknownService
	}
	if h.scaleErr != nil {
		return h.scaleErr
	}
	h.scales = append(h.scales, n)
	h.desired = n
	return nil
}

func (h *fakeHost) Status(name string) (host.ServiceStatus, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if name != "booking" {
		return host.ServiceStatus{}, host.ErrUnknownService
	}
	return host.ServiceStatus{Name: name, Desired: h.desired, Ready: h.ready, Replicas: h.replicas}, nil
}

func TestHostedActuator(t *testing.T) {
	h := &fakeHost{desired: 3, ready: 2, replicas: []host.ReplicaStatus{
		{StartedAt: t0, ReadyAt: t0.Add(4 * time.Second)},
		{StartedAt: t0, ReadyAt: t0.Add(6 * time.Second)},
		{StartedAt: t0}, // still starting
	}}
	a := NewHostedActuator(h, "booking")
	ctx := context.Background()
	d, r, err := a.Current(ctx)
	if err != nil || d != 3 || r != 2 {
		t.Fatalf("Current = %d, %d, %v", d, r, err)
	}
	if err := a.Scale(ctx, 5); err != nil || h.desired != 5 {
		t.Fatalf("Scale: %v, desired %d", err, h.desired)
	}
	w, ok, err := a.ObservedWarmUp(ctx)
	if err != nil || !ok || w != 6*time.Second {
		t.Fatalf("ObservedWarmUp = %v %v %v", w, ok, err)
	}
	if _, _, err := NewHostedActuator(h, "nope").Current(ctx); !errors.Is(err, host.ErrUnknownService) {
		t.Fatalf("unknown service: %v", err)
	}
	h.scaleErr = errors.New("boom")
	if err := a.Scale(ctx, 4); err == nil {
		t.Fatal("Scale error not returned")
	}
}

// fakeAPIServer is a TLS Kubernetes API server holding one Deployment.
type fakeAPIServer struct {
	srv       *httptest.Server
	caFile    string
	tokenFile string

	mu        sync.Mutex
	replicas  int
	ready     int
	version   int
	conflicts int // PUTs to answer 409 first
	puts      []k8sScale
	requests  []string
}

const (
	k8sToken  = "sa-token-123"
	scalePath = "/apis/apps/v1/namespaces/visa/deployments/booking/scale"
	depPath   = "/apis/apps/v1/namespaces/visa/deployments/booking"
)

func newFakeAPIServer(t *testing.T) *fakeAPIServer {
	f := &fakeAPIServer{replicas: 3, ready: 3, version: 7}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the bad-CA case's handshake error
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	dir := t.TempDir()
	f.caFile = filepath.Join(dir, "ca.crt")
	f.tokenFile = filepath.Join(dir, "token")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})
	if err := os.WriteFile(f.caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.tokenFile, []byte(k8sToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakeAPIServer) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.URL.Path)
	if r.Header.Get("Authorization") != "Bearer "+k8sToken {
		http.Error(w, `{"kind":"Status","code":401}`, http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == depPath:
		json.NewEncoder(w).Encode(map[string]any{"spec": map[string]any{"replicas": f.replicas},
			"status": map[string]any{"replicas": f.replicas, "readyReplicas": f.ready}})
	case r.Method == http.MethodGet && r.URL.Path == scalePath:
		var s k8sScale
		s.APIVersion, s.Kind = "autoscaling/v1", "Scale"
		s.Metadata.Name, s.Metadata.Namespace = "booking", "visa"
		s.Metadata.ResourceVersion = itoa(f.version)
		s.Spec.Replicas, s.Status.Replicas = f.replicas, f.replicas
		json.NewEncoder(w).Encode(s)
	case r.Method == http.MethodPut && r.URL.Path == scalePath:
		var s k8sScale
		if err := json.NewDecoder(r.Body).Decode(&s); err != nil || s.Kind != "Scale" {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		if f.conflicts > 0 {
			f.conflicts--
			f.version++ // someone else wrote
			http.Error(w, `{"kind":"Status","reason":"Conflict","code":409}`, http.StatusConflict)
			return
		}
		if s.Metadata.ResourceVersion != itoa(f.version) {
			http.Error(w, `{"kind":"Status","reason":"Conflict","code":409}`, http.StatusConflict)
			return
		}
		f.puts = append(f.puts, s)
		f.replicas = s.Spec.Replicas
		f.version++
		json.NewEncoder(w).Encode(s)
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func (f *fakeAPIServer) config() KubernetesConfig {
	c := KubernetesConfig{APIServer: f.srv.URL, Namespace: "visa", Deployment: "booking", TokenFile: f.tokenFile, CAFile: f.caFile}
	c.SetDefaults()
	return c
}

func TestKubernetesActuator(t *testing.T) {
	f := newFakeAPIServer(t)
	cfg := f.config()
	if err := cfg.Validate("k"); err != nil {
		t.Fatal(err)
	}
	a, err := NewKubernetesActuator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f.ready = 2
	if d, r, err := a.Current(ctx); err != nil || d != 3 || r != 2 {
		t.Fatalf("Current = %d, %d, %v", d, r, err)
	}
	if err := a.Scale(ctx, 6); err != nil {
		t.Fatalf("Scale: %v", err)
	}
	if len(f.puts) != 1 || f.puts[0].Spec.Replicas != 6 || f.puts[0].Metadata.Name != "booking" || f.puts[0].APIVersion != "autoscaling/v1" {
		t.Fatalf("PUT bodies %+v", f.puts)
	}
	if d, _, _ := a.Current(ctx); d != 6 {
		t.Fatalf("desired after scale = %d", d)
	}

	t.Run("conflict is retried once", func(t *testing.T) {
		f.conflicts = 1
		if err := a.Scale(ctx, 4); err != nil || f.replicas != 4 {
			t.Fatalf("Scale: %v, replicas %d", err, f.replicas)
		}
	})
	t.Run("wrong token fails", func(t *testing.T) {
		bad := cfg
		bad.TokenFile = filepath.Join(t.TempDir(), "token")
		os.WriteFile(bad.TokenFile, []byte("wrong"), 0o600)
		b, _ := NewKubernetesActuator(bad)
		if err := b.Scale(ctx, 9); err == nil || !strings.Contains(err.Error(), "401") || f.replicas == 9 {
			t.Fatalf("Scale with a wrong token: %v (replicas %d)", err, f.replicas)
		}
	})
	t.Run("untrusted CA fails", func(t *testing.T) {
		// httptest servers all share one certificate: make another CA.
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
			BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		bad := cfg
		bad.CAFile = filepath.Join(t.TempDir(), "ca.crt")
		os.WriteFile(bad.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
		b, _ := NewKubernetesActuator(bad)
		if _, _, err := b.Current(ctx); err == nil {
			t.Fatal("Current trusted an unknown CA")
		}
	})
}

func TestWebhookActuator(t *testing.T) {
	var (
		mu       sync.Mutex
		payloads []WebhookPayload
		fail     = 0
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer hook-secret" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodGet && r.URL.Path == "/status" {
			io.WriteString(w, `{"desired_replicas": 4, "ready_replicas": 3}`)
			return
		}
		if fail > 0 {
			fail--
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		var p WebhookPayload
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&p) != nil {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		payloads = append(payloads, p)
	}))
	defer srv.Close()
	tok := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(tok, []byte("hook-secret"), 0o600)
	cfg := WebhookConfig{URL: srv.URL + "/scale", BearerTokenFile: tok}
	cfg.SetDefaults()
	if err := cfg.Validate("w"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := NewWebhookActuator(cfg, "booking", "visa", 2)
	if d, r, err := a.Current(ctx); err != nil || d != 2 || r != 2 {
		t.Fatalf("Current before any action = %d %d %v", d, r, err)
	}
	d := Decision{Replicas: 7, Current: 2, Explanation: Explanation{Term: TermForecast, ReactiveFloor: 3}}
	if err := a.ScaleDecision(ctx, "booking", "visa", d); err != nil {
		t.Fatal(err)
	}
	if len(payloads) != 1 || payloads[0].Replicas != 7 || payloads[0].Target != "booking" || payloads[0].Decision == nil ||
		payloads[0].Decision.Explanation.Term != TermForecast {
		t.Fatalf("payloads %+v", payloads)
	}
	if d, _, _ := a.Current(ctx); d != 7 {
		t.Fatalf("Current after action = %d", d)
	}
	fail = 1
	if err := a.Scale(ctx, 3); err == nil || !strings.Contains(err.Error(), "502") {
		t.Fatalf("failing webhook: %v", err)
	}
	cfg.StatusURL = srv.URL + "/status"
	if d, r, err := NewWebhookActuator(cfg, "booking", "visa", 1).Current(ctx); err != nil || d != 4 || r != 3 {
		t.Fatalf("Current from status_url = %d %d %v", d, r, err)
	}
}
