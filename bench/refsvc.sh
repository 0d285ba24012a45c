#!/usr/bin/env bash
# Reference-services baseline: the healthcode-0740 surge replayed against
# the real health-code service at fixed replica counts (2, 5, 10, 20), all
# in one process on loopback. Writes $BENCH_OUT/refsvc.md and refsvc.json;
# about 4-5 minutes. Usage: bench/refsvc.sh [refsvcbench flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-bin}"
OUT="${BENCH_OUT:-bench-out}"
mkdir -p "$OUT"
"$BIN/refsvcbench" -out "$OUT" "$@"
