package querybench

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/tsdb"
)

// engineCheck evaluates every query with the engine the hub embeds over
// Prometheus' own blocks, opened read-only, and compares the hub's answers
// with those. Where the hub and Prometheus disagree, this tells a
// difference in the data the stores return (the hub differs from the same
// engine on Prometheus' blocks) from a difference between Prometheus
// releases' engines (it does not).
func (r *runner) engineCheck(ctx context.Context) error {
	sandbox := filepath.Join(r.work, "tsdb-sandbox")
	if err := os.MkdirAll(sandbox, 0o755); err != nil {
		return err
	}
	db, err := tsdb.OpenDBReadOnly(r.promData, sandbox, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer db.Close()
	engine := promql.NewEngine(promql.EngineOpts{
		Logger:               slog.New(slog.DiscardHandler),
		MaxSamples:           50_000_000,
		Timeout:              5 * time.Minute,
		LookbackDelta:        5 * time.Minute,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
	})
	for _, qr := range r.res.Queries {
		hub, ok := r.hubResults[qr.Name]
		if !ok {
			continue
		}
		q := qr.Query
		qry, err := engine.NewRangeQuery(ctx, db, nil, q.Expr, q.Start, q.End, q.Step)
		if err != nil {
			qr.HubVsEngineOnProm = &Agreement{Error: err.Error()}
			continue
		}
		res := qry.Exec(ctx)
		m, err := res.Matrix()
		if res.Err != nil {
			err = res.Err
		}
		if err != nil {
			qr.HubVsEngineOnProm = &Agreement{Error: err.Error()}
			qry.Close()
			continue
		}
		want := matrix{}
		for _, s := range m {
			pts := make([]point, len(s.Floats))
			for i, p := range s.Floats {
				pts[i] = point{t: p.T, v: p.F}
			}
			want[labelString(s.Metric.Map())] = pts
		}
		qry.Close()
		qr.HubVsEngineOnProm = compare(hub, want, r.cfg.Tolerance)
	}
	return nil
}
