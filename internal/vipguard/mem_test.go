package vipguard

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"tandem/internal/clock"
)

func TestMemAllowanceExpiresOnTheFakeClock(t *testing.T) {
	clk := clock.NewFake(time.Unix(1000, 0))
	g := NewMem(clk)
	a := netip.MustParseAddr("10.0.0.50")
	if err := g.Allow(a, time.Second); !IsNotGuarded(err) {
		t.Fatalf("allow before install: %v", err)
	}
	if err := g.Install([]netip.Prefix{netip.MustParsePrefix("10.0.0.50/24")}); err != nil {
		t.Fatal(err)
	}
	if err := g.Allow(a, 300*time.Millisecond+700*time.Microsecond); err != nil {
		t.Fatal(err)
	}
	if left, _ := g.Remaining(a); left != 300*time.Millisecond {
		t.Errorf("remaining %v: sub-millisecond part must be dropped", left)
	}
	clk.Advance(299 * time.Millisecond)
	if !g.Allowed(a) {
		t.Error("silenced before the lease ended")
	}
	clk.Advance(time.Millisecond)
	if g.Allowed(a) {
		t.Error("still allowed at the lease end")
	}
	if err := g.Allow(a, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := g.Revoke(a); err != nil || g.Allowed(a) {
		t.Errorf("revoke: %v allowed=%v", err, g.Allowed(a))
	}
	calls := g.Calls()
	if len(calls) != 3 || calls[0].Remaining != 300*time.Millisecond || calls[2].Remaining != 0 {
		t.Errorf("calls %+v", calls)
	}
	boom := errors.New("boom")
	g.Fail(boom)
	if err := g.Allow(a, time.Second); !errors.Is(err, boom) {
		t.Errorf("injected failure: %v", err)
	}
}

func TestMemAllowUntil(t *testing.T) {
	clk := clock.NewFake(time.Unix(1000, 0))
	g := NewMem(clk)
	a := netip.MustParseAddr("10.0.0.50")
	if err := g.AllowUntil(a, clk.Now().Add(time.Second)); !IsNotGuarded(err) {
		t.Fatalf("AllowUntil before install: %v", err)
	}
	if err := g.AllowUntil(a, clk.Now()); err != nil {
		t.Fatalf("AllowUntil(now) revokes, even unguarded: %v", err)
	}
	if err := g.Install([]netip.Prefix{netip.MustParsePrefix("10.0.0.50/24")}); err != nil {
		t.Fatal(err)
	}
	until := clk.Now().Add(180*time.Millisecond + 400*time.Microsecond)
	if err := g.AllowUntil(a, until); err != nil {
		t.Fatal(err)
	}
	clk.Advance(179 * time.Millisecond)
	if !g.Allowed(a) {
		t.Error("silenced before until")
	}
	clk.Advance(time.Millisecond)
	if g.Allowed(a) {
		t.Error("still allowed in until's last partial millisecond: the kernel works in whole ones")
	}
	// Asking when the end has passed (a caller that read the lease, then
	// was descheduled) revokes at once.
	if err := g.AllowUntil(a, clk.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := g.AllowUntil(a, clk.Now().Add(-time.Millisecond)); err != nil || g.Allowed(a) {
		t.Errorf("AllowUntil in the past: %v allowed=%v", err, g.Allowed(a))
	}
	calls := g.Calls()
	last := calls[len(calls)-1]
	if len(calls) != 4 || calls[1].Until != until || calls[1].Remaining != 180*time.Millisecond || last.Remaining != 0 {
		t.Errorf("calls %+v", calls)
	}
	for _, c := range calls {
		if c.Remaining > 0 && c.At.Add(c.Remaining).After(c.Until) {
			t.Errorf("call %+v allows beyond its until", c)
		}
	}
}

func TestNextSlack(t *testing.T) {
	// One very late batch raises the slack only to the cap.
	s := nextSlack(batchSlack, 300*time.Millisecond, true)
	if s != maxSlack {
		t.Fatalf("after a 300 ms batch: slack %v, want the cap %v", s, maxSlack)
	}
	// Timely batches bring it back to batchSlack.
	for range 20 {
		s = nextSlack(s, 200*time.Microsecond, false)
	}
	if s > batchSlack+100*time.Microsecond {
		t.Errorf("after 20 timely batches: slack %v", s)
	}
	if s = nextSlack(batchSlack, 3*time.Millisecond, true); s != 3*time.Millisecond {
		t.Errorf("a 3 ms late batch: slack %v", s)
	}
	if s = nextSlack(batchSlack, 0, false); s != batchSlack {
		t.Errorf("slack %v fell under batchSlack", s)
	}
}

func TestMemIsAGuard(t *testing.T) {
	var _ Guard = NewMem(clock.Real{})
}
