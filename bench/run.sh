#!/usr/bin/env bash
# Ingest benchmark (what `make bench` runs for ingest): bureauhub's hub and
# ClickHouse against VictoriaMetrics and Prometheus fed the same
# node_exporter-like load, in one run on this machine; then it rewrites the
# ingest section of docs/benchmarks.md with the results.
#
# Usage: bench/run.sh [ingestbench flags...]   e.g. bench/run.sh -duration 30s
# Environment: BENCH_OUT (default bench-out) holds binaries, ingest.json and
# ingest.md; BENCH_DOCS=0 leaves docs/benchmarks.md alone.
set -euo pipefail

cd "$(dirname "$0")/.."
out=${BENCH_OUT:-bench-out}
docs=docs/benchmarks.md
mkdir -p "$out/bin"

. bench/lib.sh

if ! have clickhouse-server && ! have clickhouse; then
	log "clickhouse-server missing; installing Debian's clickhouse-server"
	apt_install clickhouse-server || { log "the hub needs ClickHouse; giving up"; exit 1; }
fi

# The peers: each one that cannot be installed is skipped, and ingestbench
# records why.
peer_args=()
missing=()
have victoria-metrics || missing+=(victoria-metrics)
have prometheus || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	if ! apt_install "${missing[@]}"; then
		for p in "${missing[@]}"; do
			if ! apt_install "$p"; then
				log "skipping $p: it is not installed and could not be installed"
			fi
		done
	fi
fi
have victoria-metrics || peer_args+=(-vm-binary "")
have prometheus || peer_args+=(-prometheus-binary "")

log "building cmd/hub and cmd/ingestbench"
go build -o "$out/bin/" ./cmd/hub ./cmd/ingestbench

cmd=("$out/bin/ingestbench" -hub-binary "$out/bin/hub" -out "$out" ${peer_args[@]+"${peer_args[@]}"} "$@")
log "running: ${cmd[*]}"
"${cmd[@]}"

[ "${BENCH_DOCS:-1}" = 0 ] && exit 0

mem_gib=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
section=$(mktemp)
trap 'rm -f "$section"' EXIT
{
	echo "<!-- BEGIN ingest: written by bench/run.sh; edits between these markers are overwritten -->"
	echo "Run $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) CPUs ($model), $mem_gib GiB memory, Linux $(uname -r); other work on the machine was not stopped (see the \"other processes\" column)."
	echo
	echo "Command: \`bench/run.sh${*:+ $*}\`, which ran \`${cmd[*]}\`."
	echo
	cat "$out/ingest.md"
	echo "<!-- END ingest -->"
} >"$section"

if [ ! -f "$docs" ]; then
	mkdir -p "$(dirname "$docs")"
	printf '# Benchmarks\n' >"$docs"
fi
if grep -q '^<!-- BEGIN ingest' "$docs"; then
	awk -v section="$section" '
		/^<!-- BEGIN ingest/ { while ((getline line < section) > 0) print line; skip = 1; next }
		/^<!-- END ingest -->/ { skip = 0; next }
		!skip { print }
	' "$docs" >"$docs.tmp"
	mv "$docs.tmp" "$docs"
else
	{ printf '\n## Ingest\n\n'; cat "$section"; } >>"$docs"
fi
log "updated the ingest section of $docs"
