package simclock

import (
	"testing"
	"time"
)

func TestClockMapsBothWays(t *testing.T) {
	epoch := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	sim := time.Date(2026, 11, 1, 7, 0, 0, 0, time.UTC)
	c := New(Config{Epoch: epoch, SimStart: sim, Speedup: 288})
	// 5 wall minutes are one simulated day.
	if got := c.ToSim(epoch.Add(5 * time.Minute)); !got.Equal(sim.Add(24 * time.Hour)) {
		t.Fatalf("ToSim(+5m) = %v, want %v", got, sim.Add(24*time.Hour))
	}
	if got := c.ToWall(sim.Add(40 * time.Minute)); !got.Equal(epoch.Add(40 * time.Minute / 288)) {
		t.Fatalf("ToWall(07:40) = %v", got)
	}
	if got := c.WallDuration(24 * time.Hour); got != 5*time.Minute {
		t.Fatalf("WallDuration(24h) = %v, want 5m", got)
	}
	if got := c.SimDuration(5 * time.Minute); got != 24*time.Hour {
		t.Fatalf("SimDuration(5m) = %v, want 24h", got)
	}
	if err := (Config{Speedup: -1}).Validate("clock"); err == nil {
		t.Fatal("negative speedup accepted")
	}
}

func TestRealClockIsWallTime(t *testing.T) {
	c := Real()
	if d := time.Since(c.Now()); d < 0 || d > time.Second {
		t.Fatalf("real clock is off by %v", d)
	}
}
