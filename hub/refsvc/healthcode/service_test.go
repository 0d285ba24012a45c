package healthcode

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
)

func TestScanReturnsSeededData(t *testing.T) {
	cfg := testConfig(t)
	svc, reg := newTestService(t, cfg)
	rp := startReplica(t, svc, "healthcode-0")
	for _, i := range []int{0, 1, 17, 250, cfg.Population - 1} {
		id := PersonID(i)
		t.Run(id, func(t *testing.T) {
			got := rp.scan(t, id)
			if got.status != http.StatusOK {
				t.Fatalf("status %d: %s", got.status, got.raw)
			}
			want := seedRecord(cfg.Seed, i, testSeedTime).code(id, testSeedTime)
			if !reflect.DeepEqual(got.code, want) {
				t.Fatalf("got %+v\nwant %+v", got.code, want)
			}
		})
	}
	t.Run("field names", func(t *testing.T) {
		// A person with doses, so the vaccination fields are there too.
		i := 0
		for len(seedRecord(cfg.Seed, i, testSeedTime).doses) == 0 {
			i++
		}
		var m map[string]any
		if err := json.Unmarshal(rp.scan(t, PersonID(i)).raw, &m); err != nil {
			t.Fatal(err)
		}
		if got, want := keys(m), "colour id last_test vaccinations"; got != want {
			t.Fatalf("code fields %q, want %q", got, want)
		}
		if got, want := keys(m["last_test"].(map[string]any)), "result time"; got != want {
			t.Fatalf("last_test fields %q, want %q", got, want)
		}
		if got, want := keys(m["vaccinations"].([]any)[0].(map[string]any)), "date dose"; got != want {
			t.Fatalf("vaccination fields %q, want %q", got, want)
		}
	})
	if got := metric(t, rp.reg, "healthcode_scans_total", "colour", "none", "outcome", OutcomeError); got != 0 {
		t.Fatalf("error scans = %v, want 0", got)
	}
	total := 0.0
	for _, c := range []string{Green, Yellow, Red} {
		total += metric(t, rp.reg, "healthcode_scans_total", "colour", c, "outcome", "ok")
	}
	if total != 6 {
		t.Fatalf("ok scans = %v, want 6", total)
	}
	if got := metric(t, rp.reg, "healthcode_scan_duration_seconds"); got != 6 {
		t.Fatalf("scan latency observations = %v, want 6", got)
	}
	if got := metric(t, reg, "healthcode_population"); got != float64(cfg.Population) {
		t.Fatalf("healthcode_population = %v", got)
	}
}

func keys(m map[string]any) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return strings.Join(ks, " ")
}

func TestBadRequests(t *testing.T) {
	cfg := testConfig(t)
	svc, _ := newTestService(t, cfg)
	rp := startReplica(t, svc, "healthcode-0")
	good := PersonID(3)
	flipped := []byte(good)
	flipped[10] = '0' + (flipped[10]-'0'+1)%10 // breaks the check character
	at := testSeedTime.Format(time.RFC3339)
	body := func(fields string) string { return "{" + fields + "}" }
	tests := []struct {
		name, method, path, body string
		status                   int
		reason, errHas           string
	}{
		{"short id", "GET", "/api/v1/codes/123", "", 400, "bad_id", "18 characters"},
		{"letters in id", "GET", "/api/v1/codes/33010ABCDEFGHIJKL1", "", 400, "bad_id", "17 digits"},
		{"bad check character", "GET", "/api/v1/codes/" + string(flipped), "", 400, "bad_id", "check character"},
		{"other population", "GET", "/api/v1/codes/11010519491231002X", "", 400, "bad_id", "prefix"},
		{"unknown person", "GET", "/api/v1/codes/" + PersonID(cfg.Population), "", 404, "not_found", "id: no such person"},
		{"scan with POST", "POST", "/api/v1/codes/" + good, "", 405, "method_not_allowed", "method"},
		{"no such endpoint", "GET", "/api/v1/people", "", 404, "no_endpoint", "path"},
		{"results with GET", "GET", "/api/v1/results", "", 405, "method_not_allowed", "method"},
		{"not JSON", "POST", "/api/v1/results", "id=1", 400, "bad_json", "body: invalid JSON"},
		{"empty body", "POST", "/api/v1/results", "", 400, "bad_json", "body: empty"},
		{"array body", "POST", "/api/v1/results", "[]", 400, "bad_json", "body: must be a JSON object"},
		{"two values", "POST", "/api/v1/results", body(`"id":"`+good+`","time":"`+at+`","result":"negative"`) + "{}", 400, "bad_json", "body: more than one"},
		{"unknown field", "POST", "/api/v1/results", body(`"id":"` + good + `","time":"` + at + `","result":"negative","colour":"red"`), 400, "unknown_field", "colour: unknown field"},
		{"id not a string", "POST", "/api/v1/results", body(`"id":330100,"time":"` + at + `","result":"negative"`), 400, "bad_json", "id: must be a string"},
		{"missing id", "POST", "/api/v1/results", body(`"time":"` + at + `","result":"negative"`), 400, "missing_field", "id: required"},
		{"missing time", "POST", "/api/v1/results", body(`"id":"` + good + `","result":"negative"`), 400, "missing_field", "time: required"},
		{"missing result", "POST", "/api/v1/results", body(`"id":"` + good + `","time":"` + at + `"`), 400, "missing_field", "result: required"},
		{"malformed id", "POST", "/api/v1/results", body(`"id":"123","time":"` + at + `","result":"negative"`), 400, "bad_id", "18 characters"},
		{"bad time", "POST", "/api/v1/results", body(`"id":"` + good + `","time":"07:40","result":"negative"`), 400, "bad_value", "time: must be an RFC 3339 time"},
		{"bad result", "POST", "/api/v1/results", body(`"id":"` + good + `","time":"` + at + `","result":"maybe"`), 400, "bad_value", "result: must be"},
		{"result for unknown person", "POST", "/api/v1/results", body(`"id":"` + PersonID(cfg.Population+1) + `","time":"` + at + `","result":"negative"`), 404, "not_found", "id: no such person"},
		{"body too large", "POST", "/api/v1/results", body(`"id":"` + strings.Repeat(" ", maxBody) + `"`), 413, "too_large", "body: larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rp.do(t, tt.method, tt.path, tt.body)
			if got.status != tt.status || got.err.Reason != tt.reason || !strings.Contains(got.err.Error, tt.errHas) {
				t.Fatalf("got %d %s, want %d reason %q with %q", got.status, got.raw, tt.status, tt.reason, tt.errHas)
			}
		})
	}
	for _, c := range []struct {
		outcome string
		want    float64
	}{{OutcomeBadID, 4}, {OutcomeNotFound, 1}, {OutcomeError, 0}} {
		if got := metric(t, rp.reg, "healthcode_scans_total", "colour", "none", "outcome", c.outcome); got != c.want {
			t.Errorf("scans with outcome %s = %v, want %v", c.outcome, got, c.want)
		}
	}
	if got := metric(t, rp.reg, "healthcode_http_requests_total", "endpoint", "result", "code", "400"); got != 12 {
		t.Errorf("result requests answered 400 = %v, want 12", got)
	}
	if got := metric(t, rp.reg, "healthcode_updates_total", "outcome", "applied"); got != 0 {
		t.Errorf("bad requests applied %v updates", got)
	}
}

func TestResultRecolours(t *testing.T) {
	svc, _ := newTestService(t, testConfig(t))
	rp := startReplica(t, svc, "healthcode-0")
	id := PersonID(9)
	before := rp.scan(t, id).code
	steps := []struct {
		name       string
		at         time.Time
		result     string
		wantColour string
		wantTime   time.Time // the last test answered
		outcome    string
	}{
		{"positive turns red", testSeedTime.Add(-time.Minute), Positive, Red, testSeedTime.Add(-time.Minute), "applied"},
		{"later negative turns green", testSeedTime, Negative, Green, testSeedTime, "applied"},
		{"earlier positive changes nothing", testSeedTime.Add(-time.Hour), Positive, Green, testSeedTime, "superseded"},
		{"earlier negative changes nothing", testSeedTime.Add(time.Second - NegativeValidFor), Negative, Green, testSeedTime, "superseded"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			updates := metric(t, rp.reg, "healthcode_updates_total", "outcome", s.outcome)
			got := rp.post(t, id, s.at, s.result)
			if got.status != http.StatusOK {
				t.Fatalf("POST: %d %s", got.status, got.raw)
			}
			for what, c := range map[string]Code{"POST answer": got.code, "scan": rp.scan(t, id).code} {
				if c.Colour != s.wantColour || !c.LastTest.Time.Equal(s.wantTime) || !reflect.DeepEqual(c.Vaccinations, before.Vaccinations) {
					t.Fatalf("%s: %+v, want colour %s, last test at %s, vaccinations %v", what, c, s.wantColour, s.wantTime, before.Vaccinations)
				}
			}
			if got := metric(t, rp.reg, "healthcode_updates_total", "outcome", s.outcome); got != updates+1 {
				t.Fatalf("updates{outcome=%s} = %v, want %v", s.outcome, got, updates+1)
			}
		})
	}
}

// TestUpdateSeenByEveryReplica warms every replica's cache, records a result
// through one of them, and expects every replica to answer it at once.
func TestUpdateSeenByEveryReplica(t *testing.T) {
	svc, _ := newTestService(t, testConfig(t))
	var rps []*testReplica
	for i := range 3 {
		rps = append(rps, startReplica(t, svc, fmt.Sprintf("healthcode-%d", i)))
	}
	id := PersonID(123)
	for _, rp := range rps {
		for range 2 {
			if got := rp.scan(t, id); got.status != http.StatusOK || got.code.Colour == Red {
				t.Fatalf("warm-up scan: %d %s", got.status, got.raw)
			}
		}
		if hits := metric(t, rp.reg, "healthcode_cache_requests_total", "result", "hit"); hits != 1 {
			t.Fatalf("cache hits after warm-up = %v, want 1", hits)
		}
	}
	at := testSeedTime.Add(-time.Minute)
	if got := rps[1].post(t, id, at, Positive); got.status != http.StatusOK || got.code.Colour != Red {
		t.Fatalf("POST: %d %s", got.status, got.raw)
	}
	for i, rp := range rps {
		got := rp.scan(t, id)
		if got.code.Colour != Red || !got.code.LastTest.Time.Equal(at) {
			t.Fatalf("replica %d after the update: %s, want red tested at %s", i, got.raw, at)
		}
		if n := metric(t, rp.reg, "healthcode_cache_invalidations_total"); n != 1 {
			t.Fatalf("replica %d: %v invalidations, want 1", i, n)
		}
	}
}

// TestConcurrentScansNeverOlderThanLastCompletedUpdate checks the bound the
// package documents: a scan started after a POST has returned answers that
// result or a later one, on every replica, while updates and scans of the
// same people run concurrently. Each update carries a later test time
// than the previous one for that person and flips the colour between red
// and green, so the answered test time tells which update a scan saw.
func TestConcurrentScansNeverOlderThanLastCompletedUpdate(t *testing.T) {
	cfg := testConfig(t)
	cfg.Cache.TTL = time.Hour // only invalidation may make the update visible
	svc, _ := newTestService(t, cfg)
	var rps []*testReplica
	for i := range 3 {
		rps = append(rps, startReplica(t, svc, fmt.Sprintf("healthcode-%d", i)))
	}
	people := []int{5, 21, 37, 53} // one cache shard: the most contended case
	base := testSeedTime.Add(-time.Hour)
	updateTime := func(k int64) time.Time { return base.Add(time.Duration(k) * time.Second) }
	updateResult := func(k int64) string {
		if k%2 == 1 {
			return Positive
		}
		return Negative
	}
	// completed[p] is the number of the last update of people[p] whose POST
	// has returned; 0 before any.
	completed := make([]atomic.Int64, len(people))

	const updatesPerPerson = 40
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var checked atomic.Int64
	var failure atomic.Pointer[string]
	fail := func(format string, a ...any) {
		msg := fmt.Sprintf(format, a...)
		failure.CompareAndSwap(nil, &msg)
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for {
				select {
				case <-stop:
					return
				default:
				}
				p := rng.IntN(len(people))
				rp := rps[rng.IntN(len(rps))]
				low := completed[p].Load()
				got, err := scanOnce(rp.url, PersonID(people[p]))
				if err != nil {
					fail("scan: %v", err)
					return
				}
				if low == 0 {
					continue // the seeded test may be later or earlier than base
				}
				k := int64(got.LastTest.Time.Sub(base) / time.Second)
				if k < low || !got.LastTest.Time.Equal(updateTime(k)) {
					fail("person %d: scan started after update %d completed answered test at %s (update %d)", people[p], low, got.LastTest.Time, k)
					return
				}
				if want := map[string]string{Positive: Red, Negative: Green}[updateResult(k)]; got.Colour != want {
					fail("person %d: update %d answered %s, want %s", people[p], k, got.Colour, want)
					return
				}
				checked.Add(1)
			}
		}()
	}
	for k := int64(1); k <= updatesPerPerson && failure.Load() == nil; k++ {
		for p, person := range people {
			rp := rps[(int(k)+p)%len(rps)]
			if got := rp.post(t, PersonID(person), updateTime(k), updateResult(k)); got.status != http.StatusOK {
				t.Fatalf("POST update %d: %d %s", k, got.status, got.raw)
			}
			completed[p].Store(k)
		}
	}
	close(stop)
	wg.Wait()
	if msg := failure.Load(); msg != nil {
		t.Fatal(*msg)
	}
	if checked.Load() < 100 {
		t.Fatalf("only %d scans checked; the test proves little", checked.Load())
	}
	t.Logf("%d scans checked against %d updates", checked.Load(), updatesPerPerson*len(people))
}

// scanOnce is a scan for goroutines other than the test's: errors are
// returned, not reported.
func scanOnce(url, id string) (Code, error) {
	resp, err := http.Get(url + "/api/v1/codes/" + id)
	if err != nil {
		return Code{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Code{}, fmt.Errorf("status %d", resp.StatusCode)
	}
	var c Code
	return c, json.NewDecoder(resp.Body).Decode(&c)
}

func TestRestartKeepsUpdates(t *testing.T) {
	cfg := testConfig(t)
	id := PersonID(77)
	at := testSeedTime.Add(-2 * time.Minute)

	reg := prometheus.NewRegistry()
	svc, err := New(cfg, slog.New(slog.DiscardHandler), reg, frozenClock(testSeedTime))
	if err != nil {
		t.Fatal(err)
	}
	if metric(t, reg, "healthcode_seed_duration_seconds") <= 0 {
		t.Fatal("first open did not report seeding")
	}
	rp := startReplica(t, svc, "healthcode-0")
	if got := rp.post(t, id, at, Positive); got.status != http.StatusOK {
		t.Fatalf("POST: %d %s", got.status, got.raw)
	}
	if err := rp.h.(interface{ Close() error }).Close(); err != nil {
		t.Fatal(err)
	}
	if err := svc.Close(); err != nil {
		t.Fatal(err)
	}

	svc2, reg2 := newTestService(t, cfg)
	if got := metric(t, reg2, "healthcode_seed_duration_seconds"); got != 0 {
		t.Fatalf("reopen seeded again (%vs)", got)
	}
	got := startReplica(t, svc2, "healthcode-0").scan(t, id)
	if got.code.Colour != Red || !got.code.LastTest.Time.Equal(at) {
		t.Fatalf("after restart: %s, want red tested at %s", got.raw, at)
	}
}

func TestReopenRefusesOtherPopulation(t *testing.T) {
	cfg := testConfig(t)
	svc, _ := newTestService(t, cfg)
	// While open, a second Service on the same file fails instead of hanging.
	if _, err := New(cfg, slog.New(slog.DiscardHandler), nil, nil); err == nil {
		t.Fatal("second open of a store in use succeeded")
	}
	if err := svc.Close(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"population", func(c *Config) { c.Population++ }, "population:"},
		{"seed", func(c *Config) { c.Seed++ }, "seed:"},
		{"seed time", func(c *Config) { c.SeedTime = c.SeedTime.Add(time.Hour) }, "seed_time:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg
			tt.edit(&c)
			svc, err := New(c, slog.New(slog.DiscardHandler), nil, nil)
			if err == nil {
				svc.Close()
				t.Fatal("reopen with a different population succeeded")
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("error %q does not name %s", err, tt.field)
			}
		})
	}
	// An unset seed time takes the stored one.
	c := cfg
	c.SeedTime = time.Time{}
	svc, err := New(c, slog.New(slog.DiscardHandler), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if !svc.store.seedTime.Equal(testSeedTime) {
		t.Fatalf("seed time %s, want the stored %s", svc.store.seedTime, testSeedTime)
	}
}

// TestSeedingResumes interrupts seeding (by rewinding its progress) and
// expects the next open to write the rest, the same people as in one go.
func TestSeedingResumes(t *testing.T) {
	cfg := testConfig(t)
	cfg.Population = seedBatch + 100 // two batches
	s, n, err := openStore(cfg, testSeedTime)
	if err != nil {
		t.Fatal(err)
	}
	if n != cfg.Population {
		t.Fatalf("first open seeded %d, want %d", n, cfg.Population)
	}
	// Pretend the second batch never committed.
	err = s.db.DB.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPeople)
		for i := seedBatch; i < cfg.Population; i++ {
			if err := b.Delete(key(i)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keySeeded, u64(seedBatch))
	})
	if err != nil {
		t.Fatal(err)
	}
	s.close()
	s, n, err = openStore(cfg, testSeedTime.Add(time.Hour)) // the stored seed time wins
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if n != 100 {
		t.Fatalf("reopen seeded %d people, want the missing 100", n)
	}
	for _, i := range []int{0, seedBatch - 1, seedBatch, cfg.Population - 1} {
		r, ok, err := s.get(i)
		if err != nil || !ok {
			t.Fatalf("person %d: ok=%v err=%v", i, ok, err)
		}
		if want := seedRecord(cfg.Seed, i, testSeedTime); !r.testTime.Equal(want.testTime) || len(r.doses) != len(want.doses) {
			t.Fatalf("person %d: %+v, want %+v", i, r, want)
		}
	}
	if _, ok, _ := s.get(cfg.Population); ok {
		t.Fatal("a person beyond the population exists")
	}
}

// TestFullPopulationSeeding seeds the default population and reports how
// long it took.
func TestFullPopulationSeeding(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds 100000 people")
	}
	cfg := testConfig(t)
	cfg.Population = 100_000
	start := time.Now()
	svc, _ := newTestService(t, cfg)
	t.Logf("seeded %d people in %s", cfg.Population, time.Since(start))
	rp := startReplica(t, svc, "healthcode-0")
	if got := rp.scan(t, PersonID(cfg.Population-1)); got.status != http.StatusOK {
		t.Fatalf("last person: %d %s", got.status, got.raw)
	}
}

// TestScanLatencyIncludesCapacity checks scans are timed from arrival, so
// the emulated service time and refusals for capacity count.
func TestScanLatencyIncludesCapacity(t *testing.T) {
	cfg := testConfig(t)
	cfg.Capacity.Concurrency = 1
	cfg.Capacity.QueueLength = 0
	cfg.Capacity.ServiceTime = 100 * time.Millisecond
	svc, _ := newTestService(t, cfg)
	rp := startReplica(t, svc, "healthcode-0")

	first := make(chan error, 1)
	go func() { _, err := scanOnce(rp.url, PersonID(1)); first <- err }()
	deadline := time.Now().Add(5 * time.Second)
	for metric(t, rp.reg, "refsvc_capacity_inflight_requests") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("first scan never took the replica's slot")
		}
		time.Sleep(time.Millisecond)
	}
	resp, err := http.Get(rp.url + "/api/v1/codes/" + PersonID(2))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("second scan: %d Retry-After %q, want 503 with Retry-After 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if err := <-first; err != nil {
		t.Fatalf("first scan: %v", err)
	}
	if got := metric(t, rp.reg, "healthcode_scans_total", "colour", "none", "outcome", OutcomeError); got != 1 {
		t.Fatalf("refused scans counted as error: %v, want 1", got)
	}
	if got := metric(t, rp.reg, "healthcode_http_requests_total", "endpoint", "scan", "code", "503"); got != 1 {
		t.Fatalf("scan requests answered 503: %v, want 1", got)
	}
	mfs, err := rp.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "healthcode_scan_duration_seconds" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		if h.GetSampleCount() != 2 || h.GetSampleSum() < cfg.Capacity.ServiceTime.Seconds() {
			t.Fatalf("scan latency: %d scans summing %vs, want 2 summing at least the %s service time",
				h.GetSampleCount(), h.GetSampleSum(), cfg.Capacity.ServiceTime)
		}
		return
	}
	t.Fatal("no healthcode_scan_duration_seconds")
}
