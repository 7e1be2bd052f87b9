package fence

import (
	"context"
	"testing"
	"time"

	"tandem/internal/clock"
	"tandem/internal/events"
)

// TestWatchdogFenceConfirmsAfterTheWait: a fence over a watchdog device is
// confirmed off exactly when the wait has passed since it began, not before.
func TestWatchdogFenceConfirmsAfterTheWait(t *testing.T) {
	clk := clock.NewFake(t0)
	const wait = 11 * time.Second
	wd := &Watchdog{Wait: wait, Clock: clk}
	rec := &events.Recorder{}
	f := &Fencer{
		Devices: map[string]Device{"self-reset": wd},
		Topologies: map[string]Topology{"node2": {Node: "node2", Levels: [][]Step{
			{{Device: "self-reset", Plug: "node2", Timeout: wait + 2*time.Second}},
		}}},
		Clock: clk, Events: rec, Self: "node1",
	}
	type out struct {
		r   FenceResult
		err error
	}
	done := make(chan out, 1)
	go func() {
		r, err := f.Fence(context.Background(), "node2", "node2 unreachable")
		done <- out{r, err}
	}()
	// The Fencer's deadline and the device's wait.
	for deadline := time.Now().Add(30 * time.Second); clk.Pending() < 2; {
		if time.Now().After(deadline) {
			t.Fatal("the watchdog device never waited")
		}
		time.Sleep(time.Millisecond)
	}
	clk.Advance(wait - time.Millisecond)
	select {
	case o := <-done:
		t.Fatalf("confirmed before the wait: %+v %v", o.r, o.err)
	default:
	}
	clk.Advance(time.Millisecond)
	o := <-done
	if o.err != nil || !o.r.Confirmed || o.r.Duration != wait {
		t.Fatalf("result %+v, %v; want confirmed after %v", o.r, o.err, wait)
	}
	if rep, _ := wd.Run(context.Background(), Status, "node1"); rep.Power != PowerUnknown {
		t.Fatalf("status of a node never fenced: %v", rep.Power)
	}
	if _, err := wd.Run(context.Background(), On, "node2"); err != nil {
		t.Fatal(err)
	}
	if rep, _ := wd.Run(context.Background(), Status, "node2"); rep.Power != PowerUnknown {
		t.Fatalf("status after on: %v", rep.Power)
	}
}

func TestWatchdogFenceAbandoned(t *testing.T) {
	wd := &Watchdog{Wait: time.Hour, Clock: clock.Real{}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := wd.Run(ctx, Off, "node2"); err == nil {
		t.Fatal("an abandoned off confirmed")
	}
	if rep, _ := wd.Run(context.Background(), Status, "node2"); rep.Power == PowerOff {
		t.Fatal("an abandoned off counted the node off")
	}
	if _, err := wd.Run(context.Background(), Monitor, ""); err != nil {
		t.Fatalf("monitor: %v", err)
	}
}
