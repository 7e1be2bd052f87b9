package consensus

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// repeatWindow is how long a repeated record is held back: while a failure
// lasts, an operator sees it once a minute with the count.
const repeatWindow = time.Minute

// repeats lets the first record of a kind through and holds back the ones
// like it for a window. Once the window is over, the last one held back is
// logged with how many were (repeated=N): by the next one of the kind, or
// by flush if none comes. The bookkeeping does no I/O; the time comes
// from now.
type repeats struct {
	mu     sync.Mutex
	window time.Duration
	now    func() time.Time
	kinds  map[string]*repeat
}

type repeat struct {
	since time.Time // when the last one let through was
	held  int
	last  heldRecord // the last one held back
}

type heldRecord struct {
	l     *slog.Logger
	level slog.Level
	msg   string
	args  []any
}

// maxKinds bounds the memory of kinds seen: kinds are per message and
// peer, so a cluster has far fewer; past it the memory starts over.
const maxKinds = 4096

func newRepeats(window time.Duration, now func() time.Time) *repeats {
	if now == nil {
		now = time.Now
	}
	return &repeats{window: window, now: now, kinds: map[string]*repeat{}}
}

// log logs a record of kind to l, or holds it back.
func (r *repeats) log(l *slog.Logger, kind string, level slog.Level, msg string, args ...any) {
	rec := heldRecord{l, level, msg, args}
	if ok, held := r.admit(kind, rec); ok {
		rec.emit(held, r.window)
	}
}

// admit reports whether a record of kind is logged now, and how many of
// its kind were held back since the last one that was; rec is kept if it
// is held back.
func (r *repeats) admit(kind string, rec heldRecord) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	k, ok := r.kinds[kind]
	if ok && now.Sub(k.since) < r.window {
		k.held++
		k.last = rec
		return false, 0
	}
	if !ok {
		if len(r.kinds) >= maxKinds {
			clear(r.kinds)
		}
		k = &repeat{}
		r.kinds[kind] = k
	}
	held := k.held
	k.since, k.held, k.last = now, 0, heldRecord{}
	return true, held
}

// flush logs, for every kind whose window is over with records held back,
// the last of them with their count. Called now and then (Consensus does,
// every tenth of the window), so a count is told even when the failure
// stopped.
func (r *repeats) flush() {
	r.mu.Lock()
	now := r.now()
	var due []heldRecord
	var counts []int
	for kind, k := range r.kinds {
		switch {
		case now.Sub(k.since) < r.window:
		case k.held > 0:
			due, counts = append(due, k.last), append(counts, k.held)
			k.since, k.held, k.last = now, 0, heldRecord{}
		default:
			delete(r.kinds, kind) // quiet for a window: the next one is news
		}
	}
	r.mu.Unlock()
	for i, rec := range due {
		rec.emit(counts[i], r.window)
	}
}

func (h heldRecord) emit(held int, window time.Duration) {
	args := h.args
	if held > 0 {
		args = append(args[:len(args):len(args)], "repeated", held, "in", window.String())
	}
	h.l.Log(context.Background(), h.level, h.msg, args...)
}
