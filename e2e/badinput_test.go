package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	fpb "github.com/bureauhub/bureauhub/api/federationpb"
)

// rawClient is a federation client that sends whatever the test builds.
type rawClient struct {
	stream fpb.Federation_PushClient
	seq    uint64
	agent  string // the batches' agent_id; "raw-client" when empty
}

func (e *env) dial(t *testing.T, token string) fpb.Federation_PushClient {
	t.Helper()
	s, err := e.openStream(t, token)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openStream opens a federation stream to the hub with token; it is safe
// to call from any goroutine.
func (e *env) openStream(t *testing.T, token string) (fpb.Federation_PushClient, error) {
	pem, err := os.ReadFile(e.certs.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	conn, err := grpc.NewClient(e.hubAddr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost"})))
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token))
	t.Cleanup(cancel)
	return fpb.NewFederationClient(conn).Push(ctx)
}

func (c *rawClient) send(t *testing.T, payload []byte, samples int) (*fpb.Ack, error) {
	t.Helper()
	c.seq++
	agent := c.agent
	if agent == "" {
		agent = "raw-client"
	}
	if err := c.stream.Send(&fpb.Batch{AgentId: agent, Seq: c.seq, Encoding: fpb.Encoding_ENCODING_SNAPPY_PROMPB,
		Payload: payload, Samples: uint32(samples)}); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	// On io.EOF the server has already ended the stream (e.g. refused the
	// token); Recv returns the status it ended it with.
	return c.stream.Recv()
}

func encode(t *testing.T, series ...prompb.TimeSeries) []byte {
	t.Helper()
	raw, err := (&prompb.WriteRequest{Timeseries: series}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, raw)
}

func series(name string, ts int64, extra ...string) prompb.TimeSeries {
	ls := []prompb.Label{{Name: "__name__", Value: name}}
	for i := 0; i+1 < len(extra); i += 2 {
		ls = append(ls, prompb.Label{Name: extra[i], Value: extra[i+1]})
	}
	return prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Timestamp: ts, Value: 1}}}
}

func readToken(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestBadInput sends every kind of bad data a broken or hostile agent could
// send; each gets its own clear refusal, and a good tenant's traffic in the
// same run is stored completely.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	e.hubExtra = `  tenant_limits:
    health: {max_active_series: 100}
    transport: {samples_per_second: 1000}
`
	e.startHub()
	port := freePort(t)
	a := e.startAgent("agent", e.agentConfig("consular", "vm-1", port, filepath.Join(e.dir, "buf"), "host_metrics: {enabled: false}\n"), port)
	good := newPusher(a.url)
	ctx, cancel := context.WithCancel(context.Background())
	wait := good.steady(ctx, t, "e2e_good", 50, 20*time.Millisecond)

	now := time.Now().UnixMilli()
	health := &rawClient{stream: e.dial(t, readToken(t, e.tokens["health"]))}
	for _, tc := range []struct {
		name       string
		payload    []byte
		samples    int
		wantCode   codes.Code
		wantReason string
		accepted   uint32
	}{
		{"snappy garbage", []byte("definitely not snappy"), 3, codes.InvalidArgument, "malformed_batch", 0},
		{"protobuf garbage", snappy.Encode(nil, []byte{0xff, 0xff, 0xff, 0x0f, 0x01}), 3, codes.InvalidArgument, "malformed_batch", 0},
		{"invalid label name", encode(t, series("e2e_ok", now), series("e2e_bad", now, "bad-name", "x")), 2, codes.OK, "invalid_label_name", 1},
		{"invalid metric name", encode(t, series("1bad", now)), 1, codes.InvalidArgument, "invalid_metric_name", 0},
		{"no metric name", encode(t, prompb.TimeSeries{Labels: []prompb.Label{{Name: "a", Value: "b"}}, Samples: []prompb.Sample{{Timestamp: now, Value: 1}}}), 1, codes.InvalidArgument, "missing_metric_name", 0},
		{"far future", encode(t, series("e2e_future", now+int64(time.Hour/time.Millisecond))), 1, codes.InvalidArgument, "sample_too_far_in_future", 0},
		{"too old", encode(t, series("e2e_old", now-int64(30*24*time.Hour/time.Millisecond))), 1, codes.InvalidArgument, "sample_too_old", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ack, err := health.send(t, tc.payload, tc.samples)
			if err != nil {
				t.Fatalf("stream broke: %v", err)
			}
			if codes.Code(ack.Code) != tc.wantCode {
				t.Errorf("code %v, want %v (%s)", codes.Code(ack.Code), tc.wantCode, ack.Message)
			}
			if !strings.Contains(ack.Message, tc.wantReason) {
				t.Errorf("message %q does not name %s", ack.Message, tc.wantReason)
			}
			if ack.AcceptedSamples != tc.accepted {
				t.Errorf("accepted %d, want %d", ack.AcceptedSamples, tc.accepted)
			}
		})
	}
	t.Run("cardinality burst", func(t *testing.T) {
		var burst []prompb.TimeSeries
		for i := range 500 {
			burst = append(burst, series("e2e_burst", now, "id", fmt.Sprint(i)))
		}
		ack, err := health.send(t, encode(t, burst...), 500)
		if err != nil {
			t.Fatal(err)
		}
		// One series (e2e_ok) is already active for this tenant.
		if ack.AcceptedSamples != 99 || len(ack.Rejections) != 1 || ack.Rejections[0].Reason != "series_limit" || ack.Rejections[0].Samples != 401 {
			t.Errorf("burst ack: accepted %d, rejections %v", ack.AcceptedSamples, ack.Rejections)
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		c := &rawClient{stream: e.dial(t, "not-a-real-token-at-all")}
		_, err := c.send(t, encode(t, series("e2e_x", now)), 1)
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("got %v, want Unauthenticated", err)
		}
	})
	t.Run("rate limit", func(t *testing.T) {
		c := &rawClient{stream: e.dial(t, readToken(t, e.tokens["transport"]))}
		var big []prompb.TimeSeries
		for i := range 2001 {
			big = append(big, series("e2e_rate", now, "id", fmt.Sprint(i)))
		}
		var err error
		for range 3 {
			if _, err = c.send(t, encode(t, big...), len(big)); err != nil {
				break
			}
		}
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "rate_limited") {
			t.Errorf("got %v, want ResourceExhausted naming rate_limited", err)
		}
	})

	cancel()
	wait()
	e.waitExact(good, "consular", "e2e_good", 60*time.Second)
	for _, metric := range []string{"e2e_bad", "e2e_future", "e2e_old", "1bad"} {
		if n, _ := e.stored("health", metric); n != 0 {
			t.Errorf("%s: %d refused samples were stored", metric, n)
		}
	}
	if n, _ := e.stored("health", "e2e_ok"); n != 1 {
		t.Errorf("e2e_ok: %d samples stored, want the 1 valid one", n)
	}
	if n := e.queryUint("SELECT uniqExact(fingerprint) FROM {db}.series WHERE tenant = 'health' AND metric_name = 'e2e_burst'"); n != 99 {
		t.Errorf("burst: %d series stored, want 99", n)
	}
	for reason, want := range map[string]float64{"malformed_batch": 6, "invalid_label_name": 1, "series_limit": 401, "sample_too_far_in_future": 1} {
		if got := metricValue(t, e.hubURL(), "bureauhub_ingest_rejected_samples_total", map[string]string{"tenant": "health", "reason": reason}); got != want {
			t.Errorf("rejected{health,%s} = %v, want %v", reason, got, want)
		}
	}
	if got := metricValue(t, e.hubURL(), "bureauhub_ingest_rejected_samples_total", map[string]string{"reason": "unauthenticated"}); got < 1 {
		t.Errorf("unauthenticated rejections not counted")
	}
}
