package hub

import (
	"net/http"

	"github.com/bureauhub/bureauhub/hub/cluster"
	"github.com/bureauhub/bureauhub/hub/console"
)

// clusterMembers shows the hub cluster's members on the console.
type clusterMembers struct{ c *cluster.Cluster }

func (m clusterMembers) Members() []console.Member {
	var out []console.Member
	for _, x := range m.c.Members() {
		out = append(out, console.Member{Name: x.Name, Address: x.Address, State: x.State, Self: x.Self})
	}
	return out
}

// mountConsole serves the hub console (hub/console) under /console/ and
// the agents API it and the Grafana plugin read, /api/v1/agents. The
// console calls the hub's APIs through mux with the viewer's token, so
// each API's tenancy applies to the pages too.
func (h *Hub) mountConsole(mux *http.ServeMux) {
	mux.Handle(console.AgentsPath, console.AgentsHandler(h.site, h.authn))
	var cfg console.Config
	cfg.SetDefaults()
	c, err := console.New(cfg, h.logger.With("component", "console"), console.Deps{
		API:   mux,
		Authn: h.authn,
		Self:  h.cfg.HTTPListenAddress,
		Members: func() console.Members {
			if h.cluster == nil {
				return nil
			}
			return clusterMembers{h.cluster}
		}(),
		Available: console.Available{
			Alerting:  h.alerts != nil,
			Autoscale: h.autoscaler != nil,
			Services:  h.host != nil,
			Forecast:  h.forecaster != nil,
		},
	})
	if err != nil {
		// Only a broken embedded template gets here, and the console's
		// tests catch that; the hub serves on without its console.
		h.logger.Error("console disabled", "err", err)
		return
	}
	mux.Handle(console.Prefix, c.Handler())
}
