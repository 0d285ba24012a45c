package booking

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// catalog is the validated, indexed form of the configured consulates,
// visa types and release schedule. It is immutable.
type catalog struct {
	loc        *time.Location
	consulates []*consulate
	byName     map[string]*consulate
	rules      []releaseRule
}

type consulate struct {
	name   string
	visas  []*visaType
	byName map[string]*visaType
}

type visaType struct {
	name        string
	slotsPerDay int
	// times are minutes since midnight, in configuration order.
	times []int
	// timeIndex maps HHMM (e.g. 930) to an index into times.
	timeIndex map[int]int
}

// releaseRule is one configured release: daily, or weekly on weekday.
type releaseRule struct {
	weekday  time.Weekday
	daily    bool
	minute   int
	fraction float64
}

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// catalog validates the consulates and releases and indexes them. Its
// errors start with the field path below the config's prefix.
func (c *Config) catalog() (*catalog, error) {
	loc, err := time.LoadLocation(c.Location)
	if err != nil {
		return nil, fmt.Errorf("location: %w", err)
	}
	cat := &catalog{loc: loc, byName: map[string]*consulate{}}
	for i, cc := range c.Consulates {
		field := fmt.Sprintf("consulates[%d]", i)
		if !namePattern.MatchString(cc.Name) {
			return nil, fmt.Errorf("%s.name: %q must match %s", field, cc.Name, namePattern)
		}
		if cat.byName[cc.Name] != nil {
			return nil, fmt.Errorf("%s.name: duplicate consulate %q", field, cc.Name)
		}
		if len(cc.VisaTypes) == 0 {
			return nil, fmt.Errorf("%s.visa_types: at least one required", field)
		}
		co := &consulate{name: cc.Name, byName: map[string]*visaType{}}
		for j, vc := range cc.VisaTypes {
			vfield := fmt.Sprintf("%s.visa_types[%d]", field, j)
			if !namePattern.MatchString(vc.Name) {
				return nil, fmt.Errorf("%s.name: %q must match %s", vfield, vc.Name, namePattern)
			}
			if co.byName[vc.Name] != nil {
				return nil, fmt.Errorf("%s.name: duplicate visa type %q", vfield, vc.Name)
			}
			if len(vc.Times) == 0 {
				return nil, fmt.Errorf("%s.times: at least one required", vfield)
			}
			if vc.SlotsPerDay < 1 || vc.SlotsPerDay > 99*len(vc.Times) {
				return nil, fmt.Errorf("%s.slots_per_day: must be 1..%d (99 per time), got %d", vfield, 99*len(vc.Times), vc.SlotsPerDay)
			}
			vt := &visaType{name: vc.Name, slotsPerDay: vc.SlotsPerDay, timeIndex: map[int]int{}}
			for k, s := range vc.Times {
				m, err := parseHHMM(s)
				if err != nil {
					return nil, fmt.Errorf("%s.times[%d]: %w", vfield, k, err)
				}
				hhmm := m/60*100 + m%60
				if _, dup := vt.timeIndex[hhmm]; dup {
					return nil, fmt.Errorf("%s.times[%d]: duplicate time %q", vfield, k, s)
				}
				vt.timeIndex[hhmm] = len(vt.times)
				vt.times = append(vt.times, m)
			}
			co.visas = append(co.visas, vt)
			co.byName[vt.name] = vt
		}
		cat.consulates = append(cat.consulates, co)
		cat.byName[co.name] = co
	}
	if len(cat.consulates) == 0 {
		return nil, errors.New("consulates: at least one required")
	}
	for i, rc := range c.Releases {
		field := fmt.Sprintf("releases[%d]", i)
		r, err := parseRelease(rc.At)
		if err != nil {
			return nil, fmt.Errorf("%s.at: %w", field, err)
		}
		if !(rc.Fraction > 0 && rc.Fraction <= 1) {
			return nil, fmt.Errorf("%s.fraction: must be in (0, 1], got %v", field, rc.Fraction)
		}
		r.fraction = rc.Fraction
		cat.rules = append(cat.rules, r)
	}
	if len(cat.rules) == 0 {
		return nil, errors.New("releases: at least one required")
	}
	return cat, nil
}

// parseHHMM reads "HH:MM" as minutes since midnight.
func parseHHMM(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != 5 {
		return 0, fmt.Errorf("%q is not a time of day HH:MM", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// parseRelease reads "HH:MM" or "Weekday HH:MM".
func parseRelease(s string) (releaseRule, error) {
	fields := strings.Fields(s)
	switch len(fields) {
	case 1:
		m, err := parseHHMM(fields[0])
		return releaseRule{daily: true, minute: m}, err
	case 2:
		for d := time.Sunday; d <= time.Saturday; d++ {
			if strings.EqualFold(fields[0], d.String()) {
				m, err := parseHHMM(fields[1])
				return releaseRule{weekday: d, minute: m}, err
			}
		}
		return releaseRule{}, fmt.Errorf("%q: unknown weekday %q (want e.g. Monday)", s, fields[0])
	}
	return releaseRule{}, fmt.Errorf("%q: want \"HH:MM\" or \"Weekday HH:MM\"", s)
}

// firing is one occurrence of a release rule.
type firing struct {
	at   time.Time
	rule int
}

// firings lists the occurrences of rules in (after, until], in time order
// (ties in rule order), reading times of day in loc.
func firings(rules []releaseRule, loc *time.Location, after, until time.Time) []firing {
	var out []firing
	a := after.In(loc)
	for day := midnight(a); !day.After(until); day = day.AddDate(0, 0, 1) {
		for i, r := range rules {
			if !r.daily && day.Weekday() != r.weekday {
				continue
			}
			at := time.Date(day.Year(), day.Month(), day.Day(), r.minute/60, r.minute%60, 0, 0, loc)
			if at.After(after) && !at.After(until) {
				out = append(out, firing{at: at, rule: i})
			}
		}
	}
	slices.SortStableFunc(out, func(x, y firing) int { return x.at.Compare(y.at) })
	return out
}

// midnight is the start of t's day in t's location.
func midnight(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, t.Location())
}

// releasedAfter is how many of a day's total slots are released after a
// firing of fraction adds to the cur already released. Rounding up means
// 30%+30%+40% of any total releases all of it.
func releasedAfter(cur, total int, fraction float64) int {
	add := int(math.Ceil(fraction*float64(total) - 1e-9))
	return min(total, cur+add)
}

// slotRef is a parsed slot ID.
type slotRef struct {
	consulate *consulate
	visa      *visaType
	day       time.Time // midnight in the catalog's location
	index     int       // 0..slotsPerDay-1, the release order within the day
}

// slot is the index-th appointment of a day: times are filled
// round-robin, so a partial release spreads over all times of day.
func (v *visaType) slot(index int) (minute, seq int) {
	return v.times[index%len(v.times)], index/len(v.times) + 1
}

// id is the slot's ID, {consulate}/{visa_type}/{YYYY-MM-DD}/{HHMM}-{NN}.
func (s slotRef) id() string {
	m, seq := s.visa.slot(s.index)
	return fmt.Sprintf("%s/%s/%s/%02d%02d-%02d", s.consulate.name, s.visa.name, s.day.Format(time.DateOnly), m/60, m%60, seq)
}

// time is the appointment's start.
func (s slotRef) time() time.Time {
	m, _ := s.visa.slot(s.index)
	return time.Date(s.day.Year(), s.day.Month(), s.day.Day(), m/60, m%60, 0, 0, s.day.Location())
}

// dayKey is the store key of the slot's day: consulate/visa/date.
func dayKey(c *consulate, v *visaType, day time.Time) string {
	return c.name + "/" + v.name + "/" + day.Format(time.DateOnly)
}

// errUnknownSlot marks a well-formed slot ID naming nothing that exists.
var errUnknownSlot = errors.New("unknown slot")

// parseSlotID reads a slot ID. A malformed ID is a plain error saying why;
// a well-formed one naming an unknown consulate, visa type, time or
// sequence number wraps errUnknownSlot.
func (cat *catalog) parseSlotID(id string) (slotRef, error) {
	parts := strings.Split(id, "/")
	if len(parts) != 4 {
		return slotRef{}, fmt.Errorf("%q: want consulate/visa_type/YYYY-MM-DD/HHMM-NN", id)
	}
	day, err := time.ParseInLocation(time.DateOnly, parts[2], cat.loc)
	if err != nil {
		return slotRef{}, fmt.Errorf("%q: date %q is not YYYY-MM-DD", id, parts[2])
	}
	hhmm, seqStr, ok := strings.Cut(parts[3], "-")
	if !ok || len(hhmm) != 4 || len(seqStr) != 2 {
		return slotRef{}, fmt.Errorf("%q: %q is not HHMM-NN", id, parts[3])
	}
	t, err1 := strconv.Atoi(hhmm)
	seq, err2 := strconv.Atoi(seqStr)
	if err1 != nil || err2 != nil || t < 0 || seq < 1 || t/100 > 23 || t%100 > 59 {
		return slotRef{}, fmt.Errorf("%q: %q is not HHMM-NN", id, parts[3])
	}
	co := cat.byName[parts[0]]
	if co == nil {
		return slotRef{}, fmt.Errorf("%w: unknown consulate %q", errUnknownSlot, parts[0])
	}
	vt := co.byName[parts[1]]
	if vt == nil {
		return slotRef{}, fmt.Errorf("%w: consulate %q has no visa type %q", errUnknownSlot, co.name, parts[1])
	}
	ti, ok := vt.timeIndex[t]
	if !ok {
		return slotRef{}, fmt.Errorf("%w: no %s %s appointments at %s", errUnknownSlot, co.name, vt.name, hhmm)
	}
	index := (seq-1)*len(vt.times) + ti
	if index >= vt.slotsPerDay {
		return slotRef{}, fmt.Errorf("%w: %s has no appointment %d", errUnknownSlot, hhmm, seq)
	}
	return slotRef{consulate: co, visa: vt, day: day, index: index}, nil
}
