#!/usr/bin/env bash
# Makes sure everything `make test` drives is installed: ClickHouse (the
# integration and end-to-end tests start their own server), Chromium (the
# console's browser test), docker-compose (validates docker-compose.yml;
# no Docker engine is needed) and Node.js with npm (the Grafana plugin's
# frontend). As root with apt-get it installs what is missing from
# Debian's packages; otherwise it says exactly what to install.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/ensure-clickhouse.sh

have() { command -v "$1" >/dev/null 2>&1; }
missing=()
have chromium || have chromium-browser || missing+=(chromium)
have docker-compose || missing+=(docker-compose)
have node || missing+=(nodejs)
have npm || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && have apt-get; then
	echo "installing test dependencies from Debian: ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	exit 0
fi
echo "make test needs: ${missing[*]}; install them with:" >&2
echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
exit 1
