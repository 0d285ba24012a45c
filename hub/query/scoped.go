package query

import (
	"context"
	"errors"
	"sync"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/bureauhub/bureauhub/hub/auth"
	"github.com/bureauhub/bureauhub/hub/store/clickhouse"
)

// ErrNoPrincipal means a read reached storage without an authenticated
// caller in its context; it never returns data.
var ErrNoPrincipal = errors.New("no authenticated tenant in the query context")

// ScopeOf is the read scope of a principal: its own tenant, or every tenant
// for the cross-bureau role.
func ScopeOf(p auth.Principal) clickhouse.Scope {
	if p.CanReadAll() {
		return clickhouse.Scope{All: true}
	}
	return clickhouse.Scope{Tenants: []string{p.Tenant}}
}

// ScopedQueryable is a storage.Queryable whose every read is scoped to the
// principal found in the read's context (auth.WithPrincipal). It lets one
// promql engine and one Prometheus API serve every tenant: a tenant's
// identity travels with the request, not with the queryable.
type ScopedQueryable struct {
	Store  *clickhouse.Store
	Limits func(tenant string) clickhouse.Limits
}

var _ storage.SampleAndChunkQueryable = ScopedQueryable{}

// Querier implements storage.Queryable.
func (q ScopedQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	return &scopedQuerier{q: q, mint: mint, maxt: maxt}, nil
}

// ConcurrentSeries implements ConcurrentSeries: the ClickHouse store's
// series are read whole into memory by Select and never changed after, so
// the parts of a split query may share them (see SplitEngine), except when
// the store's head holds the query's range: its series are not safe to
// share, and each part reads the head at little cost.
func (q ScopedQueryable) ConcurrentSeries(ctx context.Context, mint, maxt int64) (func(context.Context) context.Context, bool) {
	if p, ok := auth.FromContext(ctx); ok && q.Store.RecentHolds(ScopeOf(p), mint, maxt) {
		return nil, false
	}
	return clickhouse.ClickHouseOnly, true
}

// ChunkQuerier implements storage.ChunkQueryable; remote read is not
// served, so it is never used.
func (q ScopedQueryable) ChunkQuerier(int64, int64) (storage.ChunkQuerier, error) {
	return nil, errors.New("chunk queries (remote read) are not supported")
}

type scopedQuerier struct {
	q          ScopedQueryable
	mint, maxt int64

	mu     sync.Mutex
	inners []storage.Querier // closed with this one: a read from the head holds the head's data until then
}

func (s *scopedQuerier) inner(ctx context.Context) (storage.Querier, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil, ErrNoPrincipal
	}
	var lim clickhouse.Limits
	if s.q.Limits != nil {
		lim = s.q.Limits(p.Tenant)
	}
	in, err := s.q.Store.Queryable(ScopeOf(p), lim).Querier(s.mint, s.maxt)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.inners = append(s.inners, in)
	s.mu.Unlock()
	return in, nil
}

func (s *scopedQuerier) Select(ctx context.Context, sort bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	in, err := s.inner(ctx)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	return in.Select(ctx, sort, hints, ms...)
}

func (s *scopedQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	in, err := s.inner(ctx)
	if err != nil {
		return nil, nil, err
	}
	return in.LabelValues(ctx, name, hints, ms...)
}

func (s *scopedQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	in, err := s.inner(ctx)
	if err != nil {
		return nil, nil, err
	}
	return in.LabelNames(ctx, hints, ms...)
}

func (s *scopedQuerier) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, in := range s.inners {
		errs = append(errs, in.Close())
	}
	s.inners = nil
	return errors.Join(errs...)
}
