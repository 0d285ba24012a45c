#!/usr/bin/env bash
# Raw-samples layout experiment behind docs/benchmarks.md ("This benchmark
# compacts every day"): on a ClickHouse holding a querybench load kept raw
# (bin/querybench -compact=false -keep -work DIR ...; start its server with
# clickhouse-server --config-file=DIR/clickhouse/config.xml), copies the
# samples table into two other layouts and times the hub's raw read of
# cpu-by-bureau's series over the last hour and the last day in each:
#   samples       ORDER BY (tenant, fingerprint, ts), 8192-row granules (the hub's)
#   samples_g256  the same key, 256-row granules
#   samples_h     ORDER BY (tenant, hour, fingerprint, ts)
# Prints seconds per run (3 runs), rows read and bytes on disk; drops the copies.
#
# Usage: bench/raw-layout.sh TCP_PORT
set -euo pipefail
port="${1:?usage: bench/raw-layout.sh TCP_PORT}"
ch() { clickhouse-client --port "$port" --max_query_size=10000000 --allow_experimental_low_cardinality_type=1 "$@"; }
db=bureauhub
ch -q "DROP TABLE IF EXISTS $db.samples_g256"
ch -q "DROP TABLE IF EXISTS $db.samples_h"
trap 'ch -q "DROP TABLE IF EXISTS $db.samples_g256"; ch -q "DROP TABLE IF EXISTS $db.samples_h"' EXIT
cols="tenant LowCardinality(String), fingerprint UInt64, ts Int64, value Float64"
part="PARTITION BY toYYYYMMDD(toDateTime(intDiv(ts, 1000)), 'UTC')"
ch -q "CREATE TABLE $db.samples_g256 ($cols) ENGINE = MergeTree() $part ORDER BY (tenant, fingerprint, ts) SETTINGS index_granularity = 256"
ch -q "CREATE TABLE $db.samples_h ($cols, hour UInt32 MATERIALIZED toUInt32(intDiv(ts, 3600000))) ENGINE = MergeTree() $part ORDER BY (tenant, hour, fingerprint, ts)"
for t in samples_g256 samples_h; do
	ch -q "INSERT INTO $db.$t (tenant, fingerprint, ts, value) SELECT tenant, fingerprint, ts, value FROM $db.samples"
	ch -q "OPTIMIZE TABLE $db.$t FINAL"
done
ch -q "OPTIMIZE TABLE $db.samples FINAL"
end=$(ch -q "SELECT max(ts) FROM $db.samples")
# The hub's condition: one clause per tenant, its fingerprints listed.
cond=$(ch -q "SELECT arrayStringConcat(groupArray(c), ' OR ') FROM (SELECT concat('(tenant = ''', tenant, ''' AND fingerprint IN (', arrayStringConcat(groupArray(toString(fingerprint)), ', '), '))') AS c FROM (SELECT DISTINCT tenant, fingerprint FROM $db.series WHERE metric_name = 'node_cpu_seconds_total' AND label_values[indexOf(label_names, 'mode')] != 'idle') GROUP BY tenant) FORMAT TabSeparatedRaw")
packed="arrayStringConcat(groupArray(concat(toFixedString(reinterpretAsString(ts), 8), toFixedString(reinterpretAsString(value), 8), '|')))"
for span in 3900000 86400000; do
	mint=$((end - span))
	for t in samples samples_g256 samples_h; do
		extra=""
		[ "$t" = samples_h ] && extra="AND hour >= $((mint / 3600000)) AND hour <= $((end / 3600000))"
		q="SELECT tenant, fingerprint, $packed FROM $db.$t WHERE ($cond) $extra AND ts >= $mint AND ts <= $end GROUP BY tenant, fingerprint FORMAT Null"
		times=""
		for _ in 1 2 3; do times+="$(echo "$q" | ch --log_queries=1 --time 2>&1 | tail -1) "; done
		echo "span ${span}ms $t: seconds $times"
	done
done
ch -q "SYSTEM FLUSH LOGS"
ch -q "SELECT substring(query, position(query, 'FROM $db.') + 5 + length('$db'), 14) AS tbl, if(position(query, '$((end - 86400000))') > 0, 'day', 'hour') AS span, median(read_rows) AS rows_read, median(query_duration_ms) AS ms FROM system.query_log WHERE type = 2 AND query LIKE '%groupArray(concat(toFixedString%' AND event_time > now() - 600 GROUP BY tbl, span ORDER BY span, tbl FORMAT PrettyCompact"
ch -q "SELECT table, sum(rows) AS rows, sum(bytes_on_disk) AS bytes FROM system.parts WHERE database = '$db' AND active AND table LIKE 'samples%' GROUP BY table ORDER BY table FORMAT PrettyCompact"
