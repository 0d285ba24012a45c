package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bureauhub/bureauhub/hub/refsvc/healthcode"
)

// serviceHub is a clustered hub with the two reference services, each on
// its own load-balancer port.
type serviceHub struct {
	*clusterHub
	booking, health int
}

func (h *serviceHub) bookingURL() string { return fmt.Sprintf("http://127.0.0.1:%d", h.booking) }
func (h *serviceHub) healthURL() string  { return fmt.Sprintf("http://127.0.0.1:%d", h.health) }

// servicesTop is the services section every hub of the test cluster has:
// the same clock (fixed epoch), population and seed time on all, each hub
// with its own data dir and ports.
func servicesTop(dir string, h *serviceHub, epoch time.Time) string {
	return fmt.Sprintf(`services:
  data_dir: %s
  clock: {epoch: %q, sim_start: "2026-11-05T10:00:00Z"}
  booking:
    hosting: {tenant: consular, listen_address: "127.0.0.1:%d", replicas: 1, max_replicas: 5, warm_up: 300ms, drain_timeout: 5s}
    config: {store: {no_sync: true}}
  healthcode:
    hosting: {tenant: health, listen_address: "127.0.0.1:%d", replicas: 1, max_replicas: 5, warm_up: 300ms, drain_timeout: 5s}
    config: {population: 2000, seed_time: "2026-11-05T09:00:00+08:00", capacity: {concurrency: 8, service_time: 2ms}}
autoscale:
  audit_flush_interval: 200ms
  targets:
    - {name: booking, tenant: consular, service: booking, rate_expr: "sum(rate(booking_requests_total[10s]))",
       mode: dry-run, min: 1, max: 5, warm_up: 300ms, sync_interval: 1s, capacity: {default_per_replica: 100}}
`, filepath.Join(dir, "services-"+h.name), epoch.UTC().Format(time.RFC3339), h.booking, h.health)
}

type httpAnswer struct {
	code int
	body map[string]any
}

func call(method, url, token string, body any, header map[string]string) (httpAnswer, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return httpAnswer{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return httpAnswer{}, err
	}
	defer resp.Body.Close()
	out := httpAnswer{code: resp.StatusCode, body: map[string]any{}}
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &out.body)
	return out, nil
}

// serviceStatus is the hosting API's view of a service on one hub.
func (e *env) serviceStatus(t *testing.T, h *serviceHub, name, tenant string) (active bool, owner string, desired, ready int, err error) {
	a, err := call("GET", h.url()+"/api/v1/services/"+name, readToken(t, e.tokens[tenant]), nil, nil)
	if err != nil {
		return false, "", 0, 0, err
	}
	d, _ := a.body["data"].(map[string]any)
	if d == nil {
		return false, "", 0, 0, fmt.Errorf("GET services/%s on %s: %d %v", name, h.name, a.code, a.body)
	}
	active, _ = d["active"].(bool)
	owner, _ = d["owner"].(string)
	dr, _ := d["desired_replicas"].(float64)
	rr, _ := d["ready_replicas"].(float64)
	return active, owner, int(dr), int(rr), nil
}

// TestClusterHostedServices runs the reference services on a three-hub
// cluster: one hub (the ring's owner) runs each service's replicas, the
// others forward to it. Bookings are made and paid through a hub that
// does not run the booking service while its owner is SIGKILLed; another
// hub takes the service over with the replica count set before the kill
// (after the warm-up), every booking whose payment was confirmed is still
// confirmed, no slot is confirmed twice, and a recorded health-code result
// survives too.
func TestClusterHostedServices(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster end to end")
	}
	e := newEnv(t)
	key := filepath.Join(e.dir, "gossip.key")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	epoch := time.Now()
	var hubs []*serviceHub
	for i := range 3 {
		h := &serviceHub{clusterHub: newClusterHub(t, fmt.Sprintf("hub-%d", i+1), key), booking: freePort(t), health: freePort(t)}
		var seed *clusterHub
		if i > 0 {
			seed = hubs[0].clusterHub
		}
		e.startClusterHub(t, h.clusterHub, seed, "", servicesTop(e.dir, h, epoch))
		hubs = append(hubs, h)
	}
	consular := readToken(t, e.tokens["consular"])

	// Exactly one hub runs each service, and all agree which.
	owners := map[string]*serviceHub{}
	for _, svc := range []struct{ name, tenant string }{{"booking", "consular"}, {"healthcode", "health"}} {
		waitFor(t, 30*time.Second, func() (bool, string) {
			var running []string
			seen := map[string]bool{}
			for _, h := range hubs {
				active, owner, _, ready, err := e.serviceStatus(t, h, svc.name, svc.tenant)
				if err != nil {
					return false, err.Error()
				}
				seen[owner] = true
				if active && ready >= 1 {
					running = append(running, h.name)
					owners[svc.name] = h
				}
			}
			return len(running) == 1 && len(seen) == 1 && !seen[""], fmt.Sprintf("%s runs on %v, owners seen %v", svc.name, running, seen)
		})
	}
	victim := owners["booking"]
	var via *serviceHub // a hub that forwards booking requests
	for _, h := range hubs {
		if h != victim {
			via = h
			break
		}
	}
	t.Logf("booking runs on %s; clients use %s", victim.name, via.name)

	// Scale the service on its owner; a hub that does not run it says who does.
	if a, err := call("PUT", via.url()+"/api/v1/services/booking/replicas", consular, map[string]int{"replicas": 3}, nil); err != nil || a.code != 409 {
		t.Fatalf("scale on a non-owner: %v %d %v, want 409 not_owner", err, a.code, a.body)
	}
	if a, err := call("PUT", victim.url()+"/api/v1/services/booking/replicas", consular, map[string]int{"replicas": 3}, nil); err != nil || a.code != 200 {
		t.Fatalf("scale on the owner: %v %d %v", err, a.code, a.body)
	}

	// A health-code result recorded through a forwarding hub.
	person := healthcode.PersonID(7)
	if a, err := callThroughMove(t, "POST", via.healthURL()+"/api/v1/results", map[string]string{"id": person, "time": "2026-11-05T09:30:00+08:00", "result": "positive"}); err != nil || a.code != 200 {
		t.Fatalf("record a result: %v %d %v", err, a.code, a.body)
	}
	before, err := call("GET", via.healthURL()+"/api/v1/codes/"+person, "", nil, nil)
	if err != nil || before.code != 200 {
		t.Fatalf("scan: %v %d %v", err, before.code, before.body)
	}

	// Book and pay continuously through the forwarding hub.
	slots, err := callThroughMove(t, "GET", via.bookingURL()+"/api/v1/slots?consulate=beijing&visa_type=tourist&limit=1000", nil)
	if err != nil || slots.code != 200 {
		t.Fatalf("list slots: %v %d %v", err, slots.code, slots.body)
	}
	var free []string
	for _, s := range slots.body["slots"].([]any) {
		free = append(free, s.(map[string]any)["id"].(string))
	}
	if len(free) < 200 {
		t.Fatalf("only %d free slots", len(free))
	}
	var mu sync.Mutex
	confirmed := map[string]string{} // booking ID -> slot ID
	attempts, unconfirmed := 0, 0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i, slot := range free {
			select {
			case <-stop:
				return
			default:
			}
			key := fmt.Sprintf("e2e-%d", i)
			b, err := call("POST", via.bookingURL()+"/api/v1/bookings", "", map[string]string{"slot_id": slot, "applicant_id": "applicant-" + key},
				map[string]string{"Idempotency-Key": key})
			mu.Lock()
			attempts++
			mu.Unlock()
			if err != nil || (b.code != 201 && b.code != 200) {
				mu.Lock()
				unconfirmed++
				mu.Unlock()
				time.Sleep(20 * time.Millisecond) // a client's pause before the next try
				continue
			}
			id, _ := b.body["booking_id"].(string)
			p, err := call("POST", via.bookingURL()+"/api/v1/bookings/"+id+"/pay", "", nil, nil)
			mu.Lock()
			if err == nil && p.code == 200 && p.body["status"] == "confirmed" {
				confirmed[id] = slot
			} else {
				unconfirmed++
			}
			mu.Unlock()
		}
	}()
	waitFor(t, 30*time.Second, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(confirmed) >= 20, fmt.Sprintf("%d bookings confirmed", len(confirmed))
	})
	victim.proc.Kill() // SIGKILL
	killedAt := time.Now()
	mu.Lock()
	atKill := len(confirmed)
	mu.Unlock()
	t.Logf("killed %s after %d confirmed bookings", victim.name, atKill)

	var rest []*serviceHub
	for _, h := range hubs {
		if h != victim {
			rest = append(rest, h)
		}
	}
	// Another hub takes the service over with the count set before the
	// kill, and bookings are confirmed again.
	var successor *serviceHub
	waitFor(t, 45*time.Second, func() (bool, string) {
		for _, h := range rest {
			active, _, desired, ready, err := e.serviceStatus(t, h, "booking", "consular")
			if err != nil {
				return false, err.Error()
			}
			if active && desired == 3 && ready == 3 {
				successor = h
			}
		}
		mu.Lock()
		n := len(confirmed)
		mu.Unlock()
		return successor != nil && n >= atKill+20, fmt.Sprintf("successor %v, %d confirmed (%d at the kill)", successor != nil, n, atKill)
	})
	t.Logf("%s runs booking with 3 ready replicas; bookings confirmed again within %v of the kill", successor.name, time.Since(killedAt).Round(100*time.Millisecond))
	close(stop)
	<-done

	// Every confirmed booking is confirmed on the new owner, through
	// either surviving hub, and no slot is confirmed twice.
	slotsSeen := map[string]string{}
	for id, slot := range confirmed {
		if other, dup := slotsSeen[slot]; dup {
			t.Errorf("slot %s confirmed twice: bookings %s and %s", slot, other, id)
		}
		slotsSeen[slot] = id
		for _, h := range rest {
			a, err := call("GET", h.bookingURL()+"/api/v1/bookings/"+id, "", nil, nil)
			if err != nil || a.code != 200 || a.body["status"] != "confirmed" {
				t.Errorf("booking %s (confirmed before or after the kill) through %s: %v %d %v", id, h.name, err, a.code, a.body)
			}
		}
	}
	t.Logf("%d attempts, %d confirmed bookings all kept, %d not confirmed (answered an error around the kill)", attempts, len(confirmed), unconfirmed)

	// Exactly one hub decided for the booking target at a time: its
	// decisions (one per 1 s sync) never come closer than half a sync,
	// and the successor took them over.
	waitFor(t, 30*time.Second, func() (bool, string) {
		var after uint64
		err := e.conn.QueryRow(context.Background(), "SELECT count() FROM "+e.db+".autoscale_events WHERE target = 'booking' AND event = 'decision' AND ts > ?",
			killedAt.Add(5*time.Second).UnixMilli()).Scan(&after)
		return err == nil && after >= 2, fmt.Sprintf("%d decisions by the successor (%v)", after, err)
	})
	rows, err := e.conn.Query(context.Background(), "SELECT ts FROM "+e.db+".autoscale_events WHERE target = 'booking' AND event = 'decision' ORDER BY ts")
	if err != nil {
		t.Fatal(err)
	}
	var decisions []int64
	for rows.Next() {
		var ts int64
		if err := rows.Scan(&ts); err != nil {
			t.Fatal(err)
		}
		decisions = append(decisions, ts)
	}
	rows.Close()
	for i := 1; i < len(decisions); i++ {
		if gap := decisions[i] - decisions[i-1]; gap < 500 {
			t.Errorf("booking decisions %d ms apart at %s: two hubs decided for one target", gap, time.UnixMilli(decisions[i]).Format(time.RFC3339Nano))
		}
	}
	t.Logf("%d autoscale decisions for booking, one hub at a time", len(decisions))

	// The recorded result survived too (the health-code owner may or may
	// not have been the victim).
	waitFor(t, 30*time.Second, func() (bool, string) {
		a, err := call("GET", rest[0].healthURL()+"/api/v1/codes/"+person, "", nil, nil)
		if err != nil || a.code != 200 {
			return false, fmt.Sprintf("scan: %v %d %v", err, a.code, a.body)
		}
		return a.body["colour"] == before.body["colour"] && a.body["colour"] == "red",
			fmt.Sprintf("colour %v, before the kill %v", a.body["colour"], before.body["colour"])
	})
}

// callThroughMove makes an unauthenticated call to a hosted service and
// retries, for up to 10 s, the answer a hub gives while its forwarding has
// not yet followed a new owner (it does at its next reconcile tick): 503
// with reason "no_owner" and Retry-After, which clients retry.
func callThroughMove(t *testing.T, method, url string, body any) (httpAnswer, error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, err := call(method, url, "", body, nil)
		if err != nil || a.code != 503 || a.body["reason"] != "no_owner" || time.Now().After(deadline) {
			return a, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
