package clickhouse

// migrations are applied in order; migration i has version i+1. A migration
// is never edited once released: add a new one. Every statement must run on
// ClickHouse 18.16 and on current releases (see docs/storage.md), so there
// are no TTL clauses, codecs, DateTime64 or Map columns.
//
// The placeholder {db} is replaced by the configured database name.
var migrations = [][]string{
	{
		// series holds one row per (tenant, series, day the series was
		// written). ORDER BY starts with tenant and metric name because
		// every query selects series by tenant and, nearly always, by
		// name; the day lets a query skip series not active in its range.
		// ReplacingMergeTree folds the rows that each hub process writes
		// again after a restart.
		`CREATE TABLE IF NOT EXISTS {db}.series (
			tenant LowCardinality(String),
			date Date,
			fingerprint UInt64,
			metric_name LowCardinality(String),
			label_names Array(String),
			label_values Array(String)
		) ENGINE = ReplacingMergeTree()
		PARTITION BY toYYYYMM(date)
		ORDER BY (tenant, metric_name, fingerprint, date)`,
		// samples is ordered for time-range reads of one series and
		// partitioned by UTC day, so retention drops whole partitions.
		`CREATE TABLE IF NOT EXISTS {db}.samples (
			tenant LowCardinality(String),
			fingerprint UInt64,
			ts Int64,
			value Float64
		) ENGINE = MergeTree()
		PARTITION BY toYYYYMMDD(toDateTime(intDiv(ts, 1000)), 'UTC')
		ORDER BY (tenant, fingerprint, ts)`,
		// agent_progress records, per agent buffer incarnation, the highest
		// batch sequence number whose samples (and every earlier batch's
		// this hub received) are stored. Hubs load it at start to
		// deduplicate batches resent after a lost acknowledgement.
		`CREATE TABLE IF NOT EXISTS {db}.agent_progress (
			tenant LowCardinality(String),
			agent_id String,
			seq UInt64,
			updated DateTime
		) ENGINE = ReplacingMergeTree(seq)
		PARTITION BY tuple()
		ORDER BY (tenant, agent_id)`,
	},
}

// SchemaVersion is the schema version this build migrates to.
var SchemaVersion = len(migrations)
