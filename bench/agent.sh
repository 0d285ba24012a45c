#!/usr/bin/env bash
# Agent footprint benchmark: our agent (host metrics + a 10,000-series
# scrape every 15 s, shipped over TLS to a hub and ClickHouse) beside vmagent
# scraping the same target. Writes bench-out/agent.json and bench-out/agent.md.
# Extra arguments go to agentbench, e.g. `bench/agent.sh -duration 1m`
# (the default window is 5 minutes after a 30 s warm-up).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-bin}"

if ! command -v vmagent >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "vmagent not found: installing Debian's victoria-metrics" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq victoria-metrics >/dev/null || { apt-get update -qq && apt-get install -y -qq victoria-metrics >/dev/null; }
  else
    echo "vmagent is not installed: sudo apt-get install -y victoria-metrics" >&2
    exit 1
  fi
fi
./scripts/ensure-clickhouse.sh
# Only what this benchmark runs, so that it measures the current code.
go build -o "$BIN/" ./cmd/agent ./cmd/hub ./cmd/agentbench

exec "$BIN/agentbench" -bin "$BIN" -out bench-out "$@"
