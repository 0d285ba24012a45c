// Package booking is the visa booking reference service (docs/refsvc.md):
// consulates, visa types and daily appointment slots released on a
// schedule, booked with idempotency keys, held for a payment window, paid
// or cancelled, behind rate limits and a waiting room. It implements
// refsvc.Service; cmd/booking runs it standalone.
//
// # Slots and releases
//
// A visa type at a consulate offers SlotsPerDay appointments a day, spread
// round-robin over its appointment times; slot i of a day is at time
// i mod len(times) with sequence number i/len(times)+1, giving IDs like
// beijing/tourist/2026-11-21/0930-07. Releases fire on the simulated
// clock at "HH:MM" every day or at "Weekday HH:MM" once a week. A firing
// on day D adds its fraction of the daily slots (rounded up) to every day
// D+1 .. D+DaysAhead not yet fully released, lowest slot indexes first, so
// each batch spreads over all times of day. With 30% at 08:00, 30% at
// 12:00 and 40% at 18:00 a day opens in three batches when it enters the
// booking window; with "Monday 10:00" at 100% the whole window opens each
// Monday. The store keeps how many slots of each day are released and the
// time up to which firings have been applied, in the same transaction, so
// after a restart Run applies exactly the firings it missed, never one
// twice. A new store starts from the current simulated midnight.
//
// # Store
//
// State lives in bbolt (go.etcd.io/bbolt): embedded, one file, no server
// to run, and its read-write transactions are serialized and ACID (fsync
// on commit unless store.no_sync), so the check-and-set "slot free?
// then hold it and remember the idempotency key" is one transaction and
// no slot is ever booked twice, whatever the concurrency. Replicas of a
// Service live in one process and share its one DB handle. Separate
// processes cannot share a bbolt file (the first holds an exclusive file
// lock; a second New on the same path fails after one second), so the
// booking service scales by replicas in one process, not by processes.
// A restart loses no committed booking. Old days' data is not pruned.
//
// # Bookings
//
// POST /api/v1/bookings needs an Idempotency-Key (global, not per client).
// The key is remembered with the booking it created, in the booking's
// transaction: the same key and body again answers that booking with 200,
// the same key with another slot_id or applicant_id answers 422
// idempotency_key_reused. A refused attempt (409) does not consume its
// key. A hold lasts PaymentWindow (simulated); Run's sweep ends expired
// holds, and a booking of a slot whose hold has expired ends that hold
// itself, so expiry never depends on the sweep having run.
//
// # Caching
//
// Each replica caches the available slots per consulate and visa type.
// The Service keeps a generation counter that every committed booking,
// payment, cancellation, release and expiry advances; a replica refills
// its entry when the counter has moved. Between a hold's expiry and the
// sweep, the cache may still show its slot as taken (never the reverse).
//
// # Protection
//
// Rate limits are token buckets per replica (like a pod-local limiter):
// one per client (X-Client-ID, else the remote IP) and one overall, so n
// replicas admit n times the configured rates. Refusals are 429 with
// Retry-After. The client map is bounded (idle clients evicted first,
// then the least recently seen; evictions are counted). Waiting-room polls
// are not rate limited.
//
// The waiting room is service-wide: when MaxInProgress booking attempts
// are running across all replicas, or anyone is already waiting, a new
// attempt gets 202 and a ticket. An attempt is in progress from its
// admission until its answer, including its wait for a capacity slot of
// its replica, so the room takes over as soon as replicas start queueing
// (MaxInProgress is best set near replicas × capacity.concurrency). Tickets become ready first in, first out
// as attempts finish; a ready ticket's pass reserves its capacity, so the
// pass holder is admitted ahead of newcomers. Unpolled tickets expire after
// TicketTTL, unredeemed passes after PassTTL. A full room refuses with 503
// reason waiting_room_full.
//
// # Metrics
//
// Each replica registers on its own registry: booking_requests_total
// {endpoint,code}, booking_request_duration_seconds{endpoint},
// booking_bookings_total{outcome}, booking_attempts_total and
// booking_successes_total (the success ratio), booking_waiting_room_wait_seconds,
// booking_waiting_room_refused_total, booking_rate_limited_total{endpoint},
// booking_rate_limit_client_evictions_total, booking_rate_limit_clients,
// booking_slots_cache_{hits,misses}_total, and the emulated capacity's
// refsvc_capacity_*. These are per replica: sum them.
//
// booking_slots_available{consulate,visa_type}, booking_waiting_room_depth,
// booking_in_progress and booking_waiting_room_expired_tickets_total read
// state the replicas share, so every replica exports the same value;
// summing would multiply it by the replica count. Aggregate them with max,
// e.g. max by (consulate, visa_type) (booking_slots_available). The
// service-wide counters booking_slots_released_total and
// booking_holds_expired_total are registered once, on New's registerer.
package booking
