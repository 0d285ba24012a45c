// Package depspin pins modules that packages in progress will import; remove once they do.
package depspin

import (
	_ "github.com/emersion/go-smtp"
	_ "github.com/hashicorp/memberlist"
	_ "github.com/prometheus/alertmanager/config"
	_ "github.com/prometheus/alertmanager/dispatch"
	_ "github.com/prometheus/alertmanager/inhibit"
	_ "github.com/prometheus/alertmanager/notify/email"
	_ "github.com/prometheus/alertmanager/notify/webhook"
	_ "github.com/prometheus/alertmanager/provider/mem"
	_ "github.com/prometheus/alertmanager/silence"
	_ "go.etcd.io/bbolt"
)
