package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	fpb "github.com/bureauhub/bureauhub/api/federationpb"
	"github.com/bureauhub/bureauhub/hub/auth"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
)

// Store is what ingestion needs from storage.
type Store interface {
	BlockWriter
	LoadProgress(ctx context.Context) (map[clickhouse.AgentKey]uint64, error)
	// HasSample reports whether one sample is stored (see storedBefore).
	HasSample(ctx context.Context, tenant string, fp uint64, ts int64) (bool, error)
}

// maxSnappyRatio bounds a snappy block's expansion (see admit).
const maxSnappyRatio = 24

// maxInflightPerStream bounds the batches of one stream awaiting storage.
const maxInflightPerStream = 64

// Service implements the Federation gRPC service.
type Service struct {
	fpb.UnimplementedFederationServer

	cfg            Config
	delivered      DeliveryFunc
	stored         func(*clickhouse.Block)
	sharedProgress AgentProgressLoader
	store          Store
	authn          *auth.Authenticator
	logger         *slog.Logger
	m              *metrics

	ready    chan struct{} // closed once progress is loaded
	stopping chan struct{} // closed when Run's ctx ends
	tracker  *tracker
	writer   *writer

	tenantsMu sync.Mutex
	tenants   map[string]*tenantState

	// decoders pools decode buffers; what an item keeps is copied out.
	decoders sync.Pool

	streams sync.WaitGroup
}

// New builds the service; Run starts it. cfg must have been validated.
func New(cfg Config, store Store, authn *auth.Authenticator, logger *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	m, err := newMetrics(reg, cfg.QueueSamples)
	if err != nil {
		return nil, fmt.Errorf("register ingest metrics: %w", err)
	}
	return &Service{
		cfg: cfg, store: store, authn: authn, logger: logger, m: m,
		ready:    make(chan struct{}),
		stopping: make(chan struct{}),
		tenants:  make(map[string]*tenantState),
		decoders: sync.Pool{New: func() any { return &decoder{} }},
	}, nil
}

// decoder is a reusable snappy buffer and decoded request.
type decoder struct {
	raw []byte
	req wireRequest
}

// Register adds the service to a gRPC server.
func (s *Service) Register(srv *grpc.Server) { fpb.RegisterFederationServer(srv, s) }

// Run loads agent progress (retrying while ClickHouse is unreachable), then
// writes until ctx ends. On shutdown it stops reading from streams, writes
// and acknowledges what it has accepted (within drainTimeout), and closes
// the streams; agents resend whatever was not acknowledged.
func (s *Service) Run(ctx context.Context, drainTimeout time.Duration) error {
	progress, err := s.loadProgress(ctx)
	if err != nil {
		close(s.stopping)
		return err
	}
	s.tracker = newTracker(progress)
	drainCtx, cancelDrain := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDrain()
	s.writer = newWriter(&s.cfg, s.store, s.tracker, s.logger, s.m)
	s.writer.stored = s.stored
	var flushers sync.WaitGroup
	for range s.cfg.Writers {
		flushers.Go(func() { s.writer.run(drainCtx) })
	}
	close(s.ready)
	s.logger.Info("ingest ready", "agents_known", len(progress))

	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-sweep.C:
			s.sweep(time.Now())
		}
	}
	close(s.stopping)
	s.writer.close()
	timer := time.AfterFunc(drainTimeout, cancelDrain)
	defer timer.Stop()
	flushers.Wait()
	s.streams.Wait()
	return nil
}

func (s *Service) loadProgress(ctx context.Context) (map[clickhouse.AgentKey]uint64, error) {
	backoff := 200 * time.Millisecond
	for {
		p, err := s.store.LoadProgress(ctx)
		if err == nil {
			return p, nil
		}
		s.logger.Warn("load agent progress from clickhouse failed; retrying", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("load agent progress: %w", err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *Service) tenant(name string) *tenantState {
	s.tenantsMu.Lock()
	defer s.tenantsMu.Unlock()
	ts := s.tenants[name]
	if ts == nil {
		ts = newTenantState(s.cfg.limitsFor(name))
		s.tenants[name] = ts
	}
	return ts
}

func (s *Service) sweep(now time.Time) {
	cutoff := now.Add(-s.cfg.ActiveSeriesWindow).Unix()
	s.tenantsMu.Lock()
	names := make([]string, 0, len(s.tenants))
	states := make([]*tenantState, 0, len(s.tenants))
	for n, ts := range s.tenants {
		names = append(names, n)
		states = append(states, ts)
	}
	s.tenantsMu.Unlock()
	for i, ts := range states {
		s.m.activeSeries.WithLabelValues(names[i]).Set(float64(ts.sweep(cutoff)))
	}
}

// AuthStreamInterceptor authenticates each stream by its bearer token and
// puts the principal in the stream's context.
func (s *Service) AuthStreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	md, _ := metadata.FromIncomingContext(ss.Context())
	var tok string
	if v := md.Get("authorization"); len(v) > 0 {
		tok = auth.BearerToken(v[0])
	}
	p, err := s.authn.Authenticate(tok)
	if err != nil {
		s.m.rejected.WithLabelValues("", ReasonUnauthenticated).Inc()
		return status.Error(codes.Unauthenticated, "unauthenticated: missing or unknown bearer token")
	}
	return handler(srv, &principalStream{ServerStream: ss, ctx: auth.WithPrincipal(ss.Context(), p)})
}

type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (p *principalStream) Context() context.Context { return p.ctx }

// Push implements the federation stream: one Ack per Batch, sent once the
// batch is stored or refused.
func (s *Service) Push(stream fpb.Federation_PushServer) error {
	ctx := stream.Context()
	principal, ok := auth.FromContext(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "unauthenticated: no principal on stream")
	}
	select {
	case <-s.ready:
	default:
		return status.Error(codes.Unavailable, "hub is starting: agent progress not loaded yet")
	}
	select {
	case <-s.stopping:
		return status.Error(codes.Unavailable, "hub is stopping")
	default:
	}
	s.streams.Add(1)
	defer s.streams.Done()
	s.m.streams.Inc()
	defer s.m.streams.Dec()

	acks := make(chan *fpb.Ack, maxInflightPerStream)
	sendErr := make(chan error, 1)
	go func() {
		var err error
		for a := range acks {
			if err == nil {
				err = stream.Send(a)
			}
		}
		sendErr <- err
	}()
	var inflight sync.WaitGroup
	slots := make(chan struct{}, maxInflightPerStream)
	finish := func(err error) error {
		inflight.Wait()
		close(acks)
		if serr := <-sendErr; err == nil && serr != nil {
			err = serr
		}
		return err
	}

	type recvd struct {
		b   *fpb.Batch
		err error
	}
	in := make(chan recvd)
	go func() {
		for {
			b, err := stream.Recv()
			select {
			case in <- recvd{b, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	first := true
	// probing: this stream's batches may have been stored by a hub that
	// died before recording its progress (see storedBefore); checked
	// until the first batch that was not.
	probing := true
	for {
		var r recvd
		select {
		case <-s.stopping:
			return finish(status.Error(codes.Unavailable, "hub is stopping; reconnect"))
		case <-ctx.Done():
			return finish(ctx.Err())
		case r = <-in:
		}
		if r.err != nil {
			return finish(nil) // io.EOF or the agent went away
		}
		b := r.b
		if b.AgentId == "" || len(b.AgentId) > 128 {
			acks <- &fpb.Ack{Seq: b.Seq, Code: uint32(codes.InvalidArgument), Message: "agent_id: must be 1 to 128 bytes"}
			continue
		}
		key := clickhouse.AgentKey{Tenant: principal.Tenant, AgentID: b.AgentId}
		if first {
			if s.sharedProgress != nil {
				// Another hub may have stored this agent's batches since
				// this hub last saw it (failover): take its progress.
				if seq, err := s.sharedProgress.LoadAgentProgress(ctx, key); err != nil {
					return finish(status.Error(codes.Unavailable, "load agent progress: "+err.Error()))
				} else if seq > 0 {
					s.tracker.observeStored(key, seq)
				}
			}
			s.tracker.resume(key, b.Seq)
			first = false
		}
		s.m.received.WithLabelValues(principal.Tenant).Add(float64(b.Samples))
		mine, wait, dup := s.tracker.begin(key, b.Seq)
		switch {
		case dup:
			s.m.batches.WithLabelValues(principal.Tenant, "duplicate").Inc()
			s.m.duplicates.WithLabelValues(principal.Tenant).Add(float64(b.Samples))
			acks <- &fpb.Ack{Seq: b.Seq, Code: uint32(codes.OK), Duplicate: true}
			continue
		case wait != nil:
			slots <- struct{}{}
			inflight.Go(func() {
				defer func() { <-slots }()
				<-wait.done
				acks <- ackFor(b.Seq, wait.err, true)
			})
			continue
		}
		it, ack, streamErr := s.admit(ctx, principal.Tenant, b)
		if streamErr != nil {
			s.tracker.complete([]*pending{mine}, streamErr)
			release([]*pending{mine})
			return finish(streamErr)
		}
		if it == nil {
			// Nothing to store: final, so progress may pass this seq.
			s.tracker.complete([]*pending{mine}, nil)
			release([]*pending{mine})
			acks <- ack
			continue
		}
		if probing {
			stored, err := s.storedBefore(ctx, it)
			if err != nil {
				s.tracker.complete([]*pending{mine}, err)
				release([]*pending{mine})
				return finish(status.Error(codes.Unavailable, "check for a batch stored before its acknowledgement was lost: "+err.Error()))
			}
			if stored {
				s.tracker.complete([]*pending{mine}, nil)
				release([]*pending{mine})
				s.m.batches.WithLabelValues(principal.Tenant, "stored_before").Inc()
				s.m.duplicates.WithLabelValues(principal.Tenant).Add(float64(b.Samples))
				acks <- &fpb.Ack{Seq: b.Seq, Code: uint32(codes.OK), Duplicate: true}
				continue
			}
			probing = false
		}
		if err := s.writer.enqueue(ctx, it, mine, nil); err != nil {
			s.forgetSeriesRows(it)
			s.tracker.complete([]*pending{mine}, err)
			release([]*pending{mine})
			return finish(status.Error(codes.Unavailable, "hub is stopping; reconnect"))
		}
		newest := maxTimestamp(it.ts)
		slots <- struct{}{}
		inflight.Go(func() {
			defer func() { <-slots }()
			<-mine.done
			if mine.err != nil {
				s.m.batches.WithLabelValues(principal.Tenant, "failed").Inc()
				acks <- ackFor(b.Seq, mine.err, false)
				return
			}
			s.m.batches.WithLabelValues(principal.Tenant, "stored").Inc()
			if s.delivered != nil {
				s.delivered(principal.Tenant, b.AgentId, newest, time.Now())
			}
			acks <- ack
		})
	}
}

// storedBefore reports whether a resent batch is already stored: a hub
// killed after its samples INSERT returned and before its agent_progress
// INSERT did (docs/storage.md) stored it without recording its seq. Its
// first and last samples are looked up by primary key; both present means
// the batch's one INSERT completed (a hub's death cannot cut a block that
// ClickHouse received whole). Only the first batches of a stream are
// checked, until one is not stored: the window holds only batches whose
// acknowledgements were lost when their stream broke.
func (s *Service) storedBefore(ctx context.Context, it *item) (bool, error) {
	if len(it.fps) == 0 {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, i := range []int{0, len(it.fps) - 1} {
		ok, err := s.store.HasSample(ctx, it.tenant, it.fps[i], it.ts[i])
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

func maxTimestamp(ts []int64) int64 {
	var m int64
	for _, t := range ts {
		m = max(m, t)
	}
	return m
}

// DeliveryFunc is told of every batch an agent delivered and the hub
// stored: the tenant, the agent's ID, the batch's newest sample timestamp
// (milliseconds) and when it was stored. It must not block.
type DeliveryFunc func(tenant, agentID string, newestMs int64, stored time.Time)

// AgentProgressLoader reads one agent's stored progress from the shared
// store; *clickhouse.Store implements it.
type AgentProgressLoader interface {
	LoadAgentProgress(ctx context.Context, k clickhouse.AgentKey) (uint64, error)
}

// ShareProgress makes the service read an agent's progress from the shared
// store whenever the agent opens a stream, so deduplication holds across
// the hubs of a cluster. Call it before Run.
func (s *Service) ShareProgress(l AgentProgressLoader) { s.sharedProgress = l }

// OnDelivered sets the function told of stored batches (the hub's site
// watcher). Call it before Run.
func (s *Service) OnDelivered(f DeliveryFunc) { s.delivered = f }

// OnStored sets the function given every block once ClickHouse has stored
// it, before the writers are acknowledged (the hub's head). It must not
// keep b, which is reused. Call it before Run.
func (s *Service) OnStored(f func(b *clickhouse.Block)) { s.stored = f }

func ackFor(seq uint64, err error, dup bool) *fpb.Ack {
	if err != nil {
		return &fpb.Ack{Seq: seq, Code: uint32(codes.Unavailable), Message: "not stored: " + err.Error()}
	}
	return &fpb.Ack{Seq: seq, Code: uint32(codes.OK), Duplicate: dup}
}

// admit decodes and validates b. It returns the item to store (nil when
// nothing is to be stored) and the ack to send once it is stored; or a
// status error that ends the stream (the agent backs off and resends).
func (s *Service) admit(_ context.Context, tenant string, b *fpb.Batch) (*item, *fpb.Ack, error) {
	invalid := func(reason, format string, args ...any) (*item, *fpb.Ack, error) {
		s.m.rejected.WithLabelValues(tenant, reason).Add(float64(b.Samples))
		s.m.batches.WithLabelValues(tenant, "invalid").Inc()
		msg := reason + ": " + fmt.Sprintf(format, args...)
		return nil, &fpb.Ack{Seq: b.Seq, Code: uint32(codes.InvalidArgument), Message: msg,
			Rejections: []*fpb.Rejection{{Reason: reason, Samples: b.Samples, Example: msg}}}, nil
	}
	if b.Encoding != fpb.Encoding_ENCODING_SNAPPY_PROMPB {
		return invalid(ReasonMalformed, "unsupported encoding %v", b.Encoding)
	}
	n, err := snappy.DecodedLen(b.Payload)
	if err != nil {
		return invalid(ReasonMalformed, "snappy: %v", err)
	}
	if n > s.cfg.MaxBatchBytes {
		return invalid(ReasonMalformed, "decoded size %d exceeds max_batch_bytes %d", n, s.cfg.MaxBatchBytes)
	}
	// Snappy expands at most ~21x; a header claiming more is corrupt and
	// must not make the hub allocate the claimed size.
	if n > maxSnappyRatio*len(b.Payload)+64 {
		return invalid(ReasonMalformed, "snappy header claims %d bytes from %d compressed", n, len(b.Payload))
	}
	dec := s.decoders.Get().(*decoder)
	defer s.decoders.Put(dec)
	raw, err := snappy.Decode(dec.raw[:cap(dec.raw)], b.Payload)
	if err != nil {
		return invalid(ReasonMalformed, "snappy: %v", err)
	}
	dec.raw = raw
	req := &dec.req
	if err := req.unmarshal(raw); err != nil {
		return invalid(ReasonMalformed, "protobuf: %v", err)
	}
	total := len(req.samples)
	for i := range req.series {
		total += req.series[i].histograms
	}
	now := time.Now()
	ts := s.tenant(tenant)
	if !ts.allow(now, total) {
		s.m.rejected.WithLabelValues(tenant, ReasonRateLimited).Add(float64(total))
		s.m.batches.WithLabelValues(tenant, "rate_limited").Inc()
		return nil, nil, status.Errorf(codes.ResourceExhausted,
			"%s: tenant %q is over its limit of %g samples/s; retry later", ReasonRateLimited, tenant, ts.limits.SamplesPerSecond)
	}
	var rej rejectionSet
	it := s.convertWire(tenant, req, now, &rej)
	ack := &fpb.Ack{Seq: b.Seq, Code: uint32(codes.OK), AcceptedSamples: uint32(it.samples)}
	if len(rej.counts) > 0 {
		reasons := make([]string, 0, len(rej.counts))
		for r := range rej.counts {
			reasons = append(reasons, r)
		}
		sort.Strings(reasons)
		for _, r := range reasons {
			s.m.rejected.WithLabelValues(tenant, r).Add(float64(rej.counts[r]))
			ack.Rejections = append(ack.Rejections, &fpb.Rejection{Reason: r, Samples: uint32(rej.counts[r]), Example: rej.examples[r]})
		}
		ack.Message = fmt.Sprintf("%d of %d samples refused: %s", rej.total(), total, strings.Join(reasons, ", "))
		if it.samples == 0 {
			ack.Code = uint32(codes.InvalidArgument)
		}
	}
	if it.samples == 0 {
		return nil, ack, nil
	}
	return it, ack, nil
}

// Write stores series for tenant through the same validation, limits and
// queue as agents' batches, and returns once ClickHouse has them; rule
// evaluation uses it for recording rules and ALERTS series. It returns the
// samples refused (with reasons) and an error only if nothing could be
// queued or the write failed.
func (s *Service) Write(ctx context.Context, tenant string, series []prompb.TimeSeries) (map[string]int, error) {
	select {
	case <-s.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var rej rejectionSet
	it := s.convert(tenant, &prompb.WriteRequest{Timeseries: series}, time.Now(), &rej)
	for r, n := range rej.counts {
		s.m.rejected.WithLabelValues(tenant, r).Add(float64(n))
	}
	if it.samples == 0 {
		return rej.counts, nil
	}
	s.m.received.WithLabelValues(tenant).Add(float64(it.samples + rej.total()))
	done := make(chan error, 1)
	if err := s.writer.enqueue(ctx, it, nil, done); err != nil {
		s.forgetSeriesRows(it)
		return rej.counts, err
	}
	select {
	case err := <-done:
		return rej.counts, err
	case <-ctx.Done():
		return rej.counts, ctx.Err()
	}
}

// forgetSeriesRows undoes convert's marking of it's series rows as written
// when it could not be queued, so that the resend writes them.
func (s *Service) forgetSeriesRows(it *item) {
	if len(it.series) == 0 {
		return
	}
	ts := s.tenant(it.tenant)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, r := range it.series {
		if n := ts.series.Get(r.Fingerprint); n != nil {
			n.V.writtenDay = -1
		}
	}
}
