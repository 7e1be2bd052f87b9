package volume

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"tandem/internal/replication"
)

// The Volume is a blockdev.Device while this node is primary: the NBD
// server's requests go through the machine (to the local disk and, as the
// mode says, the peer). On a secondary every request fails with
// replication.ErrNotPrimary. WriteAt returning nil means the write is on
// every replica the mode asks for, and Flush makes every write that
// returned durable on them (so the NBD export may offer multi-conn).

var waiterPool = sync.Pool{New: func() any { return make(chan replication.Complete, 1) }}

// do submits one request and waits for its completion.
func (v *Volume) do(r replication.Request) replication.Complete {
	ch := waiterPool.Get().(chan replication.Complete)
	r.ID = v.nextReq.Add(1)
	start := v.clk.Now()
	if !v.step(mayBlock, func(now time.Time) {
		v.waiters[r.ID] = ch
		v.m.Submit(now, r)
	}) {
		return replication.Complete{ID: r.ID, Err: ErrClosed}
	}
	var c replication.Complete
	select {
	case c = <-ch:
	case <-v.exited:
		// A request posted as Close began may have entered the queue
		// after the loop's last look at it: nothing answers it then.
		select {
		case c = <-ch:
		default:
			return replication.Complete{ID: r.ID, Err: ErrClosed}
		}
	}
	waiterPool.Put(ch)
	if r.Op != replication.OpRead && c.Err == nil {
		d := v.clk.Since(start)
		v.lat.add(r.Op, d)
	}
	return c
}

func (v *Volume) check(p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > v.cfg.Size {
		return fmt.Errorf("volume %s: I/O at %d+%d past the end (%d bytes)", v.name, off, len(p), v.cfg.Size)
	}
	return nil
}

// ReadAt reads from the local replica (or the peer's, when the local disk
// is detached).
func (v *Volume) ReadAt(p []byte, off int64) (int, error) {
	if err := v.check(p, off); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	c := v.do(replication.Request{Op: replication.OpRead, Off: off, Len: int64(len(p))})
	if c.Err != nil {
		return 0, c.Err
	}
	if n := copy(p, c.Data); n < len(p) {
		return n, fmt.Errorf("volume %s: read at %d answered with %d of %d bytes", v.name, off, n, len(p))
	}
	return len(p), nil
}

// WriteAt writes p at off on the replicas the mode asks for.
func (v *Volume) WriteAt(p []byte, off int64) (int, error) {
	if err := v.check(p, off); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if c := v.do(replication.Request{Op: replication.OpWrite, Off: off, Data: p}); c.Err != nil {
		return 0, c.Err
	}
	return len(p), nil
}

// Flush makes every write that returned durable on the replicas.
func (v *Volume) Flush() error {
	return v.do(replication.Request{Op: replication.OpFlush}).Err
}

// Size is the volume's size in bytes.
func (v *Volume) Size() int64 { return v.cfg.Size }

// latency keeps the durations of recent writes and flushes.
type latency struct {
	mu              sync.Mutex
	writes, flushes ring
	// The quantiles as last computed, at most every latencyEvery: the
	// loop publishes its status after every step, and sorting the rings
	// each time took a third of the primary's CPU under load.
	at            time.Time
	w50, w99, f50 int64
}

const latencyEvery = 200 * time.Millisecond

// quantiles returns the write p50 and p99 and the flush p50 in µs.
func (l *latency) quantiles(now time.Time) (w50, w99, f50 int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.at) >= latencyEvery || now.Before(l.at) {
		l.at = now
		l.w50, l.w99 = l.writes.quantile(0.5).Microseconds(), l.writes.quantile(0.99).Microseconds()
		l.f50 = l.flushes.quantile(0.5).Microseconds()
	}
	return l.w50, l.w99, l.f50
}

type ring struct {
	d    [1024]time.Duration
	n, i int
}

func (r *ring) add(d time.Duration) {
	r.d[r.i] = d
	r.i = (r.i + 1) % len(r.d)
	r.n = min(r.n+1, len(r.d))
}

// quantile of the kept durations (0 when none).
func (r *ring) quantile(q float64) time.Duration {
	if r.n == 0 {
		return 0
	}
	s := append([]time.Duration(nil), r.d[:r.n]...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(int(q*float64(r.n)), r.n-1)]
}

func (l *latency) add(op replication.Op, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if op == replication.OpFlush {
		l.flushes.add(d)
	} else {
		l.writes.add(d)
	}
}
