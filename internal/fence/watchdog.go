package fence

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"tandem/internal/clock"
)

// Watchdog is the fence device of kind watchdog (docs/fencing.md,
// "Watchdog"): it runs nothing and calls nothing. The node it fences feeds
// its own watchdog only while it is live and its leases are renewed, so
// once Wait (config's WatchdogFenceWait: a lease + 2 × the watchdog's
// timeout + 1 s) has passed since the off began, that node has been reset
// by its watchdog or nothing of it holds a lease. Off (and reboot) returns
// then; status says off for a plug (the node) whose off completed, until
// an on.
type Watchdog struct {
	Wait  time.Duration
	Clock clock.Clock

	mu  sync.Mutex
	off map[string]bool // by plug
}

// Run implements Device.
func (w *Watchdog) Run(ctx context.Context, a Action, plug string) (Reply, error) {
	rep := Reply{Action: a}
	switch a {
	case Off, Reboot:
		t := w.Clock.NewTimer(w.Wait)
		defer t.Stop()
		select {
		case <-t.C():
		case <-ctx.Done():
			return rep, errors.Join(fmt.Errorf("fence: watchdog: %s not yet counted reset (it takes %v)", plug, w.Wait), ctx.Err())
		}
		w.set(plug, true)
	case On:
		w.set(plug, false) // the node comes back by itself, after its reset
	case Status:
		rep.Power = PowerUnknown
		w.mu.Lock()
		if w.off[plug] {
			rep.Power = PowerOff
		}
		w.mu.Unlock()
	case Monitor:
		// Nothing to reach: each node checks its own device when its
		// agent starts (it refuses to start without it).
	default:
		return rep, fmt.Errorf("fence: watchdog: %s is not supported", a)
	}
	return rep, nil
}

func (w *Watchdog) set(plug string, off bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.off == nil {
		w.off = map[string]bool{}
	}
	w.off[plug] = off
}

var _ Device = (*Watchdog)(nil)
