package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricValue sums the samples of name on a /metrics page whose labels
// include want.
func metricValue(tb testing.TB, url, name string, want map[string]string) float64 {
	tb.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		tb.Fatalf("parse %s/metrics: %v", url, err)
	}
	sum := 0.0
	fam := fams[name]
	if fam == nil {
		return 0
	}
next:
	for _, m := range fam.Metric {
		for k, v := range want {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		}
	}
	return sum
}

// stored counts samples and distinct (series, timestamp) pairs of a metric.
func (e *env) stored(tenant, metric string) (samples, distinct uint64) {
	e.t.Helper()
	row := e.conn.QueryRow(context.Background(), strings.ReplaceAll(`SELECT count(), uniqExact(fingerprint, ts) FROM {db}.samples
		WHERE tenant = ? AND fingerprint IN (SELECT fingerprint FROM {db}.series WHERE tenant = ? AND metric_name = ?)`, "{db}", e.db),
		tenant, tenant, metric)
	if err := row.Scan(&samples, &distinct); err != nil {
		e.t.Fatalf("count %s: %v", metric, err)
	}
	return samples, distinct
}

// waitExact waits until the stored samples of a pushed metric account for
// every accepted sample, and checks there is no duplicate.
func (e *env) waitExact(p *pusher, tenant, metric string, timeout time.Duration) {
	e.t.Helper()
	accepted, ambiguous := p.totals(metric)
	if accepted == 0 {
		e.t.Fatalf("no %s samples were accepted; the test pushed nothing", metric)
	}
	waitFor(e.t, timeout, func() (bool, string) {
		n, _ := e.stored(tenant, metric)
		return n >= uint64(accepted), fmt.Sprintf("%s: stored %d of %d accepted (+%d ambiguous)", metric, n, accepted, ambiguous)
	})
	n, d := e.stored(tenant, metric)
	if n != d {
		e.t.Errorf("%s: %d samples stored but only %d distinct (series, timestamp): duplicates", metric, n, d)
	}
	if n > uint64(accepted+ambiguous) {
		e.t.Errorf("%s: %d samples stored, more than %d accepted + %d ambiguous", metric, n, accepted, ambiguous)
	}
	e.t.Logf("%s: %d accepted, %d ambiguous, %d stored, no duplicates", metric, accepted, ambiguous, n)
}

func (e *env) noDuplicatesAnywhere() {
	e.t.Helper()
	// One query, so that rows written meanwhile (rules keep evaluating)
	// cannot make the two counts differ.
	var n, d uint64
	q := strings.ReplaceAll("SELECT count(), uniqExact(tenant, fingerprint, ts) FROM {db}.samples", "{db}", e.db)
	if err := e.conn.QueryRow(context.Background(), q).Scan(&n, &d); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
	if n != d {
		e.t.Errorf("samples table: %d rows but %d distinct (tenant, series, timestamp)", n, d)
	}
}

func TestEndToEnd(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	app := newTestApp(t)
	sdFile := filepath.Join(e.dir, "targets.json")
	if err := os.WriteFile(sdFile, []byte(fmt.Sprintf(`[{"targets": [%q], "labels": {"team": "visa"}}]`, app.target())), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	a := e.startAgent("agent-consular", e.agentConfig("consular", "vm-1", port, filepath.Join(e.dir, "buf"), fmt.Sprintf(`
host_metrics: {interval: 1s}
global: {scrape_interval: 1s, scrape_timeout: 900ms}
scrape_configs:
  - job_name: app
    static_configs: [{targets: [%q]}]
    relabel_configs:
      - {target_label: env, replacement: prod}
  - job_name: app-sd
    honor_labels: true
    file_sd_configs: [{files: [%q], refresh_interval: 1s}]
`, app.target(), sdFile)), port)

	p := newPusher(a.url)
	ctx := context.Background()
	base := time.Now().Add(-time.Minute).UnixMilli()
	for i := range 20 {
		if err := p.push(ctx, "e2e_rw", 50, 5, base+int64(i)*5000); err != nil {
			t.Fatal(err)
		}
	}
	e.waitExact(p, "consular", "e2e_rw", 60*time.Second)
	if n := e.queryUint("SELECT uniqExact(fingerprint) FROM {db}.series WHERE metric_name = 'e2e_rw'"); n != 50 {
		t.Errorf("e2e_rw: %d series stored, want 50", n)
	}

	// Scrapes: wait for several, then check the run of values has no gap.
	waitFor(t, 60*time.Second, func() (bool, string) {
		n, _ := e.stored("consular", "e2e_scrape_seq")
		return n >= 10, fmt.Sprintf("e2e_scrape_seq: %d samples stored", n)
	})
	for _, job := range []string{"app", "app-sd"} {
		var n, distinctVals uint64
		var lo, hi float64
		err := e.conn.QueryRow(ctx, strings.ReplaceAll(`SELECT count(), uniqExact(value), min(value), max(value) FROM {db}.samples
			WHERE fingerprint IN (SELECT fingerprint FROM {db}.series WHERE metric_name = 'e2e_scrape_seq'
			AND label_values[indexOf(label_names, 'job')] = ?)`, "{db}", e.db), job).Scan(&n, &distinctVals, &lo, &hi)
		if err != nil {
			t.Fatal(err)
		}
		// Two jobs scrape the same app, so each job sees every other value
		// or so; what matters is that every scrape of this job is stored
		// once: the agent's own scrape counter must agree.
		if n == 0 || n != distinctVals {
			t.Errorf("job %s: %d samples, %d distinct values: a scrape was stored twice", job, n, distinctVals)
		}
	}
	// The agent's own /metrics reports each target's scrape health.
	for _, job := range []string{"app", "app-sd"} {
		if up := metricValue(t, a.url, "bureauhub_agent_target_up", map[string]string{"job": job}); up != 1 {
			t.Errorf("agent reports bureauhub_agent_target_up{job=%q} = %v, want 1", job, up)
		}
	}

	// Each successful scrape stores up and every app series once, in one
	// batch; bounding both counts by one timestamp keeps a scrape that
	// lands between the two queries out of both.
	for _, job := range []string{"app", "app-sd"} {
		fps := `(SELECT fingerprint FROM {db}.series WHERE metric_name = ? AND label_values[indexOf(label_names, 'job')] = ?)`
		bound := e.queryUint(`SELECT toUInt64(max(ts)) FROM {db}.samples WHERE fingerprint IN `+fps, "up", job)
		q := `SELECT count() FROM {db}.samples WHERE ts <= ? AND fingerprint IN ` + fps
		up := e.queryUint(q, int64(bound), "up", job)
		seq := e.queryUint(q, int64(bound), "e2e_scrape_seq", job)
		if up == 0 || seq != up {
			t.Errorf("job %s: %d up samples but %d e2e_scrape_seq samples", job, up, seq)
		}
	}

	labelsOf := func(metric, job string) string {
		var names, values []string
		err := e.conn.QueryRow(ctx, strings.ReplaceAll(`SELECT label_names, label_values FROM {db}.series
			WHERE metric_name = ? AND label_values[indexOf(label_names, 'job')] = ? LIMIT 1`, "{db}", e.db), metric, job).Scan(&names, &values)
		if err != nil {
			t.Fatalf("labels of %s{job=%q}: %v", metric, job, err)
		}
		var sb strings.Builder
		for i := range names {
			fmt.Fprintf(&sb, "%s=%s,", names[i], values[i])
		}
		return sb.String()
	}
	for _, tc := range []struct {
		metric, job string
		want        []string
	}{
		{"up", "app", []string{"bureau=consular,", "cloud=cloud-consular,", "cluster=k1,", "env=prod,", "job=app,"}},
		{"scrape_duration_seconds", "app-sd", []string{"bureau=consular,", "team=visa,"}},
		{"e2e_labelled", "app", []string{"exported_job=fromapp,", "job=app,"}},
		{"e2e_labelled", "fromapp", []string{"team=visa,"}}, // honor_labels keeps the app's job
		{"node_cpu_seconds_total", "node", []string{"bureau=consular,", "instance=vm-1,", "mode=", "cpu="}},
		{"node_load1", "node", []string{"cloud=cloud-consular,", "cluster=k1,"}},
		{"node_memory_MemTotal_bytes", "node", []string{"instance=vm-1,"}},
		{"node_filesystem_size_bytes", "node", []string{"mountpoint="}},
		{"node_network_receive_bytes_total", "node", []string{"device="}},
	} {
		t.Run(tc.metric+"/"+tc.job, func(t *testing.T) {
			got := labelsOf(tc.metric, tc.job)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("labels %s: missing %s", got, w)
				}
			}
		})
	}
	// up is 1 for a healthy target.
	if v := e.queryUint(`SELECT toUInt64(min(value)) FROM {db}.samples WHERE fingerprint IN
		(SELECT fingerprint FROM {db}.series WHERE metric_name = 'up' AND label_values[indexOf(label_names, 'job')] = 'app')`); v != 1 {
		t.Errorf("up{job=app} min = %d, want 1", v)
	}
	// Host series: each collection writes every series once, so all CPU
	// series have as many samples as node_load1.
	var minCPU, maxCPU, load uint64
	err := e.conn.QueryRow(ctx, strings.ReplaceAll(`SELECT min(c), max(c) FROM (SELECT fingerprint, count() AS c FROM {db}.samples
		WHERE fingerprint IN (SELECT fingerprint FROM {db}.series WHERE metric_name = 'node_cpu_seconds_total') GROUP BY fingerprint)`, "{db}", e.db)).Scan(&minCPU, &maxCPU)
	if err != nil {
		t.Fatal(err)
	}
	load, _ = e.stored("consular", "node_load1")
	if minCPU != maxCPU || (maxCPU != load && maxCPU+1 != load && maxCPU != load+1) {
		t.Errorf("host collections are incomplete: cpu series have %d..%d samples, node_load1 %d", minCPU, maxCPU, load)
	}
	e.noDuplicatesAnywhere()
	// The hub's count of what it wrote matches what ClickHouse holds, once
	// the agent has stopped sending.
	if err := a.Stop(20 * time.Second); err != nil {
		t.Fatalf("agent did not stop cleanly: %v", err)
	}
	waitFor(t, 30*time.Second, func() (bool, string) {
		written := metricValue(t, e.hubURL(), "bureauhub_ingest_written_samples_total", map[string]string{"tenant": "consular"})
		total := float64(e.queryUint("SELECT count() FROM {db}.samples"))
		return written == total, fmt.Sprintf("hub says it wrote %v samples, ClickHouse holds %v", written, total)
	})
}

// TestHubOutage stops the hub during steady traffic; the agent buffers,
// and after the restart every sample arrives once.
func TestHubOutage(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	port := freePort(t)
	a := e.startAgent("agent", e.agentConfig("health", "vm-1", port, filepath.Join(e.dir, "buf"), "host_metrics: {enabled: false}\n"), port)
	p := newPusher(a.url)
	ctx, cancel := context.WithCancel(context.Background())
	wait := p.steady(ctx, t, "e2e_outage", 20, 20*time.Millisecond)

	waitFor(t, 30*time.Second, func() (bool, string) {
		n, _ := e.stored("health", "e2e_outage")
		return n > 500, fmt.Sprintf("before the outage: %d stored", n)
	})
	if err := e.hub.Stop(30 * time.Second); err != nil {
		t.Fatalf("hub did not stop cleanly: %v", err)
	}
	before, _ := e.stored("health", "e2e_outage")
	// The agent keeps accepting and buffering while the hub is down.
	waitFor(t, 30*time.Second, func() (bool, string) {
		acc, _ := p.totals("e2e_outage")
		return acc > int(before)+2000, fmt.Sprintf("during the outage: %d accepted, %d stored before it", acc, before)
	})
	if v := metricValue(t, a.url, "bureauhub_agent_buffer_samples", nil); v < 1000 {
		t.Errorf("agent buffer holds %v samples during the outage, want the backlog", v)
	}
	e.startHub()
	waitFor(t, 10*time.Second, func() (bool, string) {
		acc, _ := p.totals("e2e_outage")
		return acc > int(before)+4000, "traffic after restart"
	})
	cancel()
	wait()
	e.waitExact(p, "health", "e2e_outage", 60*time.Second)

	// The restarted hub refilled its in-memory head from ClickHouse and
	// appended the agent's backlog after it: PromQL read from the head
	// counts every stored sample.
	stored, _ := e.stored("health", "e2e_outage")
	waitFor(t, 30*time.Second, func() (bool, string) {
		v := metricValue(t, e.hubURL(), "bureauhub_head_covered_from_timestamp_seconds", map[string]string{"tenant": "health"})
		return v > 0, "the head refilled"
	})
	headReads := metricValue(t, e.hubURL(), "bureauhub_head_reads_total", map[string]string{"source": "head"})
	// The pusher's timestamps run ahead of the clock (a second per push,
	// a push every 20 ms); the hub takes them up to ingest.max_future.
	got, ok, body := e.instant(t, "health", "sum(count_over_time(e2e_outage[30m] offset -10m))")
	if !ok {
		t.Fatalf("count query: %s", body)
	}
	if got != float64(stored) {
		t.Errorf("PromQL counts %v samples, ClickHouse holds %d", got, stored)
	}
	if after := metricValue(t, e.hubURL(), "bureauhub_head_reads_total", map[string]string{"source": "head"}); after <= headReads {
		t.Errorf("the count was not read from the head (bureauhub_head_reads_total{source=head} %v, then %v)", headReads, after)
	}
}

// TestAgentKill9 kills the agent during traffic and restarts it on the same
// buffer: nothing acknowledged is stored again, nothing accepted is lost.
func TestAgentKill9(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	port := freePort(t)
	cfg := e.agentConfig("transport", "vm-1", port, filepath.Join(e.dir, "buf"), "host_metrics: {enabled: false}\n")
	a := e.startAgent("agent", cfg, port)
	p := newPusher(a.url)
	ctx, cancel := context.WithCancel(context.Background())
	wait := p.steady(ctx, t, "e2e_kill", 50, 10*time.Millisecond)
	for round := range 3 {
		waitFor(t, 30*time.Second, func() (bool, string) {
			acc, _ := p.totals("e2e_kill")
			return acc > (round+1)*3000, fmt.Sprintf("round %d: %d accepted", round, acc)
		})
		a.Kill()
		a = e.startAgent("agent", cfg, port)
	}
	waitFor(t, 30*time.Second, func() (bool, string) {
		acc, _ := p.totals("e2e_kill")
		return acc > 12000, "traffic after the last restart"
	})
	cancel()
	wait()
	e.waitExact(p, "transport", "e2e_kill", 60*time.Second)
	// After the restart the hub saw resent batches it had stored; it must
	// have answered them as duplicates rather than store them again.
	e.noDuplicatesAnywhere()
}

// TestClickHouseOutage stops ClickHouse during traffic: the hub retries,
// applies backpressure within its queue bound, and stores everything once
// ClickHouse is back.
func TestClickHouseOutage(t *testing.T) {
	e := newEnv(t)
	// A queue smaller than one agent's in-flight window (16 batches of
	// 1000 samples) so that the outage exercises the hub's bound, not
	// only the agent's window.
	e.hubExtra = "  queue_samples: 5000\n  flush_samples: 1000\n"
	e.startHub()
	port := freePort(t)
	a := e.startAgent("agent", e.agentConfig("consular", "vm-1", port, filepath.Join(e.dir, "buf"), "host_metrics: {enabled: false}\n"), port)
	p := newPusher(a.url)
	ctx, cancel := context.WithCancel(context.Background())
	wait := p.steady(ctx, t, "e2e_chdown", 1000, 50*time.Millisecond)
	waitFor(t, 30*time.Second, func() (bool, string) {
		n, _ := e.stored("consular", "e2e_chdown")
		return n > 2000, fmt.Sprintf("before the outage: %d stored", n)
	})
	ch := chserverOf(t)
	if err := ch.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = ch.Restart(context.Background())
		}
	})
	var peakQueue, capacity float64
	var peakRSS int64
	waitFor(t, 60*time.Second, func() (bool, string) {
		q := metricValue(t, e.hubURL(), "bureauhub_ingest_queue_samples", nil)
		capacity = metricValue(t, e.hubURL(), "bureauhub_ingest_queue_capacity_samples", nil)
		peakQueue = max(peakQueue, q)
		if rss, err := e.hub.RSSBytes(); err == nil {
			peakRSS = max(peakRSS, rss)
		}
		bp := metricValue(t, e.hubURL(), "bureauhub_ingest_backpressure_waits_total", nil)
		buf := metricValue(t, a.url, "bureauhub_agent_buffer_samples", nil)
		return bp > 0 && buf > 20000, fmt.Sprintf("queue %v/%v, backpressure waits %v, agent buffer %v", q, capacity, bp, buf)
	})
	if peakQueue > capacity {
		t.Errorf("hub queue reached %v samples, above its bound %v", peakQueue, capacity)
	}
	if peakRSS > 300<<20 {
		t.Errorf("hub RSS reached %d MiB during the outage", peakRSS>>20)
	}
	t.Logf("during the ClickHouse outage: hub queue peak %v of %v samples, hub RSS peak %d MiB", peakQueue, capacity, peakRSS>>20)
	if err := ch.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	restarted = true
	waitFor(t, 10*time.Second, func() (bool, string) {
		acc, _ := p.totals("e2e_chdown")
		return acc > 0, "traffic"
	})
	cancel()
	wait()
	e.waitExact(p, "consular", "e2e_chdown", 90*time.Second)
	if r := metricValue(t, e.hubURL(), "bureauhub_ingest_write_retries_total", nil); r == 0 {
		t.Errorf("hub reports no write retries, yet ClickHouse was down")
	}
}

// TestFailover gives the agent a dead hub address before the live one: it
// must move on and deliver everything.
func TestFailover(t *testing.T) {
	e := newEnv(t)
	e.startHub()
	dead := freePort(t) // nothing listens here
	port := freePort(t)
	cfg := e.agentConfig("health", "vm-1", port, filepath.Join(e.dir, "buf"), "host_metrics: {enabled: false}\n")
	cfg = strings.Replace(cfg, fmt.Sprintf("addresses: [%q]", e.hubAddr()), fmt.Sprintf("addresses: [\"127.0.0.1:%d\", %q]", dead, e.hubAddr()), 1)
	a := e.startAgent("agent", cfg, port)
	p := newPusher(a.url)
	for i := range 10 {
		if err := p.push(context.Background(), "e2e_failover", 10, 10, time.Now().UnixMilli()-60_000+int64(i)*10_000); err != nil {
			t.Fatal(err)
		}
	}
	e.waitExact(p, "health", "e2e_failover", 60*time.Second)
	if n := metricValue(t, a.url, "bureauhub_agent_ship_stream_errors_total", map[string]string{"code": "Unavailable"}); n < 1 {
		t.Errorf("the dead hub produced no Unavailable stream error (got %v): did the agent try it?", n)
	}
}
