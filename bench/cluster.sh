#!/usr/bin/env bash
# Hub cluster benchmark: ingest throughput and rule-evaluation latency of
# one hub alone beside the same hub as one of three (same data, same run),
# then failover: SIGKILL a rule group's owner, time the first evaluation
# by the new owner, restart the killed hub; 20 trials at a 15 s evaluation
# interval with hub/cluster's default failure detection. Writes
# $BENCH_OUT/cluster.md and $BENCH_OUT/cluster.json; bench/docs.sh copies
# the report into docs/benchmarks.md.
#
# Usage: bench/cluster.sh [clusterbench flags...]  e.g. bench/cluster.sh -short
# or bench/cluster.sh -trials 5 (bin/clusterbench -h lists them). Takes
# about 13 minutes on 2 cores (the 20 failover trials about 9 of them;
# -rounds 1 saves 2); -short about 3.
set -euo pipefail

cd "$(dirname "$0")/.."
BIN="${BIN:-bin}"
OUT="${BENCH_OUT:-bench-out}"

log() { echo "bench/cluster.sh: $*" >&2; }

./scripts/ensure-clickhouse.sh

# Only what this benchmark runs, built now, so that it measures the
# current code.
log "building cmd/hub and cmd/clusterbench into $BIN/"
go build -o "$BIN/" ./cmd/hub ./cmd/clusterbench

cmd=("$BIN/clusterbench" -hub-binary "$BIN/hub" -out "$OUT" -command "bench/cluster.sh${*:+ $*}" "$@")
log "running: ${cmd[*]}"
# clusterbench stops every process it started when it ends or is
# signalled (and its children die with it); pass our signals on and wait.
"${cmd[@]}" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM
status=0
wait "$pid" || status=$?
while kill -0 "$pid" 2>/dev/null; do
	wait "$pid" || status=$?
done
exit "$status"
