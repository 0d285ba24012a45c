#!/usr/bin/env bash
# Query benchmark: PromQL range-query latency (p50/p95) of a dashboard-like
# set of queries and the evaluation time of the shipped rule files, on the
# hub over ClickHouse beside Prometheus and VictoriaMetrics holding the same
# generated data (10,000 series x 24 h at 15 s by default), all on loopback
# on this machine. Writes $BENCH_OUT/query.md and $BENCH_OUT/query.json (and
# the hub's CPU profile, query-hub.cpu.pprof and .txt).
#
# Usage: bench/query.sh [querybench flags...]  e.g. bench/query.sh -reps 5
# (bin/querybench -h lists them). Needs about 11 GB of free disk in
# $BENCH_OUT while it runs (the OpenMetrics file promtool reads) and takes
# about 10-15 minutes on 2 cores. Peers that are missing are installed from
# Debian's packages when running as root, else skipped and reported.
set -euo pipefail

cd "$(dirname "$0")/.."
BIN="${BIN:-bin}"
OUT="${BENCH_OUT:-bench-out}"

. bench/lib.sh

./scripts/ensure-clickhouse.sh

# Debian's prometheus package brings promtool, which writes the blocks.
peer_args=()
if ! have prometheus || ! have promtool; then
	apt_install prometheus || log "skipping Prometheus: not installed and could not be installed"
fi
if ! have victoria-metrics; then
	apt_install victoria-metrics || log "skipping VictoriaMetrics: not installed and could not be installed"
fi
{ have prometheus && have promtool; } || peer_args+=(-prometheus-binary "")
have victoria-metrics || peer_args+=(-vm-binary "")

# Only what this benchmark runs, built now, so that it measures the
# current code.
log "building cmd/hub and cmd/querybench into $BIN/"
go build -o "$BIN/" ./cmd/hub ./cmd/querybench

cmd=("$BIN/querybench" -hub-binary "$BIN/hub" -out "$OUT" -command "bench/query.sh${*:+ $*}" ${peer_args[@]+"${peer_args[@]}"} "$@")
log "running: ${cmd[*]}"
# querybench stops every process it started when it ends or is signalled
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
