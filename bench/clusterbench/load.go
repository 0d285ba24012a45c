package clusterbench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	fpb "github.com/bureauhub/bureauhub/api/federationpb"
	"github.com/bureauhub/bureauhub/bench/ingest"
)

// bearer sends the tenant's token with every RPC, as the agent does.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return true }

// dial connects to a hub's gRPC as an agent of tenant, over TLS.
func (r *runner) dial(addr, tenant string) (*grpc.ClientConn, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(r.caPEM) {
		return nil, errors.New("no CA certificate")
	}
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12})),
		grpc.WithPerRPCCredentials(bearer(tokenOf(tenant))),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(32<<20)),
	)
}

// push sends the batches next returns on one Push stream of agentID, with
// up to inflight awaiting their Ack, numbering them from *seq+1; stored
// is told of every batch acknowledged as stored. It returns once next is
// done and every ack arrived, or drain after next is done.
func (r *runner) push(ctx context.Context, addr, tenant, agentID string, seq *uint64, inflight int, drain time.Duration,
	next func() (ingest.Batch, bool), stored func(samples int)) error {
	conn, err := r.dial(addr, tenant)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	// The stream outlives ctx by the drain time, so that batches in flight
	// when the load stops are still acknowledged.
	streamCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stream, err := fpb.NewFederationClient(conn).Push(streamCtx)
	if err != nil {
		return fmt.Errorf("open push stream to %s: %w", addr, err)
	}
	var mu sync.Mutex
	outstanding := map[uint64]int{}
	var firstErr error
	slots := make(chan struct{}, inflight)
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
			_, ok := outstanding[ack.Seq]
			delete(outstanding, ack.Seq)
			switch {
			case !ok:
				firstErr = cmpErr(firstErr, fmt.Errorf("ack for unknown seq %d", ack.Seq))
			case codes.Code(ack.Code) != codes.OK:
				firstErr = cmpErr(firstErr, fmt.Errorf("ack %s: %s", codes.Code(ack.Code), ack.Message))
			case ack.Duplicate:
				firstErr = cmpErr(firstErr, errors.New("ack: duplicate"))
			default:
				stored(int(ack.AcceptedSamples))
			}
			mu.Unlock()
			<-slots
		}
	}()
	var sendErr error
loop:
	for {
		select {
		case slots <- struct{}{}:
		case err := <-recvDone:
			if err == nil {
				err = errors.New("hub ended the stream")
			}
			return fmt.Errorf("push stream to %s: %w", addr, err)
		}
		b, ok := next()
		if !ok {
			<-slots
			break loop
		}
		*seq++
		mu.Lock()
		outstanding[*seq] = b.Samples
		mu.Unlock()
		if err := stream.Send(&fpb.Batch{AgentId: agentID, Seq: *seq, Encoding: fpb.Encoding_ENCODING_SNAPPY_PROMPB,
			Payload: b.Payload, Samples: uint32(b.Samples)}); err != nil {
			sendErr = err
			break
		}
	}
	if sendErr == nil {
		sendErr = stream.CloseSend()
	}
	timer := time.NewTimer(drain)
	defer timer.Stop()
	select {
	case err := <-recvDone:
		if err != nil {
			return fmt.Errorf("push stream to %s: %w", addr, err)
		}
	case <-timer.C:
		mu.Lock()
		n := len(outstanding)
		mu.Unlock()
		return fmt.Errorf("push stream to %s: %d batches unacknowledged %v after the load stopped", addr, n, drain)
	}
	if sendErr != nil {
		return fmt.Errorf("send batch to %s: %w", addr, sendErr)
	}
	mu.Lock()
	defer mu.Unlock()
	return firstErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// IngestResult is one ingest window on the measured hub.
type IngestResult struct {
	SamplesPerSecond float64 `json:"samples_per_second"`
	AckedSamples     int64   `json:"acked_samples"`
	// Errors counts failed streams or batches by message.
	Errors map[string]int `json:"errors,omitempty"`
}

// ingestLoad sends the ingest load as tenant to addr as fast as it is
// acknowledged for warmup+window and counts the samples acknowledged
// within the window.
func (r *runner) ingestLoad(ctx context.Context, addr, tenant string, runID int) (IngestResult, error) {
	cfg := r.cfg
	load := ingest.NewLoad(r.loadSet, cfg.Streams, r.loadBaseMs, 4)
	genCtx, stopGen := context.WithCancel(ctx)
	defer stopGen()
	t0 := time.Now()
	from, to := t0.Add(cfg.Warmup), t0.Add(cfg.Warmup+cfg.Window)
	var inWindow atomic.Int64
	var mu sync.Mutex
	errs := map[string]int{}
	var wg sync.WaitGroup
	for i := range cfg.Streams {
		part := load.Partition(i)
		wg.Go(func() {
			var seq uint64
			agentID := fmt.Sprintf("clusterbench-load-%d-%d", runID, i)
			err := r.push(ctx, addr, tenant, agentID, &seq, cfg.Inflight, time.Minute,
				func() (ingest.Batch, bool) { return part.Next(genCtx, cfg.BatchSize) },
				func(n int) {
					if now := time.Now(); !now.Before(from) && now.Before(to) {
						inWindow.Add(int64(n))
					}
				})
			if err != nil {
				msg := err.Error()
				if len(msg) > 120 {
					msg = msg[:120]
				}
				mu.Lock()
				errs[msg]++
				mu.Unlock()
			}
		})
	}
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(to)):
	}
	load.Stop()
	stopGen()
	wg.Wait()
	if ctx.Err() != nil {
		return IngestResult{}, ctx.Err()
	}
	res := IngestResult{AckedSamples: inWindow.Load(), SamplesPerSecond: float64(inWindow.Load()) / cfg.Window.Seconds()}
	if len(errs) > 0 {
		res.Errors = errs
	}
	return res, nil
}

// feeder keeps the bureaus' series current, as their agents would: one
// scrape round every 15 s of wall time, rounds missed while no hub
// answered sent late (the first call sends the history).
type feeder struct {
	r        *runner
	tenants  []string
	parts    map[string]*ingest.Partition
	seq      map[string]*uint64
	baseMs   int64
	next     int // the next round to send
	series   int
	mu       sync.Mutex
	failures int
	lastErr  error
}

func newFeeder(r *runner, tenants []string, series int, history time.Duration) *feeder {
	set := ingest.NewSeriesSet(series)
	rounds := int(history / (ingest.ScrapeIntervalMillis * time.Millisecond))
	base := time.Now().Add(-time.Duration(rounds+1) * ingest.ScrapeIntervalMillis * time.Millisecond).UnixMilli()
	f := &feeder{r: r, tenants: tenants, parts: map[string]*ingest.Partition{}, seq: map[string]*uint64{}, baseMs: base, series: series}
	for _, t := range tenants {
		f.parts[t] = ingest.NewLoad(set, 1, base, 1<<30).Partition(0)
		f.seq[t] = new(uint64)
	}
	return f
}

// catchUp sends every round whose scrape times have all passed to the
// first of addrs that takes them.
func (f *feeder) catchUp(ctx context.Context, addrs []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	due := int((time.Now().UnixMilli()-f.baseMs)/ingest.ScrapeIntervalMillis) - 1
	n := due - f.next
	if n <= 0 {
		return nil
	}
	var errs []error
	for _, t := range f.tenants {
		sent := 0
		var err error
		for _, addr := range addrs {
			part := f.parts[t]
			err = f.r.push(ctx, addr, t, "clusterbench-live-"+t, f.seq[t], 16, 30*time.Second, func() (ingest.Batch, bool) {
				if sent == n {
					return ingest.Batch{}, false
				}
				sent++
				return part.Next(ctx, f.series)
			}, func(int) {})
			if err == nil {
				break
			}
		}
		if err != nil {
			// Rounds taken from the partition are lost: the bureau's
			// data has a gap, as after an agent's buffer overflowed.
			errs = append(errs, fmt.Errorf("bureau %s: %w", t, err))
		}
	}
	f.next = due
	if err := errors.Join(errs...); err != nil {
		f.failures++
		f.lastErr = err
		return err
	}
	return nil
}

// run calls catchUp every few seconds with the addresses addrs returns,
// until ctx ends.
func (f *feeder) run(ctx context.Context, addrs func() []string) {
	for {
		_ = f.catchUp(ctx, addrs())
		select {
		case <-ctx.Done():
			return
		case <-time.After(3 * time.Second):
		}
	}
}
