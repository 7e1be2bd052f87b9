package raid

import "sync"

// writeBehind is the array's write cache, the userspace counterpart of the
// page cache above md: WriteAt queues a copy of the data and returns, and a
// few flushers write the queue, merging writes that continue each other
// into larger member I/O. An entry is written only when no earlier entry
// overlaps it, so overlapping writes land in the order they were made while
// independent ones (several NBD connections) go out in parallel. Reads that overlap queued data wait for it,
// Flush drains the queue, and the Device contract holds: a write that
// returned is visible to reads, and durable once Flush returns. An error of
// a queued write is returned by the next WriteAt or Flush.
type writeBehind struct {
	a        *Array
	mu       sync.Mutex
	cond     *sync.Cond
	queue    []*wbEntry // in arrival order
	bytes    int64
	limit    int64
	maxMerge int
	err      error
	stopped  bool
	running  int
	done     chan struct{}
}

type wbEntry struct {
	off   int64
	data  []byte // aligned; grows in place while merging
	taken bool   // a flusher is writing it
}

// flushers is how many queued writes go out at once.
const flushers = 4

func newWriteBehind(a *Array, limit int64) *writeBehind {
	w := &writeBehind{a: a, limit: limit, maxMerge: int(min(limit/2, 8<<20)), done: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	w.running = flushers
	for i := 0; i < flushers; i++ {
		go w.flusher()
	}
	return w
}

// write queues p at off. It returns false when p is too large to queue
// (the caller then drains and writes it synchronously).
func (w *writeBehind) write(p []byte, off int64) (bool, error) {
	if int64(len(p)) > w.limit/2 {
		return false, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.bytes+int64(len(p)) > w.limit && w.err == nil && !w.stopped {
		w.cond.Wait()
	}
	if err := w.err; err != nil {
		w.err = nil
		return true, err
	}
	if w.stopped {
		return true, ErrClosed
	}
	w.bytes += int64(len(p))
	if n := len(w.queue); n > 0 {
		if t := w.queue[n-1]; !t.taken && t.off+int64(len(t.data)) == off && len(t.data)+len(p) <= cap(t.data) {
			t.data = append(t.data, p...)
			return true, nil
		}
	}
	buf := alignedBuf(max(len(p), w.maxMerge))[:0]
	w.queue = append(w.queue, &wbEntry{off: off, data: append(buf, p...)})
	w.cond.Broadcast()
	return true, nil
}

func (w *writeBehind) flusher() {
	w.mu.Lock()
	defer func() {
		w.running--
		if w.running == 0 {
			close(w.done)
		}
		w.mu.Unlock()
	}()
	for {
		e := w.nextLocked()
		for e == nil {
			if w.stopped && len(w.queue) == 0 {
				return
			}
			w.cond.Wait()
			e = w.nextLocked()
		}
		e.taken = true
		w.mu.Unlock()
		_, err := w.a.writeSync(e.data, e.off)
		w.mu.Lock()
		for i, x := range w.queue {
			if x == e {
				w.queue = append(w.queue[:i], w.queue[i+1:]...)
				break
			}
		}
		w.bytes -= int64(len(e.data))
		if err != nil && w.err == nil {
			w.err = err
		}
		w.cond.Broadcast()
		freeBuf(e.data[:cap(e.data)])
	}
}

// nextLocked returns the first entry not being written that no earlier
// entry overlaps.
func (w *writeBehind) nextLocked() *wbEntry {
	for i, e := range w.queue {
		if e.taken {
			continue
		}
		free := true
		for _, x := range w.queue[:i] {
			free = free && !(x.off < e.off+int64(len(e.data)) && e.off < x.off+int64(len(x.data)))
		}
		if free {
			return e
		}
	}
	return nil
}

// waitFor blocks until no queued write overlaps [off, off+n).
func (w *writeBehind) waitFor(off, n int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		overlap := false
		for _, e := range w.queue {
			overlap = overlap || e.off < off+n && off < e.off+int64(len(e.data))
		}
		if !overlap {
			return
		}
		w.cond.Wait()
	}
}

// drain waits until the queue is empty and returns a pending error.
func (w *writeBehind) drain() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.queue) > 0 {
		w.cond.Wait()
	}
	err := w.err
	w.err = nil
	return err
}

func (w *writeBehind) stop() {
	w.mu.Lock()
	w.stopped = true
	w.cond.Broadcast()
	w.mu.Unlock()
	<-w.done
}
