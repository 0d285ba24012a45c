#!/usr/bin/env bash
# Copies the agent footprint, query and reference-service results
# (bench-out/agent.md, query.md, refsvc.md, autoscale.md) into docs/benchmarks.md between their markers,
# appending a section the first time. The ingest section is written by
# bench/run.sh itself.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-bench-out}
docs=docs/benchmarks.md
for name in agent query refsvc autoscale alerting cluster; do
	src="$out/$name.md"
	if [ ! -s "$src" ]; then
		echo "bench/docs.sh: no $src; leaving the $name section as it is" >&2
		continue
	fi
	begin="<!-- BEGIN $name: written by bench/docs.sh from $src; edits between these markers are overwritten -->"
	end="<!-- END $name -->"
	if ! grep -q "^<!-- BEGIN $name" "$docs"; then
		case $name in
		agent) title="Agent footprint" ;;
		query) title="Query latency and rule evaluation" ;;
		refsvc) title="Reference services: fixed replica counts (autoscaling baseline)" ;;
		autoscale) title="Autoscaling: fixed vs reactive vs predictive" ;;
		alerting) title="Alerting: pipeline latency and throughput" ;;
		cluster) title="Hub cluster: cost and failover" ;;
		esac
		printf '\n## %s\n\n%s\n%s\n' "$title" "$begin" "$end" >>"$docs"
	fi
	python3 - "$docs" "$src" "$name" "$begin" <<'PY'
import re, sys
docs, src, name, begin = sys.argv[1:]
text = open(docs).read()
body = open(src).read().strip()
# The section heading is ours; drop the report's own.
if body.startswith("## "):
    body = body.split("\n", 1)[1].strip() if "\n" in body else ""
pat = re.compile(r"<!-- BEGIN " + re.escape(name) + r"[^\n]*-->\n.*?<!-- END " + re.escape(name) + r" -->", re.S)
text = pat.sub(lambda m: begin + "\n" + body + "\n<!-- END " + name + " -->", text, count=1)
open(docs, "w").write(text)
PY
	echo "bench/docs.sh: wrote the $name section of $docs" >&2
done
