package healthcode

import (
	"reflect"
	"testing"
	"time"
)

func TestColour(t *testing.T) {
	now := testSeedTime
	tests := []struct {
		name   string
		age    time.Duration // how long before now the test was taken
		result string
		want   string
	}{
		{"fresh negative", time.Hour, Negative, Green},
		{"negative just inside 72h", NegativeValidFor - time.Second, Negative, Green},
		{"negative exactly 72h old", NegativeValidFor, Negative, Yellow},
		{"lapsed negative", 100 * time.Hour, Negative, Yellow},
		{"negative dated after now", -time.Hour, Negative, Green},
		{"fresh positive", time.Hour, Positive, Red},
		{"old positive stays red", 30 * 24 * time.Hour, Positive, Red},
		{"no result", time.Hour, "", Yellow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Colour(now.Add(-tt.age), tt.result, now); got != tt.want {
				t.Fatalf("Colour(%s old, %q) = %s, want %s", tt.age, tt.result, got, tt.want)
			}
		})
	}
}

func TestRecordEncoding(t *testing.T) {
	recs := []*record{
		{testTime: testSeedTime.Add(123456789), positive: true},
		{testTime: testSeedTime.Add(-40 * time.Hour), doses: []time.Time{firstDoseFrom, firstDoseFrom.AddDate(0, 1, 0)}},
	}
	for i := range 50 {
		recs = append(recs, seedRecord(3, i, testSeedTime))
	}
	for i, r := range recs {
		got, err := decodeRecord(appendRecord(nil, r))
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if !got.testTime.Equal(r.testTime) || got.positive != r.positive || len(got.doses) != len(r.doses) {
			t.Fatalf("record %d: round trip gave %+v, want %+v", i, got, r)
		}
		for j := range r.doses {
			if !got.doses[j].Equal(r.doses[j]) {
				t.Fatalf("record %d dose %d: got %s, want %s", i, j, got.doses[j], r.doses[j])
			}
		}
	}
	good := appendRecord(nil, recs[1])
	for name, b := range map[string][]byte{
		"empty":         nil,
		"wrong version": append([]byte{9}, good[1:]...),
		"truncated":     good[:len(good)-1],
		"no result":     good[:2],
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeRecord(b); err == nil {
				t.Fatalf("decodeRecord accepted %x", b)
			}
		})
	}
}

// TestSeedPopulation checks the seeded population is deterministic and
// looks as documented.
func TestSeedPopulation(t *testing.T) {
	if a, b := seedRecord(1, 17, testSeedTime), seedRecord(1, 17, testSeedTime); !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different person: %+v and %+v", a, b)
	}
	same := 0
	colours := map[string]int{}
	doses := map[int]int{}
	const n = 20000
	for i := range n {
		r := seedRecord(1, i, testSeedTime)
		if reflect.DeepEqual(r, seedRecord(2, i, testSeedTime)) {
			same++
		}
		if age := testSeedTime.Sub(r.testTime); age < 0 || age >= 96*time.Hour {
			t.Fatalf("person %d: test %s before seed time, want within 96h", i, age)
		}
		for j := 1; j < len(r.doses); j++ {
			if !r.doses[j].After(r.doses[j-1]) {
				t.Fatalf("person %d: doses out of order: %v", i, r.doses)
			}
		}
		colours[Colour(r.testTime, r.result(), testSeedTime)]++
		doses[len(r.doses)]++
	}
	if same > n/100 {
		t.Fatalf("%d of %d people equal under seeds 1 and 2", same, n)
	}
	share := func(k int) float64 { return float64(k) / n }
	// Expected: red 0.5%, yellow 24/96 of the rest, doses 10/10/40/40%.
	checks := []struct {
		name     string
		got      float64
		low, top float64
	}{
		{"red", share(colours[Red]), 0.002, 0.01},
		{"yellow", share(colours[Yellow]), 0.22, 0.28},
		{"green", share(colours[Green]), 0.70, 0.78},
		{"0 doses", share(doses[0]), 0.08, 0.12},
		{"3 doses", share(doses[3]), 0.37, 0.43},
	}
	for _, c := range checks {
		if c.got < c.low || c.got > c.top {
			t.Errorf("%s: %.4f of the population, want %.3f-%.3f", c.name, c.got, c.low, c.top)
		}
	}
}
