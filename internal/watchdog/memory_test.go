package watchdog

import (
	"errors"
	"testing"
	"time"

	"tandem/internal/clock"
)

var _ Watchdog = (*Memory)(nil)

func TestMemoryResetsOnlyWhenNotFed(t *testing.T) {
	clk := clock.NewFake(time.Unix(1000, 0))
	m := &Memory{Clock: clk}
	if err := m.Feed(); !errors.Is(err, ErrNotOpen) {
		t.Fatalf("feed before open: %v", err)
	}
	if got, err := m.Open(3 * time.Second); err != nil || got != 3*time.Second {
		t.Fatalf("open: %v %v", got, err)
	}
	for i := 0; i < 10; i++ {
		clk.Advance(2 * time.Second)
		if err := m.Feed(); err != nil {
			t.Fatal(err)
		}
	}
	if at, reset := m.Reset(); reset {
		t.Fatalf("fed every 2s of 3s, reset at %v", at)
	}
	hung := clk.Now()
	clk.Advance(5 * time.Second) // the agent hangs
	at, reset := m.Reset()
	if !reset || !at.Equal(hung.Add(3*time.Second)) {
		t.Fatalf("hung for 5s of 3s: reset=%v at %v, want %v", reset, at, hung.Add(3*time.Second))
	}
	// A thawed agent's feed cannot undo the reset.
	m.Feed()
	if _, reset := m.Reset(); !reset {
		t.Fatal("a feed after the reset undid it")
	}
}

func TestMemoryMagicCloseDisarms(t *testing.T) {
	clk := clock.NewFake(time.Unix(1000, 0))
	m := &Memory{Clock: clk}
	m.Open(time.Second)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	if _, reset := m.Reset(); reset {
		t.Fatal("reset after the magic close")
	}
	if err := m.Close(); !errors.Is(err, ErrNotOpen) {
		t.Fatalf("second close: %v", err)
	}
}

func TestWholeSecondsRoundsDown(t *testing.T) {
	for _, c := range []struct {
		in   time.Duration
		want int
	}{{time.Second, 1}, {2900 * time.Millisecond, 2}, {10 * time.Second, 10}} {
		if got, err := WholeSeconds(c.in); err != nil || got != c.want {
			t.Errorf("WholeSeconds(%v) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	if _, err := WholeSeconds(900 * time.Millisecond); err == nil {
		t.Error("900ms accepted: no device counts below a second")
	}
}
