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
	{
		// chunks holds compacted samples: the raw samples of a finished UTC
		// day, per series, as chunks (package chunk) of up to
		// chunkSamples samples each (see compact.go). A chunk never
		// spans two days, so it sits in its day's partition and retention
		// drops the same partitions here as in samples.
		// The key puts the series of one metric side by side, and granules
		// are small (a chunk row carries up to a few KiB of data): a query
		// names its tenants, metric names and fingerprints, and reads the
		// granules that hold them rather than data of the whole day. The
		// key ends with the chunk's hash: a compaction run again after a
		// crash writes identical rows, which the engine folds, and never
		// folds two different chunks that start at the same timestamp.
		// (This table changed before any release: version 2 of the schema
		// is this one.)
		`CREATE TABLE IF NOT EXISTS {db}.chunks (
			tenant LowCardinality(String),
			metric_name LowCardinality(String),
			fingerprint UInt64,
			min_ts Int64,
			max_ts Int64,
			hash UInt64,
			samples UInt32,
			data String
		) ENGINE = ReplacingMergeTree()
		PARTITION BY toYYYYMMDD(toDateTime(intDiv(min_ts, 1000)), 'UTC')
		ORDER BY (tenant, metric_name, fingerprint, min_ts, hash)
		SETTINGS index_granularity = 1024`,
	},
}

// SchemaVersion is the schema version this build migrates to.
var SchemaVersion = len(migrations)
