#!/usr/bin/env bash
# Autoscaling: the healthcode-0740 and visa-release scenarios replayed,
# time compressed, against the real reference services three ways (fixed
# replicas, the reactive HPA rule, the hub's predictive autoscaler), all in
# one process on loopback. Writes $BENCH_OUT/autoscale.md and
# autoscale.json; about 11 minutes (each scenario: 3 history days, then the
# predictive, reactive and fixed replays of the compared day). Usage: bench/autoscale.sh [autoscalebench flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-bin}"
OUT="${BENCH_OUT:-bench-out}"
mkdir -p "$OUT"
"$BIN/autoscalebench" -out "$OUT" "$@"
