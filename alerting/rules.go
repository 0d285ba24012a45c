package alerting

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/util/strutil"

	"github.com/bureauhub/bureauhub/alerting/history"
	"github.com/bureauhub/bureauhub/hub/rules"
)

var _ rules.Notifier = (*Alerting)(nil)

// ExportedTenantLabel keeps a rule alert's own bureau label when it differs
// from the tenant whose rule produced it (a cross-bureau rule reading
// another bureau's series), as Prometheus keeps a conflicting target label
// under exported_<name>.
const ExportedTenantLabel = "exported_" + TenantLabel

// Notify implements hub/rules.Notifier: it receives the firing and resolved
// alerts of tenant's rules, converted as Prometheus's rules.SendAlerts
// converts them for an Alertmanager. The alerts belong to tenant: their
// bureau label is set to it. Without the rule's expression (the Notifier
// interface does not pass it) the generator URL links to the alert's
// ALERTS series; NotifyExpr links to the expression.
func (a *Alerting) Notify(ctx context.Context, tenant string, alerts []*promrules.Alert) {
	a.notify(ctx, tenant, "", alerts)
}

// NotifyExpr is Notify with the expression of the rule that produced the
// alerts, as promrules.NotifyFunc receives it; the generator URL then
// links to the expression, exactly as Prometheus's.
func (a *Alerting) NotifyExpr(ctx context.Context, tenant, expr string, alerts []*promrules.Alert) {
	a.notify(ctx, tenant, expr, alerts)
}

func (a *Alerting) notify(ctx context.Context, tenant, expr string, alerts []*promrules.Alert) {
	now := time.Now()
	out := make([]*alert.Alert, 0, len(alerts))
	for _, ra := range alerts {
		al := ConvertRuleAlert(tenant, expr, a.cfg.ExternalURL, ra, now)
		if ra.State == promrules.StatePending {
			// Prometheus never sends pending alerts; if they come, they go
			// to the history only.
			a.emit(al, history.EventPending, now, nil)
			continue
		}
		if err := al.Validate(); err != nil {
			a.logger.Warn("dropping invalid rule alert", "tenant", tenant, "alert", al.Name(), "err", err)
			continue
		}
		out = append(out, al)
	}
	if len(out) == 0 {
		return
	}
	a.m.received.WithLabelValues(tenant).Add(float64(len(out)))
	rt := a.rt.Load()
	if rt == nil {
		a.m.notRunningDrop.Add(float64(len(out)))
		return
	}
	if err := rt.alerts.Put(ctx, out...); err != nil {
		a.logger.Error("store rule alerts", "tenant", tenant, "err", err)
	}
	a.share(out)
}

// ConvertRuleAlert converts one rule alert of tenant as Prometheus's
// rules.SendAlerts does: StartsAt is when it fired, EndsAt when it
// resolved or, while firing, ValidUntil (the rule manager sets it to four
// resend or evaluation intervals ahead); labels include alertname. The
// bureau label is forced to tenant (see ExportedTenantLabel).
func ConvertRuleAlert(tenant, expr, externalURL string, ra *promrules.Alert, now time.Time) *alert.Alert {
	ls := model.LabelSet{}
	ra.Labels.Range(func(l labels.Label) {
		if l.Value != "" {
			ls[model.LabelName(l.Name)] = model.LabelValue(l.Value)
		}
	})
	if v, ok := ls[TenantLabel]; ok && string(v) != tenant {
		ls[ExportedTenantLabel] = v
	}
	ls[TenantLabel] = model.LabelValue(tenant)
	ann := model.LabelSet{}
	ra.Annotations.Range(func(l labels.Label) {
		if l.Value != "" {
			ann[model.LabelName(l.Name)] = model.LabelValue(l.Value)
		}
	})
	if expr == "" {
		expr = fmt.Sprintf("ALERTS{alertname=%q,%s=%q}", ls[model.AlertNameLabel], TenantLabel, tenant)
	}
	al := &alert.Alert{
		Alert: model.Alert{
			Labels:       ls,
			Annotations:  ann,
			StartsAt:     ra.FiredAt,
			GeneratorURL: strings.TrimSuffix(externalURL, "/") + strutil.TableLinkForExpression(expr),
		},
		UpdatedAt: now,
	}
	if al.StartsAt.IsZero() {
		al.StartsAt = ra.ActiveAt
	}
	if !ra.ResolvedAt.IsZero() {
		al.EndsAt = ra.ResolvedAt
	} else {
		al.EndsAt = ra.ValidUntil
	}
	return al
}
