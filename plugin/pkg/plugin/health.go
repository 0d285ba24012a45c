package plugin

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/bureauhub/bureauhub/plugin/pkg/hubclient"
)

// healthExpr finds the bureaus with live data: every series the hub
// stores carries the bureau label, and up is what every agent's scrapes
// write. When it is empty (data pushed by remote write only) the bureau
// label's values over the last hour are the fallback.
const healthExpr = `count by (bureau) (up)`

// CheckHealth tells the user what is wrong, in this order: the settings,
// the hub's address, the token, whether the token sees any data; when
// all is well it names the bureaus the token sees.
func (d *Datasource) CheckHealth(ctx context.Context, _ *backend.CheckHealthRequest) (*backend.CheckHealthResult, error) {
	if d.settingsErr != nil {
		return healthError("Data source settings: %v", d.settingsErr), nil
	}
	now := time.Now()
	series, err := d.hub.Query(ctx, healthExpr, now)
	bureaus := map[string]bool{}
	for _, s := range series {
		if b := s.Labels[BureauLabel]; b != "" {
			bureaus[b] = true
		}
	}
	if err == nil && len(bureaus) == 0 {
		var vs []string
		vs, err = d.hub.LabelValues(ctx, BureauLabel, now.Add(-time.Hour), now)
		for _, b := range vs {
			bureaus[b] = true
		}
	}
	var ue *hubclient.UnreachableError
	var ae *hubclient.APIError
	switch {
	case errors.As(err, &ue):
		return healthError("Hub unreachable at %s: %v. Check the URL and that the hub's HTTP port is reachable from Grafana's server.", d.hub.URL(), ue.Err), nil
	case hubclient.IsUnauthorized(err):
		return healthError("The hub at %s refused the token (401 Unauthorized): check the bureau token in the data source settings.", d.hub.URL()), nil
	case errors.As(err, &ae):
		return healthError("The hub at %s answered an error: %v", d.hub.URL(), ae), nil
	case err != nil:
		return healthError("Querying the hub at %s failed: %v", d.hub.URL(), err), nil
	}
	if len(bureaus) == 0 {
		return healthError("Connected to the hub at %s and the token is valid, but it sees no data: %s is empty and no series has a bureau label in the last hour. Is the bureau's agent pushing?", d.hub.URL(), healthExpr), nil
	}
	names := make([]string, 0, len(bureaus))
	for b := range bureaus {
		names = append(names, b)
	}
	sort.Strings(names)
	noun := "bureau"
	if len(names) > 1 {
		noun = "bureaus"
	}
	return &backend.CheckHealthResult{
		Status:  backend.HealthStatusOk,
		Message: fmt.Sprintf("Connected to the hub at %s; the token sees %s %s.", d.hub.URL(), noun, strings.Join(names, ", ")),
	}, nil
}

func healthError(format string, args ...any) *backend.CheckHealthResult {
	return &backend.CheckHealthResult{Status: backend.HealthStatusError, Message: fmt.Sprintf(format, args...)}
}
