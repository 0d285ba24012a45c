package alerting

import (
	"sort"
	"time"

	"github.com/prometheus/common/model"
)

// FiringAlerts lists the alert names firing for tenant now (its `bureau`
// label), silenced or not, sorted and without duplicates. The autoscaler
// records them with each decision. Empty before Run.
func (a *Alerting) FiringAlerts(tenant string) []string {
	rt := a.rt.Load()
	if rt == nil {
		return nil
	}
	now := time.Now()
	seen := map[string]bool{}
	it := rt.alerts.GetPending()
	defer it.Close()
	for pa := range it.Next() {
		al := pa.Data
		if !al.EndsAt.IsZero() && al.EndsAt.Before(now) {
			continue
		}
		if string(al.Labels["bureau"]) != tenant {
			continue
		}
		seen[string(al.Labels[model.AlertNameLabel])] = true
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
