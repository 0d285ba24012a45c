#!/usr/bin/env bash
# Alerting benchmark: pipeline latency from a surge in scraped data to the
# webhook (agent -> hub -> rules -> alerting, 5 s scrape and evaluation
# intervals, for: 0, group_wait: 0) beside Prometheus + Alertmanager fed by
# the same targets at the same time; then notification throughput and
# memory with 10,000 active alerts across 50 tenants beside Alertmanager.
# Writes $BENCH_OUT/alerting.md and $BENCH_OUT/alerting.json; bench/docs.sh
# copies the report into docs/benchmarks.md.
#
# Usage: bench/alerting.sh [alertbench flags...]  e.g. bench/alerting.sh -short
# (bin/alertbench -h lists them). Takes about 6 minutes on 2 cores. The
# peers (Debian's prometheus and prometheus-alertmanager) are installed
# when running as root, else skipped and reported as skipped.
set -euo pipefail

cd "$(dirname "$0")/.."
BIN="${BIN:-bin}"
OUT="${BENCH_OUT:-bench-out}"

. bench/lib.sh

./scripts/ensure-clickhouse.sh

peer_args=()
if ! have prometheus; then
	apt_install prometheus || log "Prometheus missing and not installable: the latency baseline will be skipped"
fi
if ! have prometheus-alertmanager; then
	apt_install prometheus-alertmanager || log "Alertmanager missing and not installable: the baselines will be skipped"
fi
have prometheus || peer_args+=(-prometheus-binary "")
have prometheus-alertmanager || peer_args+=(-alertmanager-binary "")

# Only what this benchmark runs, built now, so that it measures the
# current code.
log "building cmd/hub, cmd/agent and cmd/alertbench into $BIN/"
go build -o "$BIN/" ./cmd/hub ./cmd/agent ./cmd/alertbench

cmd=("$BIN/alertbench" -hub-binary "$BIN/hub" -agent-binary "$BIN/agent" -out "$OUT" -command "bench/alerting.sh${*:+ $*}" ${peer_args[@]+"${peer_args[@]}"} "$@")
log "running: ${cmd[*]}"
# alertbench stops every process it started when it ends or is signalled
# (and its children die with it); pass our signals on and wait for it.
"${cmd[@]}" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM
status=0
wait "$pid" || status=$?
while kill -0 "$pid" 2>/dev/null; do
	wait "$pid" || status=$?
done
exit "$status"
