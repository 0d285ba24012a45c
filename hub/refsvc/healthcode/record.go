package healthcode

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"time"
)

// Code colours, as the API spells them.
const (
	Green  = "green"
	Yellow = "yellow"
	Red    = "red"
)

// Test results, as the API spells them.
const (
	Negative = "negative"
	Positive = "positive"
)

// NegativeValidFor is how long a negative test keeps a code green, in
// simulated time.
const NegativeValidFor = 72 * time.Hour

// Colour is the code's colour at simulated time now for a person whose
// latest test was taken at testTime with the given result:
//   - red if the latest result is positive, whenever it was taken (a later
//     negative result turns the code back);
//   - green if it is negative and taken less than NegativeValidFor before
//     now (a test time after now counts as recent);
//   - yellow otherwise (the negative test has lapsed, or there is none).
func Colour(testTime time.Time, result string, now time.Time) string {
	switch {
	case result == Positive:
		return Red
	case result == Negative && now.Sub(testTime) < NegativeValidFor:
		return Green
	default:
		return Yellow
	}
}

// record is one person as stored and cached. It is never modified once
// built, so replicas share cached records without copying.
type record struct {
	testTime time.Time // latest nucleic-acid test, UTC
	positive bool      // its result
	doses    []time.Time
}

func (r *record) result() string {
	if r.positive {
		return Positive
	}
	return Negative
}

// Code is a person's health code as the API answers it.
type Code struct {
	// ID is the person's ID, as scanned.
	ID string `json:"id"`
	// Colour is green, yellow or red; see Colour for the rules.
	Colour string `json:"colour"`
	// Vaccinations lists the doses received, first dose first; empty (not
	// null) for the unvaccinated.
	Vaccinations []Vaccination `json:"vaccinations"`
	// LastTest is the latest nucleic-acid test. Every seeded person has one.
	LastTest Test `json:"last_test"`
}

// Vaccination is one dose.
type Vaccination struct {
	// Dose counts from 1.
	Dose int `json:"dose"`
	// Date is YYYY-MM-DD.
	Date string `json:"date"`
}

// Test is one nucleic-acid test.
type Test struct {
	// Time is when the sample was taken, in simulated time (RFC 3339).
	Time time.Time `json:"time"`
	// Result is negative or positive.
	Result string `json:"result"`
}

// code renders r for person id at simulated time now.
func (r *record) code(id string, now time.Time) Code {
	c := Code{
		ID:           id,
		Colour:       Colour(r.testTime, r.result(), now),
		Vaccinations: make([]Vaccination, len(r.doses)),
		LastTest:     Test{Time: r.testTime, Result: r.result()},
	}
	for i, d := range r.doses {
		c.Vaccinations[i] = Vaccination{Dose: i + 1, Date: d.Format(time.DateOnly)}
	}
	return c
}

// recordVersion is the first byte of every stored record, so the encoding
// can change without misreading old stores.
const recordVersion = 1

var errBadRecord = errors.New("malformed stored record")

// appendRecord encodes r: version, test time (Unix ns), result, number of
// doses, then each dose as days since the Unix epoch.
func appendRecord(b []byte, r *record) []byte {
	b = append(b, recordVersion)
	b = binary.AppendVarint(b, r.testTime.UnixNano())
	res := byte(0)
	if r.positive {
		res = 1
	}
	b = append(b, res, byte(len(r.doses)))
	for _, d := range r.doses {
		b = binary.AppendUvarint(b, uint64(d.Unix()/86400))
	}
	return b
}

// decodeRecord is appendRecord's inverse. It copies what it needs: bbolt's
// value bytes are only valid inside the transaction.
func decodeRecord(b []byte) (*record, error) {
	if len(b) < 1 || b[0] != recordVersion {
		return nil, errBadRecord
	}
	b = b[1:]
	ns, n := binary.Varint(b)
	if n <= 0 || len(b) < n+2 {
		return nil, errBadRecord
	}
	r := &record{testTime: time.Unix(0, ns).UTC(), positive: b[n] == 1}
	ndoses := int(b[n+1])
	b = b[n+2:]
	if ndoses > 0 {
		r.doses = make([]time.Time, ndoses)
	}
	for i := range ndoses {
		days, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, errBadRecord
		}
		r.doses[i] = time.Unix(int64(days)*86400, 0).UTC()
		b = b[n:]
	}
	return r, nil
}

// firstDoseFrom is the earliest first-dose date of the seeded population.
var firstDoseFrom = time.Date(2021, time.March, 1, 0, 0, 0, 0, time.UTC)

// seedRecord is person i of the population seeded with seed at simulated
// time at. It depends only on its arguments (one generator per person), so
// the population is the same whatever order or batches it is written in:
//   - latest test taken uniformly 0-96 h before at (so about a quarter of
//     codes start yellow), positive for 0.5% of people (red);
//   - 0 doses for 10%, 1 for 10%, 2 for 40%, 3 for 40%: the first from
//     March 2021 on, the second 21-60 days later, the third 180-300 days
//     after the second.
func seedRecord(seed uint64, i int, at time.Time) *record {
	rng := rand.New(rand.NewPCG(seed, uint64(i)))
	r := &record{
		testTime: at.Add(-time.Duration(rng.Int64N(int64(96 * time.Hour)))).UTC().Truncate(time.Second),
		positive: rng.IntN(1000) < 5,
	}
	var ndoses int
	switch p := rng.IntN(10); {
	case p < 1:
		ndoses = 0
	case p < 2:
		ndoses = 1
	case p < 6:
		ndoses = 2
	default:
		ndoses = 3
	}
	if ndoses == 0 {
		return r
	}
	r.doses = make([]time.Time, ndoses)
	d := firstDoseFrom.AddDate(0, 0, rng.IntN(270))
	r.doses[0] = d
	if ndoses > 1 {
		d = d.AddDate(0, 0, 21+rng.IntN(40))
		r.doses[1] = d
	}
	if ndoses > 2 {
		r.doses[2] = d.AddDate(0, 0, 180+rng.IntN(121))
	}
	return r
}
