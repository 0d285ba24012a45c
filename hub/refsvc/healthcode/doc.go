// Package healthcode is the health-code scan reference service: the system
// that failed under the 07:40 morning surge, when everyone entering the
// metro or an office scanned their code at once. Its HTTP API is in
// docs/refsvc.md:
//
//	GET  /api/v1/codes/{id}   a scan: the person's Code
//	POST /api/v1/results      record a nucleic-acid result (ResultRequest), answers the new Code
//
// # Population and store
//
// Config.Population people, PersonID(0) to PersonID(Population-1), are
// seeded deterministically from Config.Seed and Config.SeedTime (see
// seedRecord) into one bbolt file on first open, in batched transactions;
// 100000 people take well under a second. Results recorded later are in
// the same file and survive a restart. All replicas of a Service share the
// file; bbolt's file lock keeps a second process (or Service) out.
//
// # Colours
//
// A code's colour is computed when it is answered, from the latest test and
// the simulated time (so codes turn yellow as tests lapse, with no writes):
// red if the latest result is positive; green if it is negative and less
// than 72 simulated hours old; yellow otherwise. A result older than the
// person's latest test is accepted (200) but changes nothing.
//
// # Caching and staleness
//
// Each replica caches people (not colours) in a sharded LRU of
// Config.Cache.Size entries. Staleness is bounded twice:
//   - A recorded result invalidates that person in every replica's cache
//     before POST /api/v1/results answers, and fills that raced with the
//     update are discarded (see cache). So a scan that starts after a
//     successful POST has returned, on any replica, answers that result or
//     a later one: zero staleness for updates made through the Service.
//   - Independently, a cached person is reread from the store at the
//     latest Config.Cache.TTL (wall time) after it was cached. This bounds
//     staleness from writes the Service does not see; there are none today.
//
// A scan in flight while a POST is in flight may answer either the old or
// the new code.
//
// # Metrics
//
// Each replica registers on its own registry:
//   - healthcode_scans_total{colour,outcome}: outcome ok (colour green,
//     yellow or red), not_found, bad_id, error (capacity refusal, client
//     gone, store error; colour none).
//   - healthcode_scan_duration_seconds: scan latency from arrival,
//     including the wait for capacity.
//   - healthcode_cache_requests_total{result="hit|miss"}: cache lookups
//     of existing people; hit ratio is hit / (hit + miss).
//   - healthcode_cache_evictions_total{reason="capacity|expired"},
//     healthcode_cache_invalidations_total, healthcode_cache_entries.
//   - healthcode_updates_total{outcome="applied|superseded"}.
//   - healthcode_http_requests_total{endpoint="scan|result|other",code}.
//   - refsvc_capacity_*: from hub/refsvc/capacity.
//
// The Service registers healthcode_population and
// healthcode_seed_duration_seconds on the registerer given to New.
package healthcode
