package alertbench

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// webhookPayload is the part of Alertmanager's webhook (version 4) body
// the latency phase reads.
type webhookPayload struct {
	Version  string `json:"version"`
	Status   string `json:"status"`
	GroupKey string `json:"groupKey"`
	Alerts   []struct {
		Status   string            `json:"status"`
		Labels   map[string]string `json:"labels"`
		StartsAt time.Time         `json:"startsAt"`
	} `json:"alerts"`
}

// arrival is the first firing notification of one trial at one system.
type arrival struct {
	At       time.Time // when the sink read the request
	StartsAt time.Time // the alert's startsAt: the rule evaluation that fired it
}

// latencySink receives the webhooks of the latency phase at
// /hook/<system> and keeps, per system and trial, the first firing
// notification.
type latencySink struct {
	srv *http.Server
	l   net.Listener

	mu       sync.Mutex
	first    map[string]map[int]arrival // system -> trial -> first
	requests map[string]int
	other    map[string]int // firing alerts without a trial label, by system
	bad      []string       // bodies that did not parse
}

func newLatencySink() (*latencySink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &latencySink{l: l, first: map[string]map[int]arrival{}, requests: map[string]int{}, other: map[string]int{}}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(l)
	return s, nil
}

func (s *latencySink) url(system string) string {
	return "http://" + s.l.Addr().String() + "/hook/" + system
}

func (s *latencySink) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	// The receive time is when the whole request was read: that is when a
	// receiver could act on it.
	now := time.Now()
	system := strings.TrimPrefix(r.URL.Path, "/hook/")
	var p webhookPayload
	if err == nil {
		err = json.Unmarshal(body, &p)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[system]++
	if err != nil {
		if len(s.bad) < 5 {
			s.bad = append(s.bad, system+": "+err.Error())
		}
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	for _, a := range p.Alerts {
		if a.Status != "firing" {
			continue
		}
		trial, err := strconv.Atoi(a.Labels["trial"])
		if err != nil {
			s.other[system]++
			continue
		}
		m := s.first[system]
		if m == nil {
			m = map[int]arrival{}
			s.first[system] = m
		}
		if _, ok := m[trial]; !ok {
			m[trial] = arrival{At: now, StartsAt: a.StartsAt}
		}
	}
}

func (s *latencySink) get(system string, trial int) (arrival, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.first[system][trial]
	return a, ok
}

func (s *latencySink) close() { s.srv.Close() }

// countingSink receives the throughput phase's webhooks at
// /tput/<system>/<tenant> and counts them cheaply (it shares the cores
// with the system measured): per system a count, and while a window is
// open the interval between two notifications of the same group, read
// from the body's groupKey without decoding the rest.
type countingSink struct {
	srv *http.Server
	l   net.Listener

	mu        sync.Mutex
	count     map[string]int64
	bad       map[string]int64
	last      map[string]time.Time // system + groupKey -> last notification
	groups    map[string]map[string]bool
	recording bool
	intervals map[string][]time.Duration
}

func newCountingSink() (*countingSink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &countingSink{l: l, count: map[string]int64{}, bad: map[string]int64{}, last: map[string]time.Time{},
		groups: map[string]map[string]bool{}, intervals: map[string][]time.Duration{}}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(l)
	return s, nil
}

func (s *countingSink) url(system, tenant string) string {
	return "http://" + s.l.Addr().String() + "/tput/" + system + "/" + tenant
}

var groupKeyField = []byte(`"groupKey":"`)

// groupKeyOf returns the (still JSON-escaped) groupKey of a webhook body
// without decoding the rest, or "" if there is none. Quotes inside the
// key are escaped (\"), so the first unescaped quote ends it.
func groupKeyOf(body []byte) string {
	i := bytes.Index(body, groupKeyField)
	if i < 0 {
		return ""
	}
	v := body[i+len(groupKeyField):]
	for j := 0; j < len(v); j++ {
		switch v[j] {
		case '\\':
			j++
		case '"':
			return string(v[:j])
		}
	}
	return ""
}

func (s *countingSink) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	now := time.Now()
	rest := strings.TrimPrefix(r.URL.Path, "/tput/")
	system, _, _ := strings.Cut(rest, "/")
	var key string
	if err == nil {
		key = groupKeyOf(body)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if key == "" {
		s.bad[system]++
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s.count[system]++
	g := s.groups[system]
	if g == nil {
		g = map[string]bool{}
		s.groups[system] = g
	}
	g[key] = true
	k := system + "\x00" + key
	if prev, ok := s.last[k]; ok && s.recording {
		s.intervals[system] = append(s.intervals[system], now.Sub(prev))
	}
	s.last[k] = now
}

// snapshot returns system's notification count and distinct groups.
func (s *countingSink) snapshot(system string) (count int64, groups int, bad int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[system], len(s.groups[system]), s.bad[system]
}

// record starts or stops recording intervals; stopping returns system's.
func (s *countingSink) record(system string, on bool) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recording = on
	out := s.intervals[system]
	if on {
		s.intervals[system] = nil
	}
	return out
}

func (s *countingSink) close() { s.srv.Close() }
