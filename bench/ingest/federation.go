package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	fpb "github.com/bureauhub/bureauhub/api/federationpb"
)

// federationSender pushes batches to a hub as agents do: one TLS connection
// and one Push stream per agent, each with its own agent_id, up to inflight
// batches awaiting their Ack.
type federationSender struct {
	addr       string
	serverName string
	caPEM      []byte
	token      string
	agentIDs   []string // one stream per id
	inflight   int
	batchSize  int
	drain      time.Duration
}

// bearer sends the tenant's token with every RPC, as the agent does.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return true }

// run sends from partition i on stream i until the load stops, then waits
// (at most s.drain) for the outstanding acks.
func (s *federationSender) run(ctx context.Context, load *Load, m *meter) {
	var wg sync.WaitGroup
	for i, id := range s.agentIDs {
		wg.Go(func() {
			if err := s.stream(ctx, id, load.Partition(i), m); err != nil {
				m.fail(err.Error())
			}
		})
	}
	wg.Wait()
}

func (s *federationSender) stream(ctx context.Context, agentID string, part *Partition, m *meter) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.caPEM) {
		return errors.New("no CA certificate")
	}
	conn, err := grpc.NewClient(s.addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: s.serverName, MinVersion: tls.VersionTLS12})),
		grpc.WithPerRPCCredentials(bearer(s.token)),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(32<<20)),
	)
	if err != nil {
		return fmt.Errorf("dial hub: %w", err)
	}
	defer conn.Close()
	// The stream outlives ctx by the drain time, so that batches in flight
	// when the load stops are still acknowledged.
	streamCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stream, err := fpb.NewFederationClient(conn).Push(streamCtx)
	if err != nil {
		return fmt.Errorf("open push stream: %w", err)
	}

	type sentBatch struct {
		samples int
		at      time.Time
	}
	var mu sync.Mutex
	outstanding := map[uint64]sentBatch{}
	slots := make(chan struct{}, s.inflight)
	recvDone := make(chan error, 1)
	go func() {
		for {
			ack, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				recvDone <- err
				return
			}
			mu.Lock()
			b, ok := outstanding[ack.Seq]
			delete(outstanding, ack.Seq)
			mu.Unlock()
			if !ok {
				m.fail(fmt.Sprintf("ack for unknown seq %d", ack.Seq))
				continue
			}
			switch {
			case codes.Code(ack.Code) != codes.OK:
				m.fail(fmt.Sprintf("ack %s: %s", codes.Code(ack.Code), ack.Message))
			case ack.Duplicate:
				m.fail("ack: duplicate")
			default:
				m.acked(b.samples, b.samples-int(ack.AcceptedSamples), b.at)
			}
			<-slots
		}
	}()

	var seq uint64
	var sendErr error
	for {
		select {
		case slots <- struct{}{}:
		case err := <-recvDone:
			if err == nil {
				err = errors.New("hub ended the stream")
			}
			return fmt.Errorf("push stream: %w", err)
		}
		b, ok := part.Next(ctx, s.batchSize)
		if !ok {
			<-slots
			break
		}
		seq++
		mu.Lock()
		outstanding[seq] = sentBatch{b.Samples, time.Now()}
		mu.Unlock()
		m.sent.Add(int64(b.Samples))
		err := stream.Send(&fpb.Batch{AgentId: agentID, Seq: seq, Encoding: fpb.Encoding_ENCODING_SNAPPY_PROMPB, Payload: b.Payload, Samples: uint32(b.Samples)})
		if err != nil {
			sendErr = err
			break
		}
	}
	if sendErr == nil {
		sendErr = stream.CloseSend()
	}
	timer := time.NewTimer(s.drain)
	defer timer.Stop()
	select {
	case err := <-recvDone:
		if err != nil {
			return fmt.Errorf("push stream: %w", err)
		}
	case <-timer.C:
		cancel()
		mu.Lock()
		n := len(outstanding)
		mu.Unlock()
		return fmt.Errorf("push stream: %d batches unacknowledged %v after the load stopped", n, s.drain)
	}
	if sendErr != nil {
		return fmt.Errorf("send batch: %w", sendErr)
	}
	return nil
}
