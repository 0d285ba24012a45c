package clusterbench

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

func TestScheduleAfter(t *testing.T) {
	base := time.UnixMilli(15_000 * 66_666_667) // a multiple of 15 s
	tests := []struct {
		name          string
		now           time.Time
		offset, phase time.Duration
		want          time.Time
	}{
		{"later in this interval", base.Add(time.Second), 2 * time.Second, 3 * time.Second, base.Add(5 * time.Second)},
		{"next interval", base.Add(6 * time.Second), 2 * time.Second, 3 * time.Second, base.Add(20 * time.Second)},
		{"exactly now is too late", base.Add(5 * time.Second), 2 * time.Second, 3 * time.Second, base.Add(20 * time.Second)},
		{"offset plus phase wraps", base.Add(time.Second), 14 * time.Second, 3 * time.Second, base.Add(2 * time.Second)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := scheduleAfter(tc.now, tc.offset, tc.phase, 15*time.Second); !got.Equal(tc.want) {
				t.Errorf("scheduleAfter = %v after base, want %v", got.Sub(base), tc.want.Sub(base))
			}
		})
	}
}

func TestQuantileSkipsNaN(t *testing.T) {
	xs := []float64{3, math.NaN(), 1, 2, 4}
	if got := quantile(xs, 0.5); got != 2 {
		t.Errorf("p50 = %v, want 2", got)
	}
	if got := quantile(xs, 1); got != 4 {
		t.Errorf("max = %v, want 4", got)
	}
	if got := quantile([]float64{math.NaN()}, 0.5); !math.IsNaN(got) {
		t.Errorf("p50 of nothing = %v, want NaN", got)
	}
}

func TestFloatJSON(t *testing.T) {
	b, err := json.Marshal([]Float{1.5, Float(math.NaN())})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "[1.5,null]" {
		t.Fatalf("marshal = %s", b)
	}
	var back []Float
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back[0] != 1.5 || !math.IsNaN(float64(back[1])) {
		t.Errorf("round trip = %v", back)
	}
}
