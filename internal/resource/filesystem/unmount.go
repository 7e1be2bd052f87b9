package filesystem

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// unmount unmounts m, never lazily. A busy mount is retried every
// unmountRetry; after ForceUnmount (forcePlan) its holders get SIGTERM,
// then SIGKILL, until it unmounts or ctx ends. The agent's own process
// and init are never signalled: they are named in the error instead.
func (a *Agent) unmount(ctx context.Context, m mount) error {
	var (
		plan  forcePlan
		since time.Time
		seen  []holder
	)
	termed := map[int]bool{}
	self := os.Getpid()
	for {
		err := bounded(ctx, func() error { return unmountPath(m.point) })
		switch {
		case err == nil:
			a.log.Info("filesystem unmounted", "at", m.point, "device", m.source)
			return nil
		case isNotMounted(err):
			return nil // gone meanwhile
		case ctx.Err() != nil:
			return a.busyError(m, since, seen, err)
		case !isBusy(err):
			return fmt.Errorf("unmount %s: %w", m.point, err)
		}
		now := a.clock.Now()
		if since.IsZero() {
			since = now
			dl, _ := ctx.Deadline()
			plan = planForce(now, a.cfg.ForceUnmount, dl)
			seen = a.holders(ctx, m)
			a.log.Info("filesystem: the mount is busy; waiting for it", "at", m.point,
				"holders", holderList(seen), "force_unmount", a.cfg.ForceUnmount)
		}
		if step := plan.step(now); step != forceWait {
			seen = a.holders(ctx, m)
			var hit []holder
			for _, h := range seen {
				if h.pid == self || h.pid == 1 || (step == forceTerm && termed[h.pid]) {
					continue
				}
				if err := signalProcess(h.pid, step == forceKill); err != nil {
					a.log.Warn("filesystem: cannot signal a holder", "pid", h.pid, "err", err)
				}
				termed[h.pid] = true
				hit = append(hit, h)
			}
			if len(hit) > 0 {
				a.log.Warn("filesystem: killing the processes that hold the mount", "at", m.point,
					"signal", step.String(), "holders", holderList(hit), "busy_for", now.Sub(since).Round(time.Millisecond))
			}
		}
		t := a.clock.NewTimer(unmountRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return a.busyError(m, since, seen, ctx.Err())
		case <-t.C():
		}
	}
}

// holders finds what holds m within ctx (nil when it cannot in time).
func (a *Agent) holders(ctx context.Context, m mount) []holder {
	hs, _ := boundedValue(ctx, func() ([]holder, error) { return findHolders(a.procs, m), nil })
	return hs
}

// busyError says that m could not be unmounted, since when it was busy
// and who holds it.
func (a *Agent) busyError(m mount, since time.Time, hs []holder, err error) error {
	why := "busy"
	if !since.IsZero() {
		why = fmt.Sprintf("busy for %v", a.clock.Since(since).Round(time.Millisecond))
	}
	held := ""
	if len(hs) > 0 {
		held = ", held by " + holderList(hs)
	}
	never := ""
	if a.cfg.ForceUnmount <= 0 {
		never = " (force_unmount is 0: holders are not killed)"
	}
	return fmt.Errorf("cannot unmount %s: %s%s%s: %w", m.point, why, held, never, err)
}

func holderList(hs []holder) string {
	s := make([]string, len(hs))
	for i, h := range hs {
		s[i] = h.String()
	}
	return strings.Join(s, ", ")
}
