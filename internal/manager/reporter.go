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
// newest is kept: an older phase is of no use once a newer one is known.
type reporter struct {
	w    *worker
	wake chan struct{}

	mu    sync.Mutex
	queue []state.Command
}

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
	if c.Op == state.OpPhase {
		kept := r.queue[:0]
		for _, q := range r.queue {
			if q.Op != state.OpPhase {
				kept = append(kept, q)
			}
		}
		r.queue = kept
	}
	r.queue = append(r.queue, c)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// empty: every report was committed (or is stale).
func (r *reporter) empty() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue) == 0
}

func (r *reporter) next() (state.Command, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 {
		return state.Command{}, false
	}
	return r.queue[0], true
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
		c, ok := r.next()
		if !ok || rep == nil {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
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
