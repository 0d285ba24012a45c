package ship

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/bureauhub/bureauhub/agent/buffer"
	fpb "github.com/bureauhub/bureauhub/api/federationpb"
)

const testToken = "ship-test-token-0123456789"

// fakeHub hands every stream to the test, which answers as it likes.
type fakeHub struct {
	fpb.UnimplementedFederationServer
	streams chan fpb.Federation_PushServer
}

func (h *fakeHub) Push(s fpb.Federation_PushServer) error {
	md, _ := metadata.FromIncomingContext(s.Context())
	if v := md.Get("authorization"); len(v) != 1 || v[0] != "Bearer "+testToken {
		return status.Error(codes.Unauthenticated, "bad token")
	}
	h.streams <- s
	<-s.Context().Done()
	return nil
}

type rig struct {
	q       *buffer.Queue
	hub     *fakeHub
	reg     *prometheus.Registry
	shipper *Shipper
}

func newRig(t *testing.T) *rig {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hub := &fakeHub{streams: make(chan fpb.Federation_PushServer, 4)}
	srv := grpc.NewServer()
	fpb.RegisterFederationServer(srv, hub)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	q, err := buffer.Open(buffer.Config{Dir: filepath.Join(dir, "buf")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	cfg := Config{Addresses: []string{lis.Addr().String()}, TokenFile: tok, InsecurePlaintext: true,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s, err := New(cfg, q, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &rig{q: q, hub: hub, reg: reg, shipper: s}
}

func (r *rig) stream(t *testing.T) fpb.Federation_PushServer {
	t.Helper()
	select {
	case s := <-r.hub.streams:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("the agent opened no stream")
		return nil
	}
}

func recvBatch(t *testing.T, s fpb.Federation_PushServer) *fpb.Batch {
	t.Helper()
	b, err := s.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return b
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAcksAdvanceOverContiguousPrefix: acks may come in any order, but the
// buffer is acknowledged only up to the first batch not yet stored.
func TestAcksAdvanceOverContiguousPrefix(t *testing.T) {
	r := newRig(t)
	for range 3 {
		if _, err := r.q.Append([]byte("x"), 10); err != nil {
			t.Fatal(err)
		}
	}
	s := r.stream(t)
	var seqs []uint64
	for range 3 {
		seqs = append(seqs, recvBatch(t, s).Seq)
	}
	ok := func(seq uint64) {
		if err := s.Send(&fpb.Ack{Seq: seq, Code: uint32(codes.OK)}); err != nil {
			t.Fatal(err)
		}
	}
	ok(seqs[2])
	ok(seqs[0])
	eventually(t, "ack of the first batch", func() bool { return r.q.Acked() == seqs[0] })
	if got := r.q.Acked(); got != seqs[0] {
		t.Fatalf("acked %d after acks for %d and %d, want %d", got, seqs[2], seqs[0], seqs[0])
	}
	ok(seqs[1])
	eventually(t, "all three acknowledged", func() bool { return r.q.Acked() == seqs[2] })
	if n := testutil.ToFloat64(r.shipper.ackedSamples); n != 30 {
		t.Errorf("acked samples %v, want 30", n)
	}
}

// TestInvalidBatchIsDropped: a batch the hub can never accept is removed
// from the buffer and counted, not retried forever.
func TestInvalidBatchIsDropped(t *testing.T) {
	r := newRig(t)
	if _, err := r.q.Append([]byte("bad"), 5); err != nil {
		t.Fatal(err)
	}
	s := r.stream(t)
	b := recvBatch(t, s)
	if err := s.Send(&fpb.Ack{Seq: b.Seq, Code: uint32(codes.InvalidArgument), Message: "malformed_batch: test",
		Rejections: []*fpb.Rejection{{Reason: "malformed_batch", Samples: 5}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the invalid batch to leave the buffer", func() bool { return r.q.Acked() == b.Seq })
	if n := testutil.ToFloat64(r.shipper.dropped); n != 1 {
		t.Errorf("invalid batches %v, want 1", n)
	}
	if n := testutil.ToFloat64(r.shipper.rejected.WithLabelValues("malformed_batch")); n != 5 {
		t.Errorf("rejected samples %v, want 5", n)
	}
}

// TestRetryableRefusalResends: a batch refused as retryable stays in the
// buffer and is sent again on a new stream.
func TestRetryableRefusalResends(t *testing.T) {
	r := newRig(t)
	if _, err := r.q.Append([]byte("x"), 7); err != nil {
		t.Fatal(err)
	}
	s := r.stream(t)
	b := recvBatch(t, s)
	if err := s.Send(&fpb.Ack{Seq: b.Seq, Code: uint32(codes.ResourceExhausted), Message: "rate_limited"}); err != nil {
		t.Fatal(err)
	}
	s2 := r.stream(t)
	b2 := recvBatch(t, s2)
	if b2.Seq != b.Seq || string(b2.Payload) != "x" {
		t.Fatalf("resent batch %d %q, want %d %q", b2.Seq, b2.Payload, b.Seq, "x")
	}
	if r.q.Acked() != 0 {
		t.Fatalf("buffer acknowledged %d before the hub stored anything", r.q.Acked())
	}
	if err := s2.Send(&fpb.Ack{Seq: b2.Seq, Code: uint32(codes.OK)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the resent batch acknowledged", func() bool { return r.q.Acked() == b.Seq })
	if n := testutil.ToFloat64(r.shipper.retried); n < 1 {
		t.Errorf("retried batches %v, want at least 1", n)
	}
}

// TestConfigValidate checks that errors name the field.
func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no hubs", Config{TokenFile: "x"}, "hub.addresses"},
		{"no token", Config{Addresses: []string{"a:1"}}, "hub.token_file"},
		{"missing token file", Config{Addresses: []string{"a:1"}, TokenFile: "/nonexistent"}, "hub.token_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.SetDefaults()
			err := tc.cfg.Validate()
			if err == nil || len(err.Error()) < len(tc.want) || err.Error()[:len(tc.want)] != tc.want {
				t.Errorf("Validate() = %v, want an error starting with %q", err, tc.want)
			}
		})
	}
}
