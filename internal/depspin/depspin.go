// Package depspin pins modules that packages in progress will import; remove once they do.
package depspin
import (
 _ "go.etcd.io/bbolt"
 _ "github.com/prometheus/alertmanager/dispatch"
 _ "github.com/prometheus/alertmanager/silence"
 _ "github.com/prometheus/alertmanager/inhibit"
 _ "github.com/prometheus/alertmanager/notify/webhook"
 _ "github.com/prometheus/alertmanager/notify/email"
 _ "github.com/prometheus/alertmanager/config"
 _ "github.com/prometheus/alertmanager/provider/mem"
)

