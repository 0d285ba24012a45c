package alerting

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/go-openapi/strfmt"
	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/alertmanager/marker"
	"github.com/prometheus/alertmanager/matcher/compat"
	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/alertmanager/silence"
	"github.com/prometheus/alertmanager/silence/silencepb"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/version"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bureauhub/bureauhub/hub/auth"
)

// The v2 handlers follow Alertmanager's api/v2 (v0.34) handler by handler;
// that package itself cannot be imported here because its go-swagger
// runtime is not in this module's go.sum. Differences: tenancy, and no
// alerts/groups.

// running wraps a handler that needs Run's alert store.
func (a *Alerting) running(h func(http.ResponseWriter, *http.Request, *runtime, auth.Principal)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rt := a.rt.Load()
		if rt == nil {
			writeJSONError(w, http.StatusServiceUnavailable, "alerting is not running")
			return
		}
		p, _ := auth.FromContext(r.Context())
		w.Header().Set("Cache-Control", "no-store")
		h(w, r, rt, p)
	}
}

func (a *Alerting) getStatus(w http.ResponseWriter, _ *http.Request, _ *runtime, _ auth.Principal) {
	a.mu.Lock()
	original := a.def.String() // secrets masked
	a.mu.Unlock()
	uptime := strfmt.DateTime(a.started)
	status := models.ClusterStatusStatusDisabled
	writeJSON(w, http.StatusOK, &models.AlertmanagerStatus{
		Uptime: &uptime,
		VersionInfo: &models.VersionInfo{
			Version: &version.Version, Revision: &version.Revision, Branch: &version.Branch,
			BuildUser: &version.BuildUser, BuildDate: &version.BuildDate, GoVersion: &version.GoVersion,
		},
		Config:  &models.AlertmanagerConfig{Original: &original},
		Cluster: &models.ClusterStatus{Status: &status, Peers: []*models.PeerStatus{}},
	})
}

func (a *Alerting) getReceivers(w http.ResponseWriter, _ *http.Request, _ *runtime, _ auth.Principal) {
	a.mu.Lock()
	def := a.def
	a.mu.Unlock()
	out := make([]*models.Receiver, 0, len(def.AM.Receivers))
	for i := range def.AM.Receivers {
		out = append(out, &models.Receiver{Name: &def.AM.Receivers[i].Name})
	}
	writeJSON(w, http.StatusOK, out)
}

// parseFilter parses filter matchers as Alertmanager's API does.
func parseFilter(filter []string) ([]*labels.Matcher, error) {
	out := make([]*labels.Matcher, 0, len(filter))
	for _, s := range filter {
		m, err := compat.Matcher(s, "api")
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func boolParam(r *http.Request, name string, def bool) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: %q is not a boolean", name, v)
	}
	return b, nil
}

// status is the silencer's and inhibitor's verdict on an alert now, taken
// on a fresh marker as Alertmanager's API takes it.
func (a *Alerting) status(ctx context.Context, ls model.LabelSet) alert.AlertStatus {
	m := marker.NewAlertMarker()
	mctx := marker.WithContext(ctx, m)
	if ac := a.active.Load(); ac != nil {
		ac.inhibitor.Mutes(mctx, ls)
	}
	a.silencer.Mutes(mctx, ls)
	return m.Status(ls.Fingerprint())
}

func (a *Alerting) getAlerts(w http.ResponseWriter, r *http.Request, rt *runtime, p auth.Principal) {
	q := r.URL.Query()
	matchers, err := parseFilter(q["filter"])
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !p.CanReadAll() {
		matchers = append(matchers, ownMatcher(p.Tenant))
	}
	var flags [3]bool
	for i, name := range []string{"silenced", "inhibited", "active"} {
		if flags[i], err = boolParam(r, name, true); err != nil {
			writeJSONError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	silenced, inhibited, active := flags[0], flags[1], flags[2]
	var receiverRE *regexp.Regexp
	if v := q.Get("receiver"); v != "" {
		if receiverRE, err = regexp.Compile("^(?:" + v + ")$"); err != nil {
			writeJSONError(w, http.StatusBadRequest, fmt.Sprintf("failed to parse receiver param: %v", err))
			return
		}
	}
	ac := a.active.Load()
	res := models.GettableAlerts{}
	now := time.Now()
	it := rt.alerts.GetPending()
	defer it.Close()
	for pa := range it.Next() {
		al := pa.Data
		if !al.EndsAt.IsZero() && al.EndsAt.Before(now) {
			continue
		}
		if !matchesAll(matchers, al.Labels) {
			continue
		}
		var receivers []string
		for _, rt := range ac.routes.Match(al.Labels) {
			receivers = append(receivers, rt.RouteOpts.Receiver)
		}
		if receiverRE != nil && !slices.ContainsFunc(receivers, receiverRE.MatchString) {
			continue
		}
		st := a.status(r.Context(), al.Labels)
		if (!active && st.State == alert.AlertStateActive) ||
			(!silenced && len(st.SilencedBy) > 0) || (!inhibited && len(st.InhibitedBy) > 0) {
			continue
		}
		res = append(res, gettableAlert(al, st, receivers))
	}
	if err := it.Err(); err != nil {
		writeJSONError(w, http.StatusInternalServerError, err.Error())
		return
	}
	sort.Slice(res, func(i, j int) bool { return *res[i].Fingerprint < *res[j].Fingerprint })
	writeJSON(w, http.StatusOK, res)
}

func matchesAll(ms []*labels.Matcher, ls model.LabelSet) bool {
	for _, m := range ms {
		if !m.Matches(string(ls[model.LabelName(m.Name)])) {
			return false
		}
	}
	return true
}

// gettableAlert is api/v2's AlertToOpenAPIAlert.
func gettableAlert(al *alert.Alert, st alert.AlertStatus, receivers []string) *models.GettableAlert {
	startsAt, updatedAt, endsAt := strfmt.DateTime(al.StartsAt), strfmt.DateTime(al.UpdatedAt), strfmt.DateTime(al.EndsAt)
	refs := make([]*models.ReceiverReference, 0, len(receivers))
	for i := range receivers {
		refs = append(refs, &models.ReceiverReference{Name: &receivers[i]})
	}
	fp := al.Fingerprint().String()
	state := string(st.State)
	ga := &models.GettableAlert{
		Alert:       models.Alert{GeneratorURL: strfmt.URI(al.GeneratorURL), Labels: apiLabels(al.Labels)},
		Annotations: apiLabels(al.Annotations),
		StartsAt:    &startsAt, UpdatedAt: &updatedAt, EndsAt: &endsAt,
		Fingerprint: &fp,
		Receivers:   refs,
		Status: &models.AlertStatus{
			State: &state, SilencedBy: st.SilencedBy, InhibitedBy: st.InhibitedBy, MutedBy: []string{},
		},
	}
	if ga.Status.SilencedBy == nil {
		ga.Status.SilencedBy = []string{}
	}
	if ga.Status.InhibitedBy == nil {
		ga.Status.InhibitedBy = []string{}
	}
	return ga
}

func apiLabels(ls model.LabelSet) models.LabelSet {
	out := models.LabelSet{}
	for k, v := range ls {
		out[string(k)] = string(v)
	}
	return out
}

// postAlerts is api/v2's postAlertsHandler: it stores every valid alert
// and answers 400 naming what is wrong with the others. A bureau's alerts
// get its bureau label.
func (a *Alerting) postAlerts(w http.ResponseWriter, r *http.Request, rt *runtime, p auth.Principal) {
	var posted models.PostableAlerts
	if !readJSON(w, r, &posted) {
		return
	}
	if err := posted.Validate(strfmt.Default); err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	a.mu.Lock()
	resolveTimeout := time.Duration(a.def.AM.Global.ResolveTimeout)
	a.mu.Unlock()
	now := time.Now()
	var (
		valid []*alert.Alert
		errs  error
	)
	for i, pa := range posted {
		al := &alert.Alert{
			Alert: model.Alert{
				Labels: model.LabelSet{}, Annotations: model.LabelSet{},
				StartsAt: time.Time(pa.StartsAt), EndsAt: time.Time(pa.EndsAt), GeneratorURL: string(pa.GeneratorURL),
			},
			UpdatedAt: now,
		}
		for k, v := range pa.Labels {
			if v != "" { // removeEmptyLabels
				al.Labels[model.LabelName(k)] = model.LabelValue(v)
			}
		}
		for k, v := range pa.Annotations {
			al.Annotations[model.LabelName(k)] = model.LabelValue(v)
		}
		if !p.CanReadAll() && len(al.Labels) > 0 {
			al.Labels[TenantLabel] = model.LabelValue(p.Tenant)
		}
		if al.StartsAt.IsZero() {
			if al.EndsAt.IsZero() {
				al.StartsAt = now
			} else {
				al.StartsAt = al.EndsAt
			}
		}
		if al.EndsAt.IsZero() {
			al.Timeout = true
			al.EndsAt = now.Add(resolveTimeout)
		}
		if err := al.Validate(); err != nil {
			errs = errors.Join(errs, fmt.Errorf("alert %d: %w", i, err))
			continue
		}
		valid = append(valid, al)
	}
	if err := rt.alerts.Put(r.Context(), valid...); err != nil {
		writeJSONError(w, http.StatusInternalServerError, err.Error())
		return
	}
	a.share(valid)
	if errs != nil {
		writeJSONError(w, http.StatusBadRequest, errs.Error())
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (a *Alerting) getSilences(w http.ResponseWriter, r *http.Request, _ *runtime, p auth.Principal) {
	matchers, err := parseFilter(r.URL.Query()["filter"])
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !p.CanReadAll() {
		matchers = append(matchers, ownMatcher(p.Tenant))
	}
	sils, _, err := a.silences.Query(r.Context())
	if err != nil {
		writeJSONError(w, http.StatusInternalServerError, err.Error())
		return
	}
	out := models.GettableSilences{}
	for _, s := range sils {
		if !silenceMatchesFilter(s, matchers) {
			continue
		}
		gs, err := gettableSilence(s)
		if err != nil {
			continue // several matcher sets: not expressible in this API, as Alertmanager skips them
		}
		out = append(out, &gs)
	}
	sortSilences(out)
	writeJSON(w, http.StatusOK, out)
}

// silenceMatchesFilter is api/v2's CheckSilenceMatchesFilterLabels: every
// filter matcher has an identical matcher in one of the silence's sets.
func silenceMatchesFilter(s *silencepb.Silence, ms []*labels.Matcher) bool {
	if len(ms) == 0 {
		return true
	}
	types := map[labels.MatchType]silencepb.Matcher_Type{
		labels.MatchEqual: silencepb.Matcher_EQUAL, labels.MatchNotEqual: silencepb.Matcher_NOT_EQUAL,
		labels.MatchRegexp: silencepb.Matcher_REGEXP, labels.MatchNotRegexp: silencepb.Matcher_NOT_REGEXP,
	}
	for _, set := range s.MatcherSets {
		all := true
		for _, f := range ms {
			if !slices.ContainsFunc(set.Matchers, func(m *silencepb.Matcher) bool {
				return m.Name == f.Name && m.Type == types[f.Type] && m.Pattern == f.Value
			}) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// sortSilences is api/v2's SortSilences: active by end time, then pending
// by start time, then expired, most recently ended first.
func sortSilences(sils models.GettableSilences) {
	rank := map[string]int{string(silence.SilenceStateActive): 0, string(silence.SilenceStatePending): 1, string(silence.SilenceStateExpired): 2}
	sort.SliceStable(sils, func(i, j int) bool {
		si, sj := *sils[i].Status.State, *sils[j].Status.State
		if si != sj {
			return rank[si] < rank[sj]
		}
		switch si {
		case string(silence.SilenceStateActive):
			return time.Time(*sils[i].EndsAt).Before(time.Time(*sils[j].EndsAt))
		case string(silence.SilenceStatePending):
			return time.Time(*sils[i].StartsAt).Before(time.Time(*sils[j].StartsAt))
		default:
			return time.Time(*sils[i].EndsAt).After(time.Time(*sils[j].EndsAt))
		}
	})
}

// gettableSilence is api/v2's GettableSilenceFromProto.
func gettableSilence(s *silencepb.Silence) (models.GettableSilence, error) {
	start, end, updated := strfmt.DateTime(s.StartsAt.AsTime()), strfmt.DateTime(s.EndsAt.AsTime()), strfmt.DateTime(s.UpdatedAt.AsTime())
	state := string(silence.CurrentState(s.StartsAt.AsTime(), s.EndsAt.AsTime()))
	gs := models.GettableSilence{
		Silence: models.Silence{
			StartsAt: &start, EndsAt: &end, Matchers: models.Matchers{},
			Comment: &s.Comment, CreatedBy: &s.CreatedBy, Annotations: s.Annotations,
		},
		ID: &s.Id, UpdatedAt: &updated, Status: &models.SilenceStatus{State: &state},
	}
	if len(s.MatcherSets) > 1 {
		return gs, fmt.Errorf("silence %s has several matcher sets", s.Id)
	}
	if len(s.MatcherSets) == 0 {
		return gs, nil
	}
	for _, m := range s.MatcherSets[0].Matchers {
		eq := m.Type == silencepb.Matcher_EQUAL || m.Type == silencepb.Matcher_REGEXP
		re := m.Type == silencepb.Matcher_REGEXP || m.Type == silencepb.Matcher_NOT_REGEXP
		gs.Matchers = append(gs.Matchers, &models.Matcher{Name: &m.Name, Value: &m.Pattern, IsEqual: &eq, IsRegex: &re})
	}
	return gs, nil
}

// postSilences is api/v2's postSilencesHandler. A bureau's silence gets a
// bureau="<tenant>" matcher in place of any bureau matcher it had, and a
// bureau may update only its own silences.
func (a *Alerting) postSilences(w http.ResponseWriter, r *http.Request, _ *runtime, p auth.Principal) {
	var ps models.PostableSilence
	if !readJSON(w, r, &ps) {
		return
	}
	if err := ps.Validate(strfmt.Default); err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !p.CanReadAll() {
		if ps.ID != "" && !a.ownsSilence(r.Context(), ps.ID, p.Tenant) {
			writeJSONError(w, http.StatusNotFound, fmt.Sprintf("silence %s not found", ps.ID))
			return
		}
		ms := models.Matchers{}
		for _, m := range ps.Matchers {
			if *m.Name != TenantLabel {
				ms = append(ms, m)
			}
		}
		t, f, name, value := true, false, TenantLabel, p.Tenant
		ps.Matchers = append(ms, &models.Matcher{IsEqual: &t, IsRegex: &f, Name: &name, Value: &value})
	}
	sil := postableSilenceToProto(&ps)
	if !sil.StartsAt.AsTime().Before(sil.EndsAt.AsTime()) {
		writeJSONError(w, http.StatusBadRequest, "Failed to create silence: start time must be before end time")
		return
	}
	if sil.EndsAt.AsTime().Before(time.Now()) {
		writeJSONError(w, http.StatusBadRequest, "Failed to create silence: end time can't be in the past")
		return
	}
	if err := a.silences.Set(r.Context(), sil); err != nil {
		if errors.Is(err, silence.ErrNotFound) {
			writeJSONError(w, http.StatusNotFound, err.Error())
			return
		}
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"silenceID": sil.Id})
}

// postableSilenceToProto is api/v2's PostableSilenceToProto.
func postableSilenceToProto(s *models.PostableSilence) *silencepb.Silence {
	sil := &silencepb.Silence{
		Id:          s.ID,
		StartsAt:    timestamppb.New(time.Time(*s.StartsAt)),
		EndsAt:      timestamppb.New(time.Time(*s.EndsAt)),
		Comment:     *s.Comment,
		CreatedBy:   *s.CreatedBy,
		Annotations: map[string]string{},
	}
	set := &silencepb.MatcherSet{}
	for _, m := range s.Matchers {
		isEqual, isRegex := true, false
		if m.IsEqual != nil {
			isEqual = *m.IsEqual
		}
		if m.IsRegex != nil {
			isRegex = *m.IsRegex
		}
		t := silencepb.Matcher_EQUAL
		switch {
		case !isEqual && !isRegex:
			t = silencepb.Matcher_NOT_EQUAL
		case isEqual && isRegex:
			t = silencepb.Matcher_REGEXP
		case !isEqual && isRegex:
			t = silencepb.Matcher_NOT_REGEXP
		}
		set.Matchers = append(set.Matchers, &silencepb.Matcher{Name: *m.Name, Pattern: *m.Value, Type: t})
	}
	sil.MatcherSets = append(sil.MatcherSets, set)
	if s.Annotations != nil {
		sil.Annotations = s.Annotations
	}
	return sil
}

// ownsSilence reports whether the silence with id carries the tenant's
// bureau="<tenant>" matcher, as the listing filter decides. An unknown id
// counts as owned: the handler then answers 404 as for anyone.
func (a *Alerting) ownsSilence(ctx context.Context, id, tenant string) bool {
	sils, _, err := a.silences.Query(ctx, silence.QIDs(id))
	if err != nil || len(sils) == 0 {
		return true
	}
	return silenceMatchesFilter(sils[0], []*labels.Matcher{ownMatcher(tenant)})
}

func (a *Alerting) getSilence(w http.ResponseWriter, r *http.Request, _ *runtime, p auth.Principal) {
	id := r.PathValue("id")
	sils, _, err := a.silences.Query(r.Context(), silence.QIDs(id))
	if err != nil {
		writeJSONError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if len(sils) == 0 || (!p.CanReadAll() && !silenceMatchesFilter(sils[0], []*labels.Matcher{ownMatcher(p.Tenant)})) {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	gs, err := gettableSilence(sils[0])
	if err != nil {
		writeJSONError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, &gs)
}

func (a *Alerting) deleteSilence(w http.ResponseWriter, r *http.Request, _ *runtime, p auth.Principal) {
	id := r.PathValue("id")
	if !p.CanReadAll() && !a.ownsSilence(r.Context(), id, p.Tenant) {
		w.WriteHeader(http.StatusNotFound) // as for an unknown silence: no hint that it exists
		return
	}
	if err := a.silences.Expire(r.Context(), id); err != nil {
		if errors.Is(err, silence.ErrNotFound) {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		writeJSONError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.WriteHeader(http.StatusOK)
}
