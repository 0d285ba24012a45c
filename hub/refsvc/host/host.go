// Package host runs the hub's reference services the way a small
// orchestrator runs a deployment: replicas of each service, each on its own
// loopback port with its own /metrics, started with a warm-up delay (a pod's
// readiness delay), drained before they stop, and load-balanced behind one
// stable address per service. The replica count is set through an API (the
// autoscaler calls it) and the live replicas are published for Prometheus
// HTTP service discovery, so the owning bureau's agent scrapes each one.
package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bureauhub/bureauhub/hub/refsvc"
)

// ServiceConfig is how one service is hosted.
type ServiceConfig struct {
	// Name is the service's name, e.g. "booking"; it names its replicas
	// ("booking-3") and its API path.
	Name string `yaml:"name"`
	// Tenant is the bureau that owns the service: its token may scale it
	// and discover its replicas.
	Tenant string `yaml:"tenant"`
	// ListenAddress is the stable address clients use; the load balancer
	// behind it forwards to ready replicas.
	ListenAddress string `yaml:"listen_address"`
	// AdvertiseAddress is the address other hubs of a cluster forward this
	// service's requests to while this hub runs it (default: the address
	// the load balancer listens on; required when that is a wildcard).
	AdvertiseAddress string `yaml:"advertise_address"`
	// ReplicaHost is the address replicas listen on, each on a free port.
	ReplicaHost string `yaml:"replica_host"`
	// Replicas is the count started with.
	Replicas int `yaml:"replicas"`
	// MinReplicas and MaxReplicas bound what the API accepts.
	MinReplicas int `yaml:"min_replicas"`
	MaxReplicas int `yaml:"max_replicas"`
	// WarmUp is how long a new replica takes before it is ready.
	WarmUp time.Duration `yaml:"warm_up"`
	// DrainTimeout bounds waiting for a stopping replica's in-flight
	// requests.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// SetDefaults fills unset fields.
func (c *ServiceConfig) SetDefaults() {
	if c.ReplicaHost == "" {
		c.ReplicaHost = "127.0.0.1"
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MinReplicas == 0 {
		c.MinReplicas = 1
	}
	if c.MaxReplicas == 0 {
		c.MaxReplicas = 50
	}
	if c.WarmUp == 0 {
		c.WarmUp = 5 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
}

// Validate names the first invalid field under prefix.
func (c *ServiceConfig) Validate(prefix string) error {
	switch {
	case c.Name == "":
		return fmt.Errorf("%s.name: required", prefix)
	case c.Tenant == "":
		return fmt.Errorf("%s.tenant: required (the bureau that owns the service)", prefix)
	case c.MinReplicas < 0:
		return fmt.Errorf("%s.min_replicas: must not be negative", prefix)
	case c.MaxReplicas < c.MinReplicas || c.MaxReplicas < 1:
		return fmt.Errorf("%s.max_replicas: must be at least 1 and at least min_replicas (%d)", prefix, c.MinReplicas)
	case c.Replicas < c.MinReplicas || c.Replicas > c.MaxReplicas:
		return fmt.Errorf("%s.replicas: %d is outside [min_replicas %d, max_replicas %d]", prefix, c.Replicas, c.MinReplicas, c.MaxReplicas)
	case c.WarmUp < 0:
		return fmt.Errorf("%s.warm_up: must not be negative", prefix)
	case c.DrainTimeout <= 0:
		return fmt.Errorf("%s.drain_timeout: must be positive", prefix)
	}
	if _, _, err := net.SplitHostPort(c.ListenAddress); err != nil {
		return fmt.Errorf("%s.listen_address: %w", prefix, err)
	}
	if net.ParseIP(c.ReplicaHost) == nil && c.ReplicaHost != "localhost" {
		return fmt.Errorf("%s.replica_host: %q is not an IP address", prefix, c.ReplicaHost)
	}
	return nil
}

// Replica states.
const (
	StateStarting = "starting"
	StateReady    = "ready"
	StateDraining = "draining"
)

// ReplicaStatus is one replica as the API shows it.
type ReplicaStatus struct {
	ID        string    `json:"id"`
	Address   string    `json:"address"`
	State     string    `json:"state"`
	StartedAt time.Time `json:"started_at"`
	ReadyAt   time.Time `json:"ready_at,omitzero"`
	InFlight  int       `json:"in_flight"`
	Healthy   bool      `json:"healthy"`
}

// ServiceStatus is one service as the API shows it.
type ServiceStatus struct {
	Name    string `json:"name"`
	Tenant  string `json:"tenant"`
	Address string `json:"address"`
	// Active says whether this hub runs the service; in a cluster only
	// the owner does (Owner), the others forward to it.
	Active   bool            `json:"active"`
	Owner    string          `json:"owner,omitempty"`
	Desired  int             `json:"desired_replicas"`
	Ready    int             `json:"ready_replicas"`
	Min      int             `json:"min_replicas"`
	Max      int             `json:"max_replicas"`
	WarmUp   string          `json:"warm_up"`
	Replicas []ReplicaStatus `json:"replicas"`
}

// ErrUnknownService is returned for a service name that is not hosted.
var ErrUnknownService = errors.New("unknown service")

// Host runs the configured services. Its methods are safe for concurrent
// use once Run has started.
type Host struct {
	logger   *slog.Logger
	services map[string]*service
	order    []string

	coord          Coordinator // nil: every service runs here
	self           string      // this hub's member name, with a coordinator
	reconcileEvery time.Duration

	replicas   *prometheus.GaugeVec
	desired    *prometheus.GaugeVec
	scaleOps   *prometheus.CounterVec
	lbRequests *prometheus.CounterVec
	owned      *prometheus.GaugeVec
}

// Hosted pairs a service with how it is hosted.
type Hosted struct {
	Config  ServiceConfig
	Service refsvc.Service
	// Journal, if set, keeps the service's state where other hubs reach
	// it; required with a coordinator.
	Journal Journal
}

// New builds a host for validated configs. Nothing runs until Run.
func New(hosted []Hosted, logger *slog.Logger, reg prometheus.Registerer) (*Host, error) {
	h := &Host{
		logger:         logger,
		services:       map[string]*service{},
		reconcileEvery: 200 * time.Millisecond,
		replicas: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bureauhub_refsvc_replicas", Help: "Replicas of each hosted service, by state (starting, ready, draining).",
		}, []string{"service", "state"}),
		desired: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bureauhub_refsvc_desired_replicas", Help: "The replica count last set for each hosted service.",
		}, []string{"service"}),
		scaleOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_refsvc_scale_operations_total", Help: "Replica count changes, by service and direction (up, down).",
		}, []string{"service", "direction"}),
		lbRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bureauhub_refsvc_lb_requests_total", Help: "Requests through each service's load balancer, by outcome (proxied, forwarded to the owning hub, no_ready_replica, no_owner, backend_error).",
		}, []string{"service", "outcome"}),
		owned: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bureauhub_refsvc_active", Help: "1 while this hub runs the service (in a cluster: owns it), else 0.",
		}, []string{"service"}),
	}
	if reg != nil {
		reg.MustRegister(h.replicas, h.desired, h.scaleOps, h.lbRequests, h.owned)
	}
	for _, x := range hosted {
		if _, dup := h.services[x.Config.Name]; dup {
			return nil, fmt.Errorf("service %q is configured twice", x.Config.Name)
		}
		s := &service{host: h, cfg: x.Config, svc: x.Service, journal: x.Journal, logger: logger.With("service", x.Config.Name),
			replicas: map[string]*replica{}, desired: x.Config.Replicas,
			fwdTransport: &http.Transport{
				DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConnsPerHost: 256,
				IdleConnTimeout:     60 * time.Second,
			}}
		if d, ok := x.Service.(refsvc.Durable); ok && x.Journal != nil {
			d.SetJournal(x.Journal)
		}
		h.owned.WithLabelValues(x.Config.Name)
		h.services[x.Config.Name] = s
		h.order = append(h.order, x.Config.Name)
		for _, st := range []string{StateStarting, StateReady, StateDraining} {
			h.replicas.WithLabelValues(x.Config.Name, st)
		}
		for _, o := range []string{"proxied", "forwarded", "no_ready_replica", "no_owner", "backend_error"} {
			h.lbRequests.WithLabelValues(x.Config.Name, o)
		}
	}
	return h, nil
}

// Run starts each service's load balancer and journal; then, alone, its
// shared work and initial replicas, or in a cluster, whenever this hub owns
// it, its state from the journal, its shared work and its replicas. It
// serves until ctx ends; then it stops taking new requests, drains every
// replica and closes the services.
func (h *Host) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(h.order))
	started := []*service{}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	closeAll := func() {
		for _, name := range h.order {
			if cerr := h.services[name].svc.Close(); cerr != nil {
				h.logger.Error("close service", "service", name, "err", cerr)
			}
		}
	}
	fail := func(err error) error {
		cancel()
		for _, o := range started {
			o.shutdown()
		}
		wg.Wait()
		closeAll()
		return err
	}
	for _, name := range h.order {
		s := h.services[name]
		if err := s.listen(); err != nil {
			return fail(err)
		}
		started = append(started, s)
		if s.journal != nil {
			wg.Go(func() { _ = s.journal.Run(runCtx) })
		}
		if h.coord == nil {
			if err := s.activate(runCtx, errs); err != nil {
				return fail(err)
			}
			h.logger.Info("hosting service", "service", name, "address", s.addr, "replicas", s.cfg.Replicas, "warm_up", s.cfg.WarmUp)
			continue
		}
		adv := s.cfg.AdvertiseAddress
		if adv == "" {
			adv = s.addr
		}
		h.coord.SetServiceAddress(name, adv)
		wg.Go(func() { s.reconcile(runCtx, errs) })
		h.logger.Info("hosting service while this hub owns it", "service", name, "address", s.addr, "advertised", adv, "owner_key", OwnerKey(name))
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	cancel()
	for _, s := range started {
		s.shutdown()
	}
	wg.Wait()
	closeAll()
	return err
}

// Scale sets a service's replica count. New replicas become ready after
// the warm-up; removed replicas stop taking requests at once and stop
// after their in-flight requests end. It returns when the change is
// started, not when it is complete.
func (h *Host) Scale(name string, n int) error {
	s, ok := h.services[name]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownService, name)
	}
	if n < s.cfg.MinReplicas || n > s.cfg.MaxReplicas {
		return fmt.Errorf("replicas: %d is outside [min_replicas %d, max_replicas %d] of service %s", n, s.cfg.MinReplicas, s.cfg.MaxReplicas, name)
	}
	if !s.isActive() {
		owner := ""
		if h.coord != nil {
			owner, _ = h.coord.ServiceOwner(OwnerKey(name), name)
		}
		return fmt.Errorf("%w %s (its owner is hub %q)", ErrNotOwner, name, owner)
	}
	if err := s.journalDesired(n); err != nil {
		return err
	}
	return s.scale(n, "api")
}

// Status reports one service.
func (h *Host) Status(name string) (ServiceStatus, error) {
	s, ok := h.services[name]
	if !ok {
		return ServiceStatus{}, fmt.Errorf("%w %q", ErrUnknownService, name)
	}
	return s.status(), nil
}

// Services lists the hosted services' names in configuration order.
func (h *Host) Services() []string { return append([]string(nil), h.order...) }

// Tenant is the bureau owning a service ("" if not hosted).
func (h *Host) Tenant(name string) string {
	if s, ok := h.services[name]; ok {
		return s.cfg.Tenant
	}
	return ""
}

type service struct {
	host    *Host
	cfg     ServiceConfig
	svc     refsvc.Service
	journal Journal
	logger  *slog.Logger

	// fwdTransport carries requests forwarded to the owning hub; fwd is
	// the proxy to it, kept current by reconcile.
	fwdTransport *http.Transport
	fwdMu        sync.Mutex
	fwd          forwarding

	lb   *http.Server
	addr string
	lbWG sync.WaitGroup

	scaleMu sync.Mutex // serialises scale so concurrent calls do not overshoot

	mu       sync.Mutex
	active   bool          // replicas run here
	stopRun  func()        // ends the service's Run, while active
	runDone  chan struct{} // closed when that Run has returned
	desired  int
	next     int // replica ID sequence
	replicas map[string]*replica
	rr       int
	closed   bool
	stopping sync.WaitGroup // replicas being drained
}

type replica struct {
	id        string
	addr      string
	startedAt time.Time
	readyAt   time.Time
	state     string
	inflight  int
	srv       *http.Server
	handler   http.Handler
	proxy     *httputil.ReverseProxy
	transport *http.Transport
	readyT    *time.Timer
	idle      chan struct{} // closed when draining and in-flight reaches 0
}

func (s *service) listen() error {
	lis, err := net.Listen("tcp", s.cfg.ListenAddress)
	if err != nil {
		return fmt.Errorf("listen services.%s.listen_address: %w", s.cfg.Name, err)
	}
	s.mu.Lock()
	s.addr = lis.Addr().String()
	s.mu.Unlock()
	s.lb = &http.Server{Handler: http.HandlerFunc(s.serveLB), ReadHeaderTimeout: 10 * time.Second}
	s.lbWG.Add(1)
	go func() {
		defer s.lbWG.Done()
		if err := s.lb.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("load balancer stopped", "err", err)
		}
	}()
	return nil
}

// pick chooses the ready replica with the fewest in-flight requests
// (ties broken round-robin) and counts the request against it, under the
// same lock that marks replicas draining, so a draining replica never
// receives a request it would not finish.
func (s *service) pick() *replica {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.replicas))
	for id, r := range s.replicas {
		if r.state == StateReady {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	sort.Strings(ids)
	s.rr++
	var best *replica
	for i := range ids {
		r := s.replicas[ids[(s.rr+i)%len(ids)]]
		if best == nil || r.inflight < best.inflight {
			best = r
		}
	}
	best.inflight++
	return best
}

func (s *service) done(r *replica) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.inflight--
	if r.inflight == 0 && r.state == StateDraining && r.idle != nil {
		close(r.idle)
		r.idle = nil
	}
}

func (s *service) serveLB(w http.ResponseWriter, req *http.Request) {
	if s.host.coord != nil && !s.isActive() {
		s.forward(w, req)
		return
	}
	r := s.pick()
	if r == nil {
		s.host.lbRequests.WithLabelValues(s.cfg.Name, "no_ready_replica").Inc()
		w.Header().Set("Retry-After", "1")
		http.Error(w, `{"error":"no ready replica of `+s.cfg.Name+`","reason":"no_ready_replica"}`, http.StatusServiceUnavailable)
		return
	}
	defer s.done(r)
	s.host.lbRequests.WithLabelValues(s.cfg.Name, "proxied").Inc()
	r.proxy.ServeHTTP(w, req)
}

func (s *service) scale(n int, why string) error {
	s.scaleMu.Lock()
	defer s.scaleMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("host is stopping")
	}
	if !s.active {
		s.mu.Unlock()
		return fmt.Errorf("%w %s", ErrNotOwner, s.cfg.Name)
	}
	old := s.desired
	s.desired = n
	live := s.liveLocked()
	var stop []*replica
	if len(live) > n {
		// Stop the youngest first: starting replicas serve nobody yet.
		sort.Slice(live, func(i, j int) bool {
			if (live[i].state == StateStarting) != (live[j].state == StateStarting) {
				return live[i].state == StateStarting
			}
			return live[i].startedAt.After(live[j].startedAt)
		})
		stop = live[:len(live)-n]
		for _, r := range stop {
			s.drainLocked(r)
		}
	}
	add := n - len(live)
	s.mu.Unlock()

	for i := 0; i < add; i++ {
		if err := s.startReplica(); err != nil {
			return err
		}
	}
	s.host.desired.WithLabelValues(s.cfg.Name).Set(float64(n))
	if n > old {
		s.host.scaleOps.WithLabelValues(s.cfg.Name, "up").Inc()
	} else if n < old {
		s.host.scaleOps.WithLabelValues(s.cfg.Name, "down").Inc()
	}
	if n != old || why == "start" {
		s.logger.Info("replica count set", "from", old, "to", n, "by", why)
	}
	s.updateGauges()
	return nil
}

// liveLocked lists replicas that are starting or ready.
func (s *service) liveLocked() []*replica {
	var out []*replica
	for _, r := range s.replicas {
		if r.state != StateDraining {
			out = append(out, r)
		}
	}
	return out
}

func (s *service) startReplica() error {
	s.mu.Lock()
	s.next++
	id := fmt.Sprintf("%s-%d", s.cfg.Name, s.next)
	s.mu.Unlock()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	wrapped := prometheus.WrapRegistererWith(prometheus.Labels{"replica": id}, reg)
	handler, err := s.svc.NewReplica(refsvc.Replica{ID: id, Registerer: wrapped})
	if err != nil {
		return fmt.Errorf("start replica %s: %w", id, err)
	}
	lis, err := net.Listen("tcp", net.JoinHostPort(s.cfg.ReplicaHost, "0"))
	if err != nil {
		closeHandler(handler)
		return fmt.Errorf("start replica %s: listen: %w", id, err)
	}
	r := &replica{id: id, addr: lis.Addr().String(), startedAt: time.Now(), state: StateStarting, handler: handler}
	target := &url.URL{Scheme: "http", Host: r.addr}
	// One transport per replica, so that draining it can close exactly
	// its idle connections (http.Server.Shutdown otherwise waits up to 5 s
	// for connections the balancer dialled but never used).
	r.transport = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     60 * time.Second,
	}
	r.proxy = s.newProxy(target, r.transport, nil, "replica "+id)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if st := s.replicaState(r); st != StateReady {
			http.Error(w, "replica "+id+" is "+st, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("/", handler)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := r.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("replica server stopped", "replica", id, "err", err)
		}
	}()

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = r.srv.Close()
		closeHandler(handler)
		return errors.New("host is stopping")
	}
	s.replicas[id] = r
	r.readyT = time.AfterFunc(s.cfg.WarmUp, func() { s.markReady(r) })
	s.mu.Unlock()
	s.logger.Info("replica starting", "replica", id, "address", r.addr, "warm_up", s.cfg.WarmUp)
	s.updateGauges()
	return nil
}

func (s *service) replicaState(r *replica) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return r.state
}

func (s *service) markReady(r *replica) {
	s.mu.Lock()
	if r.state != StateStarting {
		s.mu.Unlock()
		return
	}
	r.state = StateReady
	r.readyAt = time.Now()
	s.mu.Unlock()
	s.logger.Info("replica ready", "replica", r.id, "after", r.readyAt.Sub(r.startedAt).Round(time.Millisecond))
	s.updateGauges()
}

// drainLocked takes r out of the load balancer and stops it once its
// in-flight requests (counted by the balancer) have ended.
func (s *service) drainLocked(r *replica) {
	if r.state == StateDraining {
		return
	}
	r.readyT.Stop()
	r.state = StateDraining
	idle := make(chan struct{})
	if r.inflight == 0 {
		close(idle)
	} else {
		r.idle = idle
	}
	s.stopping.Add(1)
	go func() {
		defer s.stopping.Done()
		t := time.NewTimer(s.cfg.DrainTimeout)
		defer t.Stop()
		select {
		case <-idle:
		case <-t.C:
			s.logger.Warn("replica still had requests in flight at drain_timeout", "replica", r.id)
		}
		r.transport.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
		defer cancel()
		if err := r.srv.Shutdown(ctx); err != nil {
			_ = r.srv.Close()
		}
		closeHandler(r.handler)
		s.mu.Lock()
		delete(s.replicas, r.id)
		s.mu.Unlock()
		s.logger.Info("replica stopped", "replica", r.id)
		s.updateGauges()
	}()
}

func (s *service) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	if s.lb != nil {
		_ = s.lb.Shutdown(ctx) // waits for the requests it is proxying
		s.lbWG.Wait()
	}
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.deactivate()
	s.fwdTransport.CloseIdleConnections()
}

func (s *service) status() ServiceStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := ServiceStatus{Name: s.cfg.Name, Tenant: s.cfg.Tenant, Address: s.addr, Desired: s.desired, Active: s.active,
		Min: s.cfg.MinReplicas, Max: s.cfg.MaxReplicas, WarmUp: s.cfg.WarmUp.String(), Replicas: []ReplicaStatus{}}
	if s.host.coord != nil {
		st.Owner, _ = s.host.coord.ServiceOwner(OwnerKey(s.cfg.Name), s.cfg.Name)
	}
	for _, r := range s.replicas {
		if r.state == StateReady {
			st.Ready++
		}
		st.Replicas = append(st.Replicas, ReplicaStatus{ID: r.id, Address: r.addr, State: r.state, StartedAt: r.startedAt,
			ReadyAt: r.readyAt, InFlight: r.inflight, Healthy: r.state != StateDraining})
	}
	sort.Slice(st.Replicas, func(i, j int) bool { return replicaSeq(st.Replicas[i].ID) < replicaSeq(st.Replicas[j].ID) })
	return st
}

func replicaSeq(id string) int {
	for i := len(id) - 1; i >= 0; i-- {
		if id[i] == '-' {
			n, _ := strconv.Atoi(id[i+1:])
			return n
		}
	}
	return 0
}

func (s *service) updateGauges() {
	s.mu.Lock()
	counts := map[string]int{}
	for _, r := range s.replicas {
		counts[r.state]++
	}
	s.mu.Unlock()
	for _, st := range []string{StateStarting, StateReady, StateDraining} {
		s.host.replicas.WithLabelValues(s.cfg.Name, st).Set(float64(counts[st]))
	}
}

// newProxy forwards to target over transport, setting header (if any) on
// each request; a backend that does not answer is counted and answered
// 502 naming who (a replica, or the hub running the service).
func (s *service) newProxy(target *url.URL, transport http.RoundTripper, header http.Header, who string) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			for k, v := range header {
				pr.Out.Header[k] = v
			}
		},
		Transport: transport,
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			if req.Context().Err() != nil {
				return
			}
			s.host.lbRequests.WithLabelValues(s.cfg.Name, "backend_error").Inc()
			s.logger.Warn("backend did not answer", "backend", who, "err", err)
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"error":"`+who+` did not answer","reason":"backend_error"}`, http.StatusBadGateway)
		},
	}
}

func closeHandler(h http.Handler) {
	if c, ok := h.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}
