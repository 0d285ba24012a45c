package receivers

// These tests drive Alertmanager's own email and webhook notifiers, loaded
// from an Alertmanager config as our deployment writes it, against real
// local servers: they prove the reused receivers work as configured.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/alertmanager/config"
	"github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/notify/email"
	"github.com/prometheus/alertmanager/notify/webhook"
	"github.com/prometheus/alertmanager/types"
	"github.com/prometheus/common/promslog"
)

// selfSignedCert makes a certificate for 127.0.0.1 and returns it with its
// PEM, which doubles as the CA.
func selfSignedCert(t testing.TB) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "smtp.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	return cert, certPEM
}

// mailMsg is one message the SMTP server accepted.
type mailMsg struct {
	authUser string
	authTLS  bool
	from     string
	to       []string
	data     []byte
}

// smtpSession accepts AUTH PLAIN for one user and records the message.
type smtpSession struct {
	conn     *smtp.Conn
	user     string
	pass     string
	msg      mailMsg
	received chan<- mailMsg
}

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *smtpSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != s.user || password != s.pass {
			return errors.New("invalid credentials")
		}
		_, isTLS := s.conn.TLSConnectionState()
		s.msg.authUser, s.msg.authTLS = username, isTLS
		return nil
	}), nil
}

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.msg.authUser == "" {
		return smtp.ErrAuthRequired
	}
	s.msg.from = from
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.msg.to = append(s.msg.to, to)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.msg.data = b
	s.received <- s.msg
	return nil
}

func (s *smtpSession) Reset()        { s.msg = mailMsg{authUser: s.msg.authUser, authTLS: s.msg.authTLS} }
func (s *smtpSession) Logout() error { return nil }

// startSMTP runs a go-smtp server on loopback offering STARTTLS, and AUTH
// PLAIN only once TLS is up.
func startSMTP(t testing.TB, cert tls.Certificate, user, pass string) (string, <-chan mailMsg) {
	t.Helper()
	received := make(chan mailMsg, 4)
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &smtpSession{conn: c, user: user, pass: pass, received: received}, nil
	}))
	srv.Domain = "smtp.test"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.AllowInsecureAuth = false
	srv.ReadTimeout = testDeadline
	srv.WriteTimeout = testDeadline
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String(), received
}

// loadAMConfig loads an Alertmanager config as our deployment writes it.
func loadAMConfig(t testing.TB, smarthost, caFile, hookURL string) *config.Config {
	t.Helper()
	cfg, err := config.Load(fmt.Sprintf(`
global:
  smtp_smarthost: '%s'
  smtp_from: 'alertmanager@bureau.example'
  smtp_auth_username: 'am'
  smtp_auth_password: 'smtp-pw'
  smtp_require_tls: true
route:
  receiver: ops
receivers:
- name: ops
  email_configs:
  - to: 'oncall@bureau.example'
    send_resolved: true
    tls_config:
      ca_file: '%s'
  webhook_configs:
  - url: '%s'
    send_resolved: true
`, smarthost, caFile, hookURL))
	if err != nil {
		t.Fatalf("load alertmanager config: %v", err)
	}
	return cfg
}

// amIntegration builds the named integration of receiver "ops" the way
// Alertmanager's config/receiver.BuildReceiverIntegrations does. That
// package itself is not used: it imports every notifier, and SNS needs AWS
// SDK modules that are not in our go.sum.
func amIntegration(t testing.TB, cfg *config.Config, name string) notify.Integration {
	t.Helper()
	rc, tmpl, l := cfg.Receivers[0], newTemplate(t), promslog.NewNopLogger()
	switch name {
	case "email":
		c := rc.EmailConfigs[0]
		return notify.NewIntegration(email.New(c, tmpl, l), c, name, 0, rc.Name)
	case "webhook":
		c := rc.WebhookConfigs[0]
		n, err := webhook.New(c, tmpl, l)
		if err != nil {
			t.Fatal(err)
		}
		return notify.NewIntegration(n, c, name, 0, rc.Name)
	}
	t.Fatalf("no %s integration", name)
	return notify.Integration{}
}

func TestAlertmanagerEmail(t *testing.T) {
	cert, certPEM := selfSignedCert(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	addr, received := startSMTP(t, cert, "am", "smtp-pw")
	email := amIntegration(t, loadAMConfig(t, addr, caFile, "http://127.0.0.1:1/hook"), "email")

	if retry, err := email.Notify(notifyCtx(t), firing("db-1")); err != nil {
		t.Fatalf("notify: retry=%v err=%v", retry, err)
	}
	var m mailMsg
	select {
	case m = <-received:
	case <-time.After(testDeadline):
		t.Fatal("no mail before the deadline")
	}
	if m.authUser != "am" || !m.authTLS {
		t.Errorf("auth user %q over TLS %v, want am over STARTTLS", m.authUser, m.authTLS)
	}
	if m.from != "alertmanager@bureau.example" || strings.Join(m.to, ",") != "oncall@bureau.example" {
		t.Errorf("envelope from %q to %v", m.from, m.to)
	}

	msg, err := mail.ReadMessage(strings.NewReader(string(m.data)))
	if err != nil {
		t.Fatalf("parse mail: %v", err)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "[FIRING:1] DiskFull (db-1)"; !strings.Contains(subject, want) {
		t.Errorf("Subject = %q, want it to contain %q", subject, want)
	}
	if to := msg.Header.Get("To"); to != "oncall@bureau.example" {
		t.Errorf("To = %q", to)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	var body strings.Builder
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart() // decodes quoted-printable
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		body.Write(b)
	}
	for _, want := range []string{"DiskFull", "db-1", "disk /data is 97% full"} {
		if !strings.Contains(body.String(), want) {
			t.Errorf("body lacks %q", want)
		}
	}
}

func TestAlertmanagerWebhook(t *testing.T) {
	srv := newServer(t, 200, "")
	hook := amIntegration(t, loadAMConfig(t, "127.0.0.1:25", "", srv.URL+"/hook"), "webhook")
	tests := []struct {
		name       string
		alert      func(string) *types.Alert
		wantStatus string
	}{
		{name: "firing", alert: firing, wantStatus: "firing"},
		{name: "resolved", alert: resolved, wantStatus: "resolved"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if retry, err := hook.Notify(notifyCtx(t), tc.alert("db-1")); err != nil {
				t.Fatalf("notify: retry=%v err=%v", retry, err)
			}
			r := srv.next(t)
			if r.url.Path != "/hook" || r.header.Get("Content-Type") != "application/json" {
				t.Errorf("got %s %q", r.url.Path, r.header.Get("Content-Type"))
			}
			var got struct {
				Version  string `json:"version"`
				GroupKey string `json:"groupKey"`
				Status   string `json:"status"`
				Receiver string `json:"receiver"`
				Alerts   []struct {
					Status string            `json:"status"`
					Labels map[string]string `json:"labels"`
				} `json:"alerts"`
			}
			if err := json.Unmarshal(r.body, &got); err != nil {
				t.Fatalf("payload %s: %v", r.body, err)
			}
			if got.Version != "4" || got.GroupKey != `{}:{alertname="DiskFull"}` || got.Status != tc.wantStatus || got.Receiver != "ops" {
				t.Errorf("version %q groupKey %q status %q receiver %q", got.Version, got.GroupKey, got.Status, got.Receiver)
			}
			if len(got.Alerts) != 1 || got.Alerts[0].Labels["instance"] != "db-1" || got.Alerts[0].Status != tc.wantStatus {
				t.Errorf("alerts = %+v", got.Alerts)
			}
		})
	}
}
