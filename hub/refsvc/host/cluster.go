package host

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"

	"github.com/bureauhub/bureauhub/hub/refsvc"
)

// Coordinator places the services in a hub cluster: each service runs on
// the one hub that owns OwnerKey(name); the others forward its requests
// there. hub/cluster's Cluster implements it.
type Coordinator interface {
	// Owns reports whether this hub should run the item now.
	Owns(key string) bool
	// ServiceOwner is the hub owning key and the address it published for
	// service ("" if none yet).
	ServiceOwner(key, service string) (hub, address string)
	// SetServiceAddress publishes this hub's load balancer of service.
	SetServiceAddress(service, address string)
}

// Journal is where a clustered service's state and replica count survive
// this hub (hub/refsvc/journal keeps them in ClickHouse).
type Journal interface {
	refsvc.Journal
	// Load passes the latest change of every key to apply.
	Load(ctx context.Context, apply func(refsvc.Change) error) (int, error)
	// Run stores queued changes until ctx ends.
	Run(ctx context.Context) error
}

// OwnerKey is the cluster ring key of a hosted service.
func OwnerKey(service string) string { return "service/" + service }

// ErrNotOwner is returned by Scale on a hub that does not run the service.
var ErrNotOwner = errors.New("this hub does not run the service")

// forwardedHeader marks a request one hub forwarded to the owner, so that
// a hub that is not the owner either (ownership moving) answers 503
// instead of forwarding it again.
const forwardedHeader = "X-Bureauhub-Forwarded-By"

// hostBucket is the journal bucket of the host's own state: the replica
// count set last (key "desired").
const hostBucket = "_host"

var keyDesired = []byte("desired")

// SetCoordinator makes the host run each service only while this hub owns
// it, restoring its state from the service's journal (which every
// clustered service must have) when it takes it over; self is this hub's
// member name. Call before Run.
func (h *Host) SetCoordinator(c Coordinator, self string) error {
	for _, name := range h.order {
		s := h.services[name]
		if s.journal == nil {
			return fmt.Errorf("service %s: a clustered service needs a journal", name)
		}
		if _, ok := s.svc.(refsvc.Durable); !ok {
			return fmt.Errorf("service %s: its state cannot be restored on another hub", name)
		}
	}
	h.coord, h.self = c, self
	return nil
}

// reconcile follows ownership until ctx ends: it activates the service
// when this hub gains it and deactivates it when the hub loses it.
func (s *service) reconcile(ctx context.Context, errs chan<- error) {
	t := time.NewTicker(s.host.reconcileEvery)
	defer t.Stop()
	for {
		s.follow()
		owns := s.host.coord.Owns(OwnerKey(s.cfg.Name))
		switch active := s.isActive(); {
		case owns && !active:
			if err := s.activate(ctx, errs); err != nil && ctx.Err() == nil {
				s.logger.Warn("taking the service over failed; retrying", "err", err)
			}
		case !owns && active:
			s.logger.Info("another hub owns the service now: stopping its replicas here")
			s.deactivate()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *service) isActive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

// activate restores the journal's state (with a journal), starts the
// service's shared work, and starts its replicas at the count set last.
func (s *service) activate(ctx context.Context, errs chan<- error) error {
	desired := s.cfg.Replicas
	if s.journal != nil {
		start := time.Now()
		var found bool
		load := func(apply func(refsvc.Change) error) error {
			_, err := s.journal.Load(ctx, func(c refsvc.Change) error {
				if c.Bucket == hostBucket {
					if string(c.Key) == string(keyDesired) && !c.Deleted {
						if n, err := strconv.Atoi(string(c.Value)); err == nil && n >= s.cfg.MinReplicas && n <= s.cfg.MaxReplicas {
							desired, found = n, true
						}
					}
					return nil
				}
				return apply(c)
			})
			return err
		}
		if d, ok := s.svc.(refsvc.Durable); ok {
			if err := d.Restore(ctx, load); err != nil {
				return err
			}
		} else if err := load(func(refsvc.Change) error { return nil }); err != nil {
			return err
		}
		s.logger.Info("restored the service's state from the journal", "took", time.Since(start).Round(time.Millisecond),
			"replicas", desired, "replicas_from_journal", found)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.svc.Run(runCtx); err != nil {
			errs <- fmt.Errorf("service %s: %w", s.cfg.Name, err)
		}
	}()
	s.mu.Lock()
	s.active, s.stopRun, s.runDone = true, cancel, done
	s.mu.Unlock()
	why := "start"
	if s.host.coord != nil {
		why = "takeover"
	}
	if err := s.scale(desired, why); err != nil {
		return err
	}
	s.host.owned.WithLabelValues(s.cfg.Name).Set(1)
	return nil
}

// deactivate drains every replica and stops the shared work.
func (s *service) deactivate() {
	s.mu.Lock()
	s.active = false
	for _, r := range s.replicas {
		s.drainLocked(r)
	}
	stop, done := s.stopRun, s.runDone
	s.stopRun, s.runDone = nil, nil
	s.mu.Unlock()
	s.stopping.Wait()
	if stop != nil {
		stop()
		<-done
	}
	s.host.owned.WithLabelValues(s.cfg.Name).Set(0)
	s.updateGauges()
}

// journalDesired makes a replica count durable before it is applied, so
// the next owner starts as many.
func (s *service) journalDesired(n int) error {
	if s.journal == nil {
		return nil
	}
	t, err := s.journal.Enqueue([]refsvc.Change{{Bucket: hostBucket, Key: keyDesired, Value: []byte(strconv.Itoa(n))}})
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = s.journal.Wait(ctx, t)
	}
	if err != nil {
		return fmt.Errorf("record replica count of %s: %w", s.cfg.Name, err)
	}
	return nil
}

// forwarding is where this hub sends the requests of a service it does
// not run: the owner's name and address, and a proxy to that address.
type forwarding struct {
	owner, addr string
	proxy       *httputil.ReverseProxy
}

// follow points forwarding at the service's current owner; reconcile
// calls it every tick, so requests never look the owner up themselves.
func (s *service) follow() {
	owner, addr := s.host.coord.ServiceOwner(OwnerKey(s.cfg.Name), s.cfg.Name)
	s.fwdMu.Lock()
	defer s.fwdMu.Unlock()
	if owner == s.fwd.owner && addr == s.fwd.addr {
		return
	}
	s.fwd = forwarding{owner: owner, addr: addr}
	if addr != "" && owner != s.host.self {
		s.fwd.proxy = s.newProxy(&url.URL{Scheme: "http", Host: addr}, s.fwdTransport,
			http.Header{forwardedHeader: {s.host.self}}, "hub "+owner+" running "+s.cfg.Name)
	}
}

// forward sends a request for a service this hub does not run to the hub
// that does.
func (s *service) forward(w http.ResponseWriter, req *http.Request) {
	s.fwdMu.Lock()
	proxy := s.fwd.proxy
	s.fwdMu.Unlock()
	if req.Header.Get(forwardedHeader) != "" || proxy == nil {
		s.host.lbRequests.WithLabelValues(s.cfg.Name, "no_owner").Inc()
		w.Header().Set("Retry-After", "1")
		http.Error(w, `{"error":"`+s.cfg.Name+` is moving to another hub","reason":"no_owner"}`, http.StatusServiceUnavailable)
		return
	}
	s.host.lbRequests.WithLabelValues(s.cfg.Name, "forwarded").Inc()
	proxy.ServeHTTP(w, req)
}
