package manager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"tandem/internal/state"
)

// reporter proposes a worker's reports to the cluster in order, each until
// it commits or is stale (the epoch moved on). Of phase reports only the
// newest is kept: an older phase is of no use once a newer one is known,
// nor once the group is handed over. A phase waits phaseHold before it is
// proposed, so a step that ends at once does not put a commit of its phase
// in front of its outcome: a handover on stop reported "stopping" and only
// then, one commit later, "handed over", the report the new holder starts
// on.
type reporter struct {
	w    *worker
	wake chan struct{}

	mu    sync.Mutex
	queue []queued
	now   func() time.Time // time.Now; tests set it
}

type queued struct {
	state.Command
	at time.Time // added
}

// phaseHold is how long a phase report waits for a newer report that
// replaces it: shorter than anyone reads a status.
const phaseHold = 25 * time.Millisecond

func (r *reporter) add(c state.Command) {
	// One ID for every try of this report: a try whose answer was lost
	// (its deadline ran out while it committed) is then answered with the
	// first outcome when retried, not applied twice (a failure counted
	// twice towards max_restarts).
	if c.ID == "" {
		var b [8]byte
		rand.Read(b[:])
		c.ID = hex.EncodeToString(b[:])
	}
	r.mu.Lock()
	if c.Op == state.OpPhase || c.Op == state.OpHandedOver {
		kept := r.queue[:0]
		for _, q := range r.queue {
			if q.Op != state.OpPhase {
				kept = append(kept, q)
			}
		}
		r.queue = kept
	}
	r.queue = append(r.queue, queued{Command: c, at: r.clock()})
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *reporter) clock() time.Time {
	if r.now != nil {
		return r.now()
	}
	return time.Now()
}

// empty: every report was committed (or is stale).
func (r *reporter) empty() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue) == 0
}

// next returns the report to propose now, or how long to wait for one (0:
// until woken).
func (r *reporter) next() (state.Command, time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 {
		return state.Command{}, 0, false
	}
	q := r.queue[0]
	if wait := phaseHold - r.clock().Sub(q.at); q.Op == state.OpPhase && len(r.queue) == 1 && wait > 0 {
		return state.Command{}, wait, false
	}
	return q.Command, 0, true
}

// done drops c from the head of the queue unless a newer phase replaced it.
func (r *reporter) done(c state.Command) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) > 0 && r.queue[0].Op == c.Op && r.queue[0].Phase == c.Phase && r.queue[0].Epoch == c.Epoch {
		r.queue = r.queue[1:]
	}
}

func (r *reporter) run(ctx context.Context) {
	rep := r.w.m.cfg.Reporter
	for {
		c, wait, ok := r.next()
		if !ok || rep == nil {
			var held <-chan time.Time
			if wait > 0 && rep != nil {
				held = time.After(wait)
			}
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
			case <-held:
			}
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := rep.Propose(pctx, c)
		cancel()
		if err == nil || state.IsStaleEpoch(err) {
			r.done(c)
			continue
		}
		if ctx.Err() != nil {
			return
		}
		r.w.log.Warn("report not committed yet; retrying", "op", c.Op, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}
