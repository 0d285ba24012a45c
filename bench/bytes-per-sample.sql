-- Synthetic node-like load for docs/storage.md: 2,000 series x 5,760 samples.
-- Run against a database holding the hub's schema (e.g. the demo's `bureauhub`):
--   clickhouse-client --port PORT --multiquery < bench/bytes-per-sample.sql
INSERT INTO bureauhub.samples (tenant, fingerprint, ts, value)
SELECT 'bench', cityHash64(s) AS fp, 1763683200000 + i * 15000 + (cityHash64(s, i) % 7) AS ts,
       multiIf(s % 5 < 2, toFloat64(i * (s % 100 + 1) * 37 + (cityHash64(s, i) % 13)),
               s % 5 < 4, toFloat64(s % 3),
               (cityHash64(s, i) % 10000) / 100.0)
FROM (SELECT number % 2000 AS s, intDiv(number, 2000) AS i FROM numbers(11520000));
OPTIMIZE TABLE bureauhub.samples FINAL;
SELECT sum(rows) AS rows, sum(bytes_on_disk) AS bytes, sum(bytes_on_disk) / sum(rows) AS bytes_per_sample
FROM system.parts WHERE database = 'bureauhub' AND table = 'samples' AND active;
