#!/usr/bin/env bash
# What the agent's code costs in RSS, before it does any work: builds
# cmd/agent and a program that links the agent's packages but its scraper
# (the buffer, sink, shipper, host metrics and remote_write packages, plus
# model/textparse, model/relabel and prometheus/common/config), starts each
# on loopback, and prints binary size, package count and RSS (anon / file)
# once the process is up. File-backed RSS is the binary's mapped code and
# data. Up to commit 4dc94d7 the agent scraped with Prometheus's
# scrape package, whose config package linked the cloud SDKs of
# remote_write authentication: 780 packages and 19.7 MiB file RSS then
# (docs/benchmarks.md, "Reading the agent results").
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

floor_imports=(
	github.com/bureauhub/bureauhub/agent/buffer
	github.com/bureauhub/bureauhub/agent/hostmetrics
	github.com/bureauhub/bureauhub/agent/remotewrite
	github.com/bureauhub/bureauhub/agent/ship
	github.com/bureauhub/bureauhub/agent/sink
	github.com/prometheus/prometheus/model/relabel
	github.com/prometheus/prometheus/model/textparse
	github.com/prometheus/common/config
)
{
	echo 'package main'
	echo 'import ('
	echo '	"net/http"'
	for p in "${floor_imports[@]}"; do echo "	_ \"$p\""; done
	echo ')'
	echo 'func main() { http.ListenAndServe("127.0.0.1:"+"19199", http.NotFoundHandler()) }'
} >"$work/floor.go"
go build -o "$work/agent" ./cmd/agent
go build -o "$work/floor" "$work/floor.go"

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/token"
cat >"$work/agent.yml" <<EOF
identity: {bureau: floor, cloud: local, cluster: bench}
http_listen_address: 127.0.0.1:19198
buffer: {dir: $work/buffer}
hub: {addresses: ["127.0.0.1:1"], token_file: $work/token, insecure_plaintext: true}
scrape_configs: []
EOF

# measure NAME PORT PACKAGES CMD...: start, wait until PORT answers, print
# a row.
measure() {
	local name=$1 port=$2 pkgs=$3
	shift 3
	"$@" >"$work/$name.log" 2>&1 &
	local pid=$!
	pids+=("$pid")
	local deadline=$((SECONDS + 30))
	until curl -s -o /dev/null "http://127.0.0.1:$port/"; do
		if ((SECONDS > deadline)) || ! kill -0 "$pid" 2>/dev/null; then
			echo "bench/agent-floor.sh: $name did not start; its log:" >&2
			cat "$work/$name.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	sleep 2 # let it settle (host collection, first dial)
	local anon file
	anon=$(awk '/^RssAnon/ {print $2}' "/proc/$pid/status")
	file=$(awk '/^RssFile/ {print $2}' "/proc/$pid/status")
	printf '| %s | %.1f MB | %s | %.1f | %.1f |\n' "$name" \
		"$(echo "$(stat -c %s "$work/$name") / 1000000" | bc -l)" "$pkgs" \
		"$(echo "$anon / 1024" | bc -l)" "$(echo "$file / 1024" | bc -l)"
	kill "$pid"
}

echo "| binary | size | packages | RSS anon (MiB) | RSS file (MiB) |"
echo "|---|---:|---:|---:|---:|"
measure agent 19198 "$(go list -deps ./cmd/agent | wc -l)" "$work/agent" -config.file "$work/agent.yml"
measure floor 19199 "$(go list -deps "${floor_imports[@]}" | sort -u | wc -l)" "$work/floor"
