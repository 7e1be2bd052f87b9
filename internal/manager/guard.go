package manager

import (
	"context"
	"fmt"
	"time"

	"tandem/internal/events"
)

// guardPoll is how often the kernel guard's drop counters are read: a
// netlink dump per VIP, cheap next to the heartbeats.
const guardPoll = time.Second

// guardEventEvery is the least time between two guard_drops events of one
// group: a burst of drops is one event that says how many.
const guardEventEvery = 10 * time.Second

// watchGuard reads the kernel guard's drop counters. Every drop counts in
// the group's status (and metrics); drops while the group's guard was open
// at both ends of the interval, so this node held the lease all along,
// were clients turned away from a healthy active node: logged and
// published as guard_drops.
func (m *Manager) watchGuard(ctx context.Context) {
	t := m.cfg.Clock.NewTicker(guardPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		for _, w := range m.workers {
			w.pollGuard()
		}
	}
}

func (w *worker) pollGuard() {
	var total uint64
	vips := 0
	for _, r := range w.g.Resources {
		if !r.VIP.IsValid() {
			continue
		}
		vips++
		n, err := w.m.cfg.Guard.Dropped(r.VIP)
		if err != nil {
			return // the tables are being reinstalled; next time
		}
		total += n
	}
	if vips == 0 {
		return
	}
	now := w.m.cfg.Clock.Now()
	w.mu.Lock()
	open := w.snapshot.GuardOpen
	delta := uint64(0)
	if w.guardSeen && total >= w.guardCount {
		delta = total - w.guardCount
	}
	held := w.guardSeen && open && w.guardWasOpen
	w.guardSeen, w.guardCount, w.guardWasOpen = true, total, open
	w.guardDropped += delta
	if held && delta > 0 {
		w.guardPending += delta
	}
	var pending uint64
	if w.guardPending > 0 && now.Sub(w.guardEvent) >= guardEventEvery {
		pending, w.guardPending, w.guardEvent = w.guardPending, 0, now
	}
	epoch := w.snapshot.Epoch
	w.mu.Unlock()
	if pending > 0 {
		msg := fmt.Sprintf("the kernel guard dropped %d packets to this group's VIP while this node held its lease", pending)
		w.log.Warn(msg)
		w.publish(events.Event{Kind: events.GuardDrops, Subject: w.g.Name, Epoch: epoch, Message: msg,
			Attrs: map[string]any{"packets": pending}})
	}
}
