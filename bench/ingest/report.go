package ingest

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// report writes ingest.json and ingest.md and prints the markdown to out.
func (r *runner) report(out io.Writer) error {
	if err := writeJSON(filepath.Join(r.cfg.OutDir, "ingest.json"), r.res); err != nil {
		return err
	}
	md := Markdown(r.res)
	if err := os.WriteFile(filepath.Join(r.cfg.OutDir, "ingest.md"), []byte(md), 0o644); err != nil {
		return err
	}
	_, err := io.WriteString(out, md)
	return err
}

// Markdown renders results as the tables of docs/benchmarks.md.
func Markdown(res *Results) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	l := res.Load
	p("**Load.** %d node_exporter-like series: %d hosts of %d series (%d metric names; instance, job, datacenter, environment, rack, role, plus cpu/mode, device, fstype/mountpoint, collector or chip/sensor where the metric has them: %.1f labels per series on average). ",
		l.Series, l.Hosts, l.SeriesPerHost, l.MetricNames, l.LabelsPerSeries)
	p("One sample per series per round, timestamps 15 s apart per series (0-4 ms jitter, hosts spread over the interval) from %s, sent as fast as the target takes them. ", l.FirstTimestamp)
	p("Counters grow (cpu seconds, network and disk bytes), gauges mostly hold or drift. Batches of %d samples: %.1f bytes/sample as protobuf, %.1f after snappy.\n\n",
		l.BatchSamples, l.RawBytesPerSample, l.SnappyBytesPerSample)
	tls := "plain HTTP"
	if l.PeerTLS {
		tls = "TLS"
	}
	p("**Senders.** bureauhub: %d federation streams (one agent_id each), TLS and bearer token, up to %d batches in flight per stream; a batch counts when its Ack says stored (the hub acks after the ClickHouse insert). ", l.Streams, l.Inflight)
	p("Peers: remote_write 1.0 over %s, %d senders with one request in flight each (Prometheus' shards), each owning its series; a batch counts on HTTP 2xx. ", tls, l.Senders)
	p("All senders keep within a few scrape rounds of each other. Client CPU is this generator's (encoding, snappy, TLS), on the same %d cores.\n\n", res.Machine.CPUs)
	if len(res.Machine.Versions) > 0 {
		names := make([]string, 0, len(res.Machine.Versions))
		for n := range res.Machine.Versions {
			names = append(names, n)
		}
		sort.Strings(names)
		var vs []string
		for _, n := range names {
			vs = append(vs, fmt.Sprintf("%s: %s", n, res.Machine.Versions[n]))
		}
		p("**Versions.** %s.\n\n", strings.Join(vs, "; "))
	}

	var main, sweep []*Measurement
	for _, m := range res.Runs {
		if m.Role == "sweep" {
			sweep = append(sweep, m)
		} else {
			main = append(main, m)
		}
	}
	if len(main) > 0 {
		p("| target | setting | samples/s (acked) | per second: min / median / max | server CPU s/s | samples per server CPU-s | peak RSS | client CPU s/s | other processes' CPU s/s | ack latency p50 / p99 | failed batches |\n")
		p("|---|---|---:|---|---|---:|---|---:|---:|---|---:|\n")
		for _, m := range main {
			p("| %s | %s | **%s** | %s / %s / %s | %s | %s | %s | %.2f | %.2f | %.0f / %.0f ms | %d |\n",
				m.Target, m.Setting, num(m.SamplesPerSecond), num(m.PerSecondMin), num(m.PerSecondMedian), num(m.PerSecondMax),
				procCPU(m), num(m.SamplesPerCPUSecond), procRSS(m), m.ClientCPU, m.OtherCPU, m.AckP50Millis, m.AckP99Millis, m.FailedBatches)
		}
		p("\nWindow: %.0f s after %.0f s of warm-up.\n\n", main[0].DurationSeconds, main[0].WarmupSeconds)
	}
	if len(sweep) > 0 {
		p("**Hub settings** (short runs, %.0f s window after %.0f s warm-up, fresh ClickHouse each; the fastest, %s, ran as the main run):\n\n", sweep[0].DurationSeconds, sweep[0].WarmupSeconds, res.BestHubSetting)
		p("| flush_samples x writers | samples/s | samples per server CPU-s | hub CPU s/s | ClickHouse CPU s/s | other processes' CPU s/s | peak RSS hub / ClickHouse | mean insert (samples) | mean samples insert / progress insert |\n|---|---:|---:|---:|---:|---:|---|---:|---|\n")
		for _, m := range sweep {
			p("| %s | %s | %s | %.2f | %.2f | %.2f | %s / %s | %s | %.0f / %.0f ms |\n", settingOf(m), num(m.SamplesPerSecond), num(m.SamplesPerCPUSecond), procOf(m, "hub").CPU, procOf(m, "clickhouse").CPU, m.OtherCPU,
				mib(procOf(m, "hub").PeakRSSBytes), mib(procOf(m, "clickhouse").PeakRSSBytes), num(m.Metrics["avg_insert_samples"]),
				m.Metrics["avg_samples_insert_ms"], m.Metrics["avg_progress_insert_ms"])
		}
		p("\n")
	}
	if ratios := ratioLines(main); len(ratios) > 0 {
		p("**Ratios** (bureauhub = hub + ClickHouse):\n\n")
		for _, line := range ratios {
			p("- %s\n", line)
		}
		p("\n")
	}
	if len(res.Storage) > 0 {
		p("**Bytes per stored sample** (each store holds what it ingested in its own run, so samples per series differ; compression improves with longer series)\n\n")
		p("| store | method | bytes/sample | samples | samples per series | bytes | notes |\n|---|---|---:|---:|---:|---:|---|\n")
		for _, s := range res.Storage {
			name := s.Target
			note := s.Note
			if s.Target == targetHub {
				name = "ClickHouse `" + cmp.Or(s.Table, "samples") + "`"
				cols := make([]string, 0, len(s.Columns))
				for c := range s.Columns {
					cols = append(cols, c)
				}
				sort.Strings(cols)
				var parts []string
				for _, c := range cols {
					parts = append(parts, fmt.Sprintf("%s %.3f", c, s.Columns[c]))
				}
				note = "by column: " + strings.Join(parts, ", ") + "; " + note
			}
			perSeries := float64(s.Samples) / float64(max(1, l.Series))
			p("| %s | %s | **%.3f** | %s | %.0f | %s | %s |\n", name, s.Method, s.BytesPerSample, num(float64(s.Samples)), perSeries, num(float64(s.Bytes)), note)
			if s.Target == targetHub && s.Table != "chunks" {
				p("| ClickHouse `series`, amortised | %s | %.4f | | | %s | %s rows, one per series and day |\n", s.Method, s.SeriesBytesPerSample, num(float64(s.SeriesBytes)), num(float64(s.SeriesRows)))
			}
		}
		p("\n")
	}
	var notes []string
	for _, m := range res.Runs {
		label := m.Target
		if m.Role == "sweep" {
			label += " " + settingOf(m)
		}
		if m.StoredSamples >= 0 {
			notes = append(notes, fmt.Sprintf("%s: %s samples acknowledged, %s stored by its own count", label, num(float64(m.AckedSamples)), num(float64(m.StoredSamples))))
		}
		for _, n := range m.Notes {
			notes = append(notes, label+": "+n)
		}
		if len(m.Errors) > 0 {
			var es []string
			for e, c := range m.Errors {
				es = append(es, fmt.Sprintf("%dx %q", c, e))
			}
			sort.Strings(es)
			notes = append(notes, label+" errors: "+strings.Join(es, "; "))
		}
	}
	for _, s := range res.Skipped {
		notes = append(notes, fmt.Sprintf("%s skipped: %s", s.Target, s.Reason))
	}
	if len(notes) > 0 {
		p("**Checks and notes**\n\n")
		for _, n := range notes {
			p("- %s\n", n)
		}
		p("\n")
	}
	return b.String()
}

func ratioLines(main []*Measurement) []string {
	var hub *Measurement
	for _, m := range main {
		if m.Target == targetHub {
			hub = m
		}
	}
	if hub == nil {
		return nil
	}
	var out []string
	for _, m := range main {
		if m.Target == targetHub || m.SamplesPerSecond == 0 {
			continue
		}
		line := fmt.Sprintf("bureauhub / %s: throughput **%.2fx**", m.Target, hub.SamplesPerSecond/m.SamplesPerSecond)
		if m.SamplesPerCPUSecond > 0 {
			line += fmt.Sprintf(", samples per server CPU-second %.2fx", hub.SamplesPerCPUSecond/m.SamplesPerCPUSecond)
		}
		if m.PeakRSSBytes > 0 {
			line += fmt.Sprintf(", peak RSS %.2fx", float64(hub.PeakRSSBytes)/float64(m.PeakRSSBytes))
		}
		out = append(out, line)
	}
	return out
}

func settingOf(m *Measurement) string {
	var flush, writers int
	for _, f := range strings.Split(m.Setting, ", ") {
		fmt.Sscanf(f, "flush_samples=%d", &flush)
		fmt.Sscanf(f, "writers=%d", &writers)
	}
	return HubSetting{flush, writers}.String()
}

func procOf(m *Measurement, name string) ProcStats {
	for _, p := range m.Processes {
		if p.Name == name {
			return p
		}
	}
	return ProcStats{}
}

func procCPU(m *Measurement) string {
	if len(m.Processes) == 1 {
		return fmt.Sprintf("%.2f", m.TargetCPU)
	}
	var parts []string
	for _, p := range m.Processes {
		parts = append(parts, fmt.Sprintf("%s %.2f", p.Name, p.CPU))
	}
	return fmt.Sprintf("%.2f (%s)", m.TargetCPU, strings.Join(parts, " + "))
}

func procRSS(m *Measurement) string {
	if len(m.Processes) == 1 {
		return mib(m.PeakRSSBytes)
	}
	var parts []string
	for _, p := range m.Processes {
		parts = append(parts, fmt.Sprintf("%s %s", p.Name, mib(p.PeakRSSBytes)))
	}
	return fmt.Sprintf("%s (%s)", mib(m.PeakRSSBytes), strings.Join(parts, " + "))
}

// num formats a count with thousands separators.
func num(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
