package alerting

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/dispatch"
	"github.com/prometheus/alertmanager/inhibit"
	"github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/alertmanager/timeinterval"
	"github.com/prometheus/common/model"

	"github.com/bureauhub/bureauhub/alerting/history"
)

// apply builds def's routing tree, receivers, pipeline, inhibitor and
// dispatcher and swaps them for the ones in force. Everything that can fail
// runs before anything running is touched, so on error the old
// configuration stays. The order of the swap is Alertmanager's (app's
// reloader): stop the old inhibitor and dispatcher, start the new
// inhibitor and wait for it to load, then the dispatcher.
func (a *Alerting) apply(rt *runtime, def *Definition) error {
	tmpl, err := template.FromGlobs(def.AM.Templates)
	if err != nil {
		return fmt.Errorf("templates: %w", err)
	}
	tmpl.ExternalURL = a.extURL

	routes := dispatch.NewRoute(def.AM.Route, nil)
	used := map[string]bool{}
	routes.Walk(func(r *dispatch.Route) { used[r.RouteOpts.Receiver] = true })

	receivers := make(map[string][]notify.Integration, len(used))
	n := 0
	for i, rcv := range def.AM.Receivers {
		if !used[rcv.Name] {
			continue
		}
		ints, err := buildIntegrations(rcv, tmpl, a.logger)
		if err != nil {
			return fmt.Errorf("receivers[%d] (%s): %w", i, rcv.Name, err)
		}
		if rc := def.Receivers[rcv.Name]; rc != nil {
			ext, err := rc.Integrations(rcv.Name, tmpl, a.logger)
			if err != nil {
				return fmt.Errorf("receivers[%d] (%s): %w", i, rcv.Name, err)
			}
			ints = append(ints, ext...)
		}
		receivers[rcv.Name] = a.observe(rcv.Name, ints)
		n += len(ints)
	}

	intervals := make(map[string][]timeinterval.TimeInterval, len(def.AM.MuteTimeIntervals)+len(def.AM.TimeIntervals))
	for _, ti := range def.AM.MuteTimeIntervals {
		intervals[ti.Name] = ti.TimeIntervals
	}
	for _, ti := range def.AM.TimeIntervals {
		intervals[ti.Name] = ti.TimeIntervals
	}

	// From here on nothing fails.
	old := a.active.Load()
	if old != nil {
		old.inhibitor.Stop()
		old.dispatcher.Stop()
	}
	inhibitor := inhibit.NewInhibitor(rt.alerts, def.AM.InhibitRules, a.logger, a.rec)
	pipeline := newOwnerGate(a.pb.New(receivers, func() time.Duration { return 0 }, inhibitor, a.silencer,
		timeinterval.NewIntervener(intervals), a.groupMarker, a.nflog, nil), a.owns)
	dispatcher := dispatch.NewDispatcher(rt.alerts, routes, pipeline, a.groupMarker, timeoutFunc,
		a.cfg.DispatchMaintenanceInterval, nil, a.logger, a.rec, a.dispMetrics, tmpl)
	ac := &activeConfig{
		def: def, tmpl: tmpl, routes: routes, immediate: def.ResolvedImmediately(routes),
		pipeline: pipeline, inhibitor: inhibitor, dispatcher: dispatcher, integration: n,
	}
	go inhibitor.Run()
	inhibitor.WaitForLoading()
	go dispatcher.Run(time.Now())
	dispatcher.WaitForLoading()
	a.active.Store(ac)

	a.m.receivers.Set(float64(len(used)))
	a.m.integrations.Set(float64(n))
	a.m.inhibitRules.Set(float64(len(def.AM.InhibitRules)))
	return nil
}

// timeoutFunc bounds one flush of a group as Alertmanager does without a
// cluster: its group_interval, at least notify.MinTimeout.
func timeoutFunc(d time.Duration) time.Duration { return max(d, notify.MinTimeout) }

// observe wraps every integration's notifier so that each attempt is
// counted per receiver and integration and recorded in the history.
func (a *Alerting) observe(receiverName string, ints []notify.Integration) []notify.Integration {
	out := make([]notify.Integration, len(ints))
	for i := range ints {
		in := ints[i]
		on := &observedNotifier{a: a, next: &in, receiver: receiverName, integration: in.String()}
		a.m.attempts.WithLabelValues(receiverName, on.integration)
		a.m.failures.WithLabelValues(receiverName, on.integration)
		out[i] = notify.NewIntegration(on, &in, in.Name(), in.Index(), receiverName)
	}
	return out
}

// observedNotifier decorates a notify.Notifier: it is called once per
// attempt by the pipeline's retry stage.
type observedNotifier struct {
	a           *Alerting
	next        *notify.Integration
	receiver    string
	integration string // name[index]
}

// Notify implements notify.Notifier.
func (n *observedNotifier) Notify(ctx context.Context, alerts ...*alert.Alert) (bool, error) {
	retry, err := n.next.Notify(ctx, alerts...)
	n.a.m.attempts.WithLabelValues(n.receiver, n.integration).Inc()
	if err != nil {
		n.a.m.failures.WithLabelValues(n.receiver, n.integration).Inc()
	}
	if n.a.hist != nil {
		now := time.Now()
		for _, al := range alerts {
			r := record(al, history.EventNotification, now)
			r.Receiver, r.Integration, r.Success = n.receiver, n.integration, err == nil
			if err != nil {
				r.Error = err.Error()
			}
			n.a.hist.Record(r)
		}
	}
	return retry, err
}

// record makes a history record of an alert.
func record(al *alert.Alert, ev history.Event, now time.Time) history.Record {
	status := string(model.AlertFiring)
	if al.ResolvedAt(now) {
		status = string(model.AlertResolved)
	}
	return history.Record{
		Time:         now,
		Tenant:       string(al.Labels[TenantLabel]),
		Event:        ev,
		Fingerprint:  al.Fingerprint().String(),
		Labels:       al.Labels,
		Annotations:  al.Annotations,
		StartsAt:     al.StartsAt,
		EndsAt:       al.EndsAt,
		GeneratorURL: al.GeneratorURL,
		Status:       status,
	}
}
