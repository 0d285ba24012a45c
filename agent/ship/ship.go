// Package ship sends the agent's durable buffer to the hub over the
// federation gRPC stream, acknowledging buffer records only once the hub
// has stored them, and failing over between hubs.
package ship

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/bureauhub/bureauhub/agent/buffer"
	fpb "github.com/bureauhub/bureauhub/api/federationpb"
	"github.com/bureauhub/bureauhub/hub/auth"
)

// Queue is the durable buffer the shipper drains; *buffer.Queue implements
// it. Next and Ack are called from one goroutine at a time.
type Queue interface {
	Next(ctx context.Context, after uint64) (buffer.Record, error)
	Ack(seq uint64) error
	Acked() uint64
	ID() string
}

// TLSConfig configures how the agent verifies the hub.
type TLSConfig struct {
	// CAFile verifies the hub's certificate; empty uses the system pool.
	CAFile string `yaml:"ca_file"`
	// ServerName overrides the name checked in the hub's certificate.
	ServerName string `yaml:"server_name"`
}

// Config configures shipping to the hub.
type Config struct {
	// Addresses lists hubs (host:port); the agent uses one at a time and
	// moves to the next when it fails. A DNS name resolving to several
	// hubs works too.
	Addresses []string `yaml:"addresses"`
	// TokenFile holds the bureau's bearer token. It is never logged.
	TokenFile string    `yaml:"token_file"`
	TLS       TLSConfig `yaml:"tls"`
	// InsecurePlaintext sends without TLS; only for local demos.
	InsecurePlaintext bool `yaml:"insecure_plaintext"`
	// MaxInflight bounds batches sent and not yet acknowledged.
	MaxInflight int           `yaml:"max_inflight"`
	MinBackoff  time.Duration `yaml:"min_backoff"`
	MaxBackoff  time.Duration `yaml:"max_backoff"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.MaxInflight == 0 {
		c.MaxInflight = 16
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 30 * time.Second
	}
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	if len(c.Addresses) == 0 {
		return errors.New("hub.addresses: at least one hub address is required")
	}
	if c.TokenFile == "" {
		return errors.New("hub.token_file: required")
	}
	if _, err := auth.ReadTokenFile(c.TokenFile); err != nil {
		return fmt.Errorf("hub.token_file: %w", err)
	}
	if c.TLS.CAFile != "" {
		if _, err := os.ReadFile(c.TLS.CAFile); err != nil {
			return fmt.Errorf("hub.tls.ca_file: %w", err)
		}
	}
	if c.MaxInflight < 1 || c.MaxInflight > 1024 {
		return errors.New("hub.max_inflight: must be between 1 and 1024")
	}
	if c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff {
		return errors.New("hub.min_backoff: must be positive and not above hub.max_backoff")
	}
	return nil
}

// Shipper drains a Queue into the hub.
type Shipper struct {
	cfg    Config
	q      Queue
	logger *slog.Logger
	creds  credentials.TransportCredentials
	token  tokenCreds
	bufs   mem.BufferPool // gRPC's send buffers, kept across sessions

	sent, sentSamples       prometheus.Counter
	acked, ackedSamples     prometheus.Counter
	retried, duplicates     prometheus.Counter
	dropped                 prometheus.Counter
	rejected                *prometheus.CounterVec
	connErrors              *prometheus.CounterVec
	connected, inflightGaug prometheus.Gauge
}

// New returns a Shipper for a validated config. reg may be nil.
func New(cfg Config, q Queue, logger *slog.Logger, reg prometheus.Registerer) (*Shipper, error) {
	tok, err := auth.ReadTokenFile(cfg.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("hub.token_file: %w", err)
	}
	s := &Shipper{cfg: cfg, q: q, logger: logger, token: tokenCreds{token: tok, secure: !cfg.InsecurePlaintext}}
	if s.bufs, err = newSendBuffers(); err != nil {
		return nil, fmt.Errorf("grpc buffer pool: %w", err)
	}
	if cfg.InsecurePlaintext {
		s.creds = insecure.NewCredentials()
	} else {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.TLS.ServerName}
		if cfg.TLS.CAFile != "" {
			pem, err := os.ReadFile(cfg.TLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("hub.tls.ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("hub.tls.ca_file: no PEM certificates in %s", cfg.TLS.CAFile)
			}
			tc.RootCAs = pool
		}
		s.creds = credentials.NewTLS(tc)
	}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "bureauhub_agent_ship_" + name, Help: help})
	}
	s.sent = c("sent_batches_total", "Batches sent to the hub, resends included.")
	s.sentSamples = c("sent_samples_total", "Samples sent to the hub, resends included.")
	s.acked = c("acked_batches_total", "Batches the hub acknowledged as stored.")
	s.ackedSamples = c("acked_samples_total", "Samples in batches the hub acknowledged as stored.")
	s.retried = c("retried_batches_total", "Batches sent again after a broken stream or a retryable refusal.")
	s.duplicates = c("duplicate_batches_total", "Resent batches the hub had already stored.")
	s.dropped = c("invalid_batches_total", "Batches the hub refused as invalid; they are dropped, not retried.")
	s.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bureauhub_agent_ship_rejected_samples_total",
		Help: "Samples the hub refused, by reason.",
	}, []string{"reason"})
	s.connErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bureauhub_agent_ship_stream_errors_total",
		Help: "Streams to the hub that ended in an error, by gRPC code.",
	}, []string{"code"})
	s.connected = prometheus.NewGauge(prometheus.GaugeOpts{Name: "bureauhub_agent_ship_connected", Help: "1 while a stream to a hub is open."})
	s.inflightGaug = prometheus.NewGauge(prometheus.GaugeOpts{Name: "bureauhub_agent_ship_inflight_batches", Help: "Batches sent and not yet acknowledged."})
	if reg != nil {
		for _, col := range []prometheus.Collector{s.sent, s.sentSamples, s.acked, s.ackedSamples, s.retried, s.duplicates,
			s.dropped, s.rejected, s.connErrors, s.connected, s.inflightGaug} {
			if err := reg.Register(col); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// tokenCreds sends the bearer token with every RPC.
type tokenCreds struct {
	token  string
	secure bool
}

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + t.token}, nil
}
func (t tokenCreds) RequireTransportSecurity() bool { return t.secure }

// Run ships until ctx ends. Every record stays in the buffer until the hub
// acknowledges it, so a restart resumes from the first unacknowledged one.
func (s *Shipper) Run(ctx context.Context) error {
	backoff := s.cfg.MinBackoff
	addr := 0
	var highestSent uint64
	for ctx.Err() == nil {
		target := s.cfg.Addresses[addr%len(s.cfg.Addresses)]
		progressed, err := s.session(ctx, target, &highestSent)
		if ctx.Err() != nil {
			return nil
		}
		code := status.Code(err)
		s.connErrors.WithLabelValues(code.String()).Inc()
		if progressed {
			backoff = s.cfg.MinBackoff
		}
		if code == codes.Unauthenticated || code == codes.PermissionDenied {
			// A wrong token will not fix itself; keep trying slowly so
			// data is shipped once an operator fixes it.
			backoff = s.cfg.MaxBackoff
		}
		if !progressed {
			addr++ // try the next hub
		}
		s.logger.Warn("stream to hub ended; reconnecting", "hub", target, "code", code.String(), "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		}
		backoff = min(2*backoff, s.cfg.MaxBackoff)
	}
	return nil
}

type inflight struct {
	seq     uint64
	samples int
	done    bool
}

// newSendBuffers returns the pool gRPC marshals batches into. gRPC's
// default pool's tiers jump from 32 KiB to 1 MiB, so each batch (a buffer
// record of 2,000 samples, about 100 KiB) took a 1 MiB buffer, and those in
// flight were 3.5 of the agent's 16 MB of heap; tiers at every power of two
// keep a batch's buffer under twice its size.
func newSendBuffers() (mem.BufferPool, error) {
	return mem.NewBinaryTieredBufferPool(8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25)
}

// session runs one stream. It reports whether any batch was acknowledged.
func (s *Shipper) session(ctx context.Context, target string, highestSent *uint64) (bool, error) {
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(s.creds),
		grpc.WithPerRPCCredentials(s.token),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(32<<20)),
		experimental.WithBufferPool(s.bufs),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
	)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := fpb.NewFederationClient(conn).Push(ctx, grpc.WaitForReady(false))
	if err != nil {
		return false, err
	}

	var (
		mu     sync.Mutex
		window []*inflight // in seq order
		slots  = make(chan struct{}, s.cfg.MaxInflight)
	)
	s.connected.Set(1)
	defer s.connected.Set(0)
	defer s.inflightGaug.Set(0)

	sendErr := make(chan error, 1)
	go func() {
		after := s.q.Acked()
		for {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				sendErr <- ctx.Err()
				return
			}
			rec, err := s.q.Next(ctx, after)
			if err != nil {
				sendErr <- err
				return
			}
			mu.Lock()
			window = append(window, &inflight{seq: rec.Seq, samples: rec.Samples})
			s.inflightGaug.Set(float64(len(window)))
			mu.Unlock()
			if rec.Seq <= *highestSent {
				s.retried.Inc()
			} else {
				*highestSent = rec.Seq
			}
			err = stream.Send(&fpb.Batch{
				AgentId: s.q.ID(), Seq: rec.Seq, Encoding: fpb.Encoding_ENCODING_SNAPPY_PROMPB,
				Payload: rec.Payload, Samples: uint32(rec.Samples),
			})
			if err != nil {
				sendErr <- err
				return
			}
			s.sent.Inc()
			s.sentSamples.Add(float64(rec.Samples))
			after = rec.Seq
		}
	}()

	progressed := false
	for {
		ack, err := stream.Recv()
		if err != nil {
			cancel()
			<-sendErr
			return progressed, err
		}
		code := codes.Code(ack.Code)
		for _, r := range ack.Rejections {
			s.rejected.WithLabelValues(r.Reason).Add(float64(r.Samples))
		}
		switch code {
		case codes.OK:
			if ack.Duplicate {
				s.duplicates.Inc()
			}
			if len(ack.Rejections) > 0 {
				s.logger.Warn("hub refused some samples", "seq", ack.Seq, "detail", ack.Message, "example", ack.Rejections[0].Example)
			}
		case codes.InvalidArgument:
			s.dropped.Inc()
			s.logger.Error("hub refused a batch as invalid; dropping it", "seq", ack.Seq, "detail", ack.Message)
		default:
			cancel()
			<-sendErr
			return progressed, status.Error(code, ack.Message)
		}
		mu.Lock()
		for _, w := range window {
			if w.seq == ack.Seq {
				w.done = true
			}
		}
		var upto uint64
		samples, n := 0, 0
		for len(window) > 0 && window[0].done {
			upto = window[0].seq
			samples += window[0].samples
			window = window[1:]
			n++
		}
		s.inflightGaug.Set(float64(len(window)))
		mu.Unlock()
		if n > 0 {
			if err := s.q.Ack(upto); err != nil {
				cancel()
				<-sendErr
				return progressed, fmt.Errorf("ack buffer up to %d: %w", upto, err)
			}
			progressed = true
			s.acked.Add(float64(n))
			s.ackedSamples.Add(float64(samples))
			for range n {
				<-slots
			}
		}
	}
}
