package replication

import "sort"

// actLog is the primary's activity log: the extents that may hold writes
// not yet durable on both replicas. It is written (ALBegin) before a
// region's first write, so after a primary crash only its extents need a
// resync. An extent leaves the log only when no write to it is in flight,
// every write to it is durable locally (a local flush issued after the
// write completed has completed) and on the peer (a peer flush sent after
// the write's frame was acknowledged) or recorded in the dirty bitmap.
type actLog struct {
	slots   int
	extents map[int]*alExtent
}

type alExtent struct {
	inflight int
	lastDone uint64 // tick the last write to it completed locally
	lastSent uint64 // tick the last write to it was sent to the peer
	used     uint64 // for least-recently-used eviction
}

func newActLog(slots int) *actLog { return &actLog{slots: slots, extents: map[int]*alExtent{}} }

// acquire makes every extent of exts active and counts a write in flight
// on each. It returns the extents to begin and to end (evicted); ok false
// means no room: nothing changed, and a flush may free some.
func (l *actLog) acquire(exts []int, tick uint64, safe func(*alExtent) bool) (begin, end []int, ok bool) {
	for _, e := range exts {
		if l.extents[e] == nil {
			begin = append(begin, e)
		}
	}
	need := len(l.extents) + len(begin) - l.slots
	if need > 0 {
		var idle []int
		for e, x := range l.extents {
			if x.inflight == 0 && safe(x) && !contains(exts, e) {
				idle = append(idle, e)
			}
		}
		// A write wider than the whole log may overfill it.
		if len(idle) < need && len(begin) <= l.slots {
			return nil, nil, false
		}
		sort.Slice(idle, func(i, j int) bool {
			a, b := l.extents[idle[i]], l.extents[idle[j]]
			return a.used < b.used || a.used == b.used && idle[i] < idle[j]
		})
		end = idle[:min(need, len(idle))]
		for _, e := range end {
			delete(l.extents, e)
		}
	}
	for _, e := range exts {
		x := l.extents[e]
		if x == nil {
			x = &alExtent{}
			l.extents[e] = x
		}
		x.inflight++
		x.used = tick
	}
	return begin, end, true
}

// all lists the active extents in order.
func (l *actLog) all() []int {
	out := make([]int, 0, len(l.extents))
	for e := range l.extents {
		out = append(out, e)
	}
	sort.Ints(out)
	return out
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
