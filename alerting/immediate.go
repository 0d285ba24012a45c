package alerting

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/dispatch"
	"github.com/prometheus/alertmanager/marker"
	"github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/provider"
	"github.com/prometheus/common/model"
)

// Resolved notifications sent at once (send_resolved_immediately).
//
// Alertmanager's aggregation groups flush on a timer (group_wait, then
// group_interval) and offer no way to flush one early: the group type and
// its timer are unexported. So instead of flushing the group, the smallest
// correct mechanism runs the same notification pipeline for the same group,
// with the same context the group's own flush would set (group key, route,
// receiver, repeat interval, time intervals), over a snapshot of the
// group's alerts taken through Dispatcher.Groups, as soon as an alert
// resolves on a flagged route.
//
// The notification log makes this safe: the pipeline's dedup stage records
// what was sent under the group key, so when the group's timer fires it
// finds nothing new and sends nothing, then deletes the resolved alerts as
// after any flush. Silences, inhibition, time intervals, send_resolved and
// retries apply as to any flush. If the group's own flush runs at the very
// same moment both may send; that window is as short as one pipeline run.

// runImmediate watches alert updates until ctx ends.
func (a *Alerting) runImmediate(ctx context.Context, alerts provider.Alerts) {
	it := alerts.Subscribe("resolved-immediately")
	defer it.Close()
	f := &flusher{a: a, ctx: ctx, pending: map[string]*flushJob{}}
	for {
		select {
		case <-ctx.Done():
			f.wg.Wait()
			return
		case pa, ok := <-it.Next():
			if !ok {
				return
			}
			al := pa.Data
			if !al.Resolved() {
				continue
			}
			ac := a.active.Load()
			if ac == nil || len(ac.immediate) == 0 {
				continue
			}
			for _, r := range ac.routes.Match(al.Labels) {
				if ac.immediate[r.ID()] {
					f.trigger(ac, r, al)
				}
			}
		}
	}
}

// flusher runs at most one immediate flush per group at a time; a trigger
// during a flush runs another after it, with the newest resolved alerts.
type flusher struct {
	a       *Alerting
	ctx     context.Context
	wg      sync.WaitGroup
	mu      sync.Mutex
	pending map[string]*flushJob // by route ID + group labels
}

type flushJob struct {
	ac       *activeConfig
	route    *dispatch.Route
	labels   model.LabelSet
	resolved map[model.Fingerprint]*alert.Alert
	running  bool
}

func (f *flusher) trigger(ac *activeConfig, r *dispatch.Route, al *alert.Alert) {
	labels := groupLabels(al, r)
	key := r.ID() + "\xff" + labels.String()
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.pending[key]
	if j == nil {
		j = &flushJob{resolved: map[model.Fingerprint]*alert.Alert{}}
		f.pending[key] = j
	}
	j.ac, j.route, j.labels = ac, r, labels
	j.resolved[al.Fingerprint()] = al
	if j.running {
		return
	}
	j.running = true
	f.wg.Go(func() {
		for {
			f.mu.Lock()
			if len(j.resolved) == 0 {
				delete(f.pending, key)
				f.mu.Unlock()
				return
			}
			ac, route, labels, resolved := j.ac, j.route, j.labels, j.resolved
			j.resolved = map[model.Fingerprint]*alert.Alert{}
			f.mu.Unlock()
			f.a.flushGroup(f.ctx, ac, route, labels, resolved)
		}
	})
}

// flushGroup sends one group's alerts through the pipeline, as the
// group's own flush would. resolved are alerts the dispatcher may not have
// put in the group yet; they replace older copies.
func (a *Alerting) flushGroup(ctx context.Context, ac *activeConfig, r *dispatch.Route, labels model.LabelSet, resolved map[model.Fingerprint]*alert.Alert) {
	groups, _, err := ac.dispatcher.Groups(ctx,
		func(x *dispatch.Route) bool { return x.ID() == r.ID() },
		func(*alert.Alert, time.Time) bool { return true })
	if err != nil {
		return
	}
	var g *dispatch.AlertGroup
	for _, x := range groups {
		if x.Labels.Equal(labels) {
			g = x
			break
		}
	}
	if g == nil {
		// No group: nothing was notified for it, or it is already flushed
		// and gone; there is nothing to resolve.
		return
	}
	now := time.Now()
	seen := map[model.Fingerprint]bool{}
	batch := make(alert.AlertSlice, 0, len(g.Alerts))
	for _, al := range g.Alerts {
		fp := al.Fingerprint()
		seen[fp] = true
		if n, ok := resolved[fp]; ok && !n.UpdatedAt.Before(al.UpdatedAt) {
			al = n
		}
		batch = append(batch, flushCopy(al, now))
	}
	for fp, al := range resolved {
		if !seen[fp] {
			batch = append(batch, flushCopy(al, now))
		}
	}
	sort.Stable(batch)

	opts := r.RouteOpts
	ctx, cancel := context.WithTimeout(ctx, timeoutFunc(opts.GroupInterval))
	defer cancel()
	ctx = notify.WithNow(ctx, now)
	ctx = notify.WithGroupKey(ctx, g.GroupKey)
	ctx = notify.WithGroupLabels(ctx, g.Labels)
	ctx = notify.WithRouteLabels(ctx, g.RouteLabels)
	ctx = notify.WithReceiverName(ctx, opts.Receiver)
	ctx = notify.WithRepeatInterval(ctx, opts.RepeatInterval)
	ctx = notify.WithMuteTimeIntervals(ctx, opts.MuteTimeIntervals)
	ctx = notify.WithActiveTimeIntervals(ctx, opts.ActiveTimeIntervals)
	ctx = notify.WithRouteID(ctx, r.ID())
	ctx = notify.WithGroupMatchers(ctx, r.Matchers)
	ctx = marker.WithContext(ctx, marker.NewAlertMarker())
	a.m.immediate.Inc()
	if _, _, err := ac.pipeline.Exec(ctx, a.logger, batch...); err != nil && ctx.Err() == nil {
		a.logger.Error("immediate resolved notification failed", "group", g.GroupKey, "err", err)
	}
}

// flushCopy copies an alert as a group flush does: alerts that have not
// resolved by now are sent without an end time.
func flushCopy(al *alert.Alert, now time.Time) *alert.Alert {
	c := *al
	if !c.ResolvedAt(now) {
		c.EndsAt = time.Time{}
	}
	return &c
}

// groupLabels are the labels that pick an alert's aggregation group on a
// route (dispatch's getGroupLabels).
func groupLabels(al *alert.Alert, r *dispatch.Route) model.LabelSet {
	out := model.LabelSet{}
	for ln, lv := range al.Labels {
		if _, ok := r.RouteOpts.GroupBy[ln]; ok || r.RouteOpts.GroupByAll {
			out[ln] = lv
		}
	}
	return out
}
