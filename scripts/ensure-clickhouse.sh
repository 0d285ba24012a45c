#!/usr/bin/env bash
# Makes sure a clickhouse-server binary is available: installs Debian's
# package when running as root, otherwise says exactly what to install.
set -euo pipefail
if command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ] || command -v clickhouse >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "clickhouse-server not found: installing Debian's clickhouse-server and clickhouse-client" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
  exit 0
fi
cat >&2 <<'MSG'
clickhouse-server is not installed. Install it, then run this again:
  sudo apt-get update && sudo apt-get install -y clickhouse-server clickhouse-client
(or any ClickHouse release that provides a `clickhouse-server` or `clickhouse` binary on PATH)
MSG
exit 1
