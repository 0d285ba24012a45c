package alerting

import (
	"context"
	"slices"
	"time"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/marker"
	"github.com/prometheus/alertmanager/provider"
	"github.com/prometheus/common/model"

	"github.com/bureauhub/bureauhub/alerting/history"
)

// The tracker records alert state changes in the history: firing and
// resolved as alerts arrive (and resolved when an alert times out without
// an update), silenced, inhibited and unsuppressed when the silencer and
// inhibitor's verdict on an alert changes. The verdict is taken as the API
// takes it, on a fresh marker (Alertmanager keeps its markers inside the
// aggregation groups), on every update and every StatusInterval.

// trackedTTL is how long a resolved alert's state is remembered, so that
// the resolved alerts Prometheus resends for 15 minutes are not recorded
// again.
const trackedTTL = time.Hour

type tracked struct {
	resolved   bool
	at         time.Time // when resolved was last recorded
	silenced   []string
	inhibited  []string
	suppressed bool
}

// runTracker watches alert updates until ctx ends.
func (a *Alerting) runTracker(ctx context.Context, alerts provider.Alerts) {
	it := alerts.Subscribe("history")
	defer it.Close()
	t := time.NewTicker(a.cfg.StatusInterval)
	defer t.Stop()
	state := map[model.Fingerprint]*tracked{}
	for {
		select {
		case <-ctx.Done():
			return
		case pa, ok := <-it.Next():
			if !ok {
				return
			}
			a.track(ctx, state, pa.Data, time.Now())
		case now := <-t.C:
			pending := alerts.GetPending()
			for pa := range pending.Next() {
				a.track(ctx, state, pa.Data, now)
			}
			pending.Close()
			for fp, s := range state {
				if s.resolved && now.Sub(s.at) > trackedTTL {
					delete(state, fp)
				}
			}
		}
		a.m.trackedAlerts.Set(float64(len(state)))
	}
}

func (a *Alerting) track(ctx context.Context, state map[model.Fingerprint]*tracked, al *alert.Alert, now time.Time) {
	fp := al.Fingerprint()
	s := state[fp]
	resolved := al.ResolvedAt(now)
	if s == nil {
		if resolved {
			// Never seen firing (e.g. resolved before this hub started):
			// remember it, record it once.
			s = &tracked{resolved: true, at: now}
			state[fp] = s
			a.emit(al, history.EventResolved, now, nil)
			return
		}
		s = &tracked{}
		state[fp] = s
		a.emit(al, history.EventFiring, now, nil)
	} else if s.resolved != resolved {
		s.resolved, s.at = resolved, now
		if resolved {
			a.emit(al, history.EventResolved, now, nil)
		} else {
			a.emit(al, history.EventFiring, now, nil)
		}
	}
	if resolved {
		return
	}

	m := marker.NewAlertMarker()
	mctx := marker.WithContext(ctx, m)
	if ac := a.active.Load(); ac != nil {
		ac.inhibitor.Mutes(mctx, al.Labels)
	}
	a.silencer.Mutes(mctx, al.Labels)
	st := m.Status(fp)
	if !slices.Equal(st.SilencedBy, s.silenced) && len(st.SilencedBy) > 0 {
		a.emit(al, history.EventSilenced, now, st.SilencedBy)
	}
	if !slices.Equal(st.InhibitedBy, s.inhibited) && len(st.InhibitedBy) > 0 {
		a.emit(al, history.EventInhibited, now, st.InhibitedBy)
	}
	suppressed := len(st.SilencedBy)+len(st.InhibitedBy) > 0
	if s.suppressed && !suppressed {
		a.emit(al, history.EventUnsuppressed, now, nil)
	}
	s.silenced, s.inhibited, s.suppressed = st.SilencedBy, st.InhibitedBy, suppressed
}

func (a *Alerting) emit(al *alert.Alert, ev history.Event, now time.Time, by []string) {
	if !a.owns("history/" + al.Fingerprint().String()) {
		return // in a cluster every hub sees the alert; its owner records it
	}
	a.m.stateChanges.WithLabelValues(string(ev)).Inc()
	if a.hist == nil {
		return
	}
	r := record(al, ev, now)
	r.SuppressedBy = by
	a.hist.Record(r)
}
