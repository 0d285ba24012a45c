package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
)

// errHistogramResult is returned for a rule that produces native
// histograms, which the ClickHouse store does not hold.
var errHistogramResult = errors.New("rule produced a native histogram; the hub stores float samples only")

// appendable hands rule results to ingestion for one tenant. One Commit is
// one group evaluation; it returns once the results are stored, so each
// evaluation writes each series exactly once.
type appendable struct {
	w      Writer
	tenant string
	logger *slog.Logger
}

func (a appendable) Appender(ctx context.Context) storage.Appender {
	return &appender{a: a, ctx: ctx}
}

type appender struct {
	a      appendable
	ctx    context.Context
	series []prompb.TimeSeries
}

var _ storage.Appender = (*appender)(nil)

func (ap *appender) Append(_ storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	ls := make([]prompb.Label, 0, l.Len()+1)
	l.Range(func(lb labels.Label) { ls = append(ls, prompb.Label{Name: lb.Name, Value: lb.Value}) })
	ap.series = append(ap.series, prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Timestamp: t, Value: v}}})
	return 0, nil
}

func (ap *appender) Commit() error {
	if len(ap.series) == 0 {
		return nil
	}
	refused, err := ap.a.w.Write(ap.ctx, ap.a.tenant, ap.series)
	ap.series = nil
	if err != nil {
		return fmt.Errorf("store rule results for tenant %s: %w", ap.a.tenant, err)
	}
	if len(refused) > 0 {
		ap.a.logger.Warn("ingestion refused some rule results", "tenant", ap.a.tenant, "refused", refused)
	}
	return nil
}

func (ap *appender) Rollback() error { ap.series = nil; return nil }

func (ap *appender) SetOptions(*storage.AppendOptions) {}

func (ap *appender) AppendExemplar(storage.SeriesRef, labels.Labels, exemplar.Exemplar) (storage.SeriesRef, error) {
	return 0, nil // rules produce no exemplars
}

func (ap *appender) AppendHistogram(storage.SeriesRef, labels.Labels, int64, *histogram.Histogram, *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return 0, errHistogramResult
}

func (ap *appender) AppendHistogramSTZeroSample(storage.SeriesRef, labels.Labels, int64, int64, *histogram.Histogram, *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return 0, errHistogramResult
}

func (ap *appender) UpdateMetadata(storage.SeriesRef, labels.Labels, metadata.Metadata) (storage.SeriesRef, error) {
	return 0, nil // the store keeps no metadata
}

func (ap *appender) AppendSTZeroSample(storage.SeriesRef, labels.Labels, int64, int64) (storage.SeriesRef, error) {
	return 0, nil // rule results have no start timestamps
}
