package raid

import "sync"

// readAhead serves sequential readers from windows read in advance, the way
// the kernel's readahead does above md: after two reads that follow each
// other, the next raDepth windows are read in the background while the
// caller consumes the current one, so the members always have reads queued
// (one window at a time left them idle while the reader checked and copied
// it: 0.6–0.8 of raw against 0.8–0.95 with four). Any write that overlaps a
// window drops it (a generation counter also discards windows still being
// read), so a read never returns data older than a write that returned.
type readAhead struct {
	a      *Array
	size   int64
	mu     sync.Mutex
	gen    uint64
	next   int64 // offset the next sequential read would start at
	wins   []*raWindow
	closed bool
	active int // ReadAt calls in progress: readahead only serves a lone reader
}

type raWindow struct {
	off  int64
	data []byte
	gen  uint64
	done chan struct{}
	err  error
}

// raDepth is how many windows are read ahead of the one being consumed;
// Options.ReadAhead is split among them.
const raDepth = 4

func newReadAhead(a *Array, size int64) *readAhead {
	return &readAhead{a: a, size: max(size/raDepth, BlockSize), next: -1}
}

// read serves p from a window if it can; ok is false when the caller must
// read itself.
func (r *readAhead) read(p []byte, off int64) (ok bool, err error) {
	n := int64(len(p))
	r.mu.Lock()
	r.active++
	defer func() {
		r.mu.Lock()
		r.active--
		r.mu.Unlock()
	}()
	// Many readers at once (NBD clients keep many requests in flight) read
	// ahead by themselves; windows would only double the reads.
	seq := off == r.next && r.active == 1
	r.next = off + n
	var hit *raWindow
	for _, w := range r.wins {
		if off >= w.off && off+n <= w.off+int64(len(w.data)) {
			hit = w
		}
	}
	if hit == nil && seq {
		r.startLocked(off + n)
	}
	r.mu.Unlock()
	if hit == nil {
		return false, nil
	}
	<-hit.done
	r.mu.Lock()
	defer r.mu.Unlock()
	held := false
	for _, w := range r.wins {
		held = held || w == hit
	}
	if !held || hit.err != nil || hit.gen != r.gen {
		// Dropped meanwhile (its buffer may already be reused), failed,
		// or overtaken by a write.
		if held {
			r.dropLocked(hit)
		}
		return false, nil
	}
	copy(p, hit.data[off-hit.off:])
	// Forget windows behind the reader, and keep raDepth windows coming
	// after this one.
	for _, w := range append([]*raWindow(nil), r.wins...) {
		if w.off+int64(len(w.data)) <= off {
			r.dropLocked(w)
		}
	}
	for k := int64(1); k <= raDepth; k++ {
		r.startLocked(hit.off + k*r.size)
	}
	return true, nil
}

// startLocked begins reading the window at off unless it is known.
func (r *readAhead) startLocked(off int64) {
	if r.closed || off >= r.a.Size() {
		return
	}
	for _, w := range r.wins {
		if w.off == off {
			return
		}
	}
	if len(r.wins) >= raDepth+1 {
		r.dropLocked(r.wins[0])
	}
	w := &raWindow{off: off, data: alignedBuf(int(min(r.size, r.a.Size()-off))), gen: r.gen, done: make(chan struct{})}
	r.wins = append(r.wins, w)
	go func() {
		w.err = r.a.readAt(w.data, w.off)
		close(w.done)
	}()
}

func (r *readAhead) dropLocked(w *raWindow) {
	for i, x := range r.wins {
		if x == w {
			r.wins = append(r.wins[:i], r.wins[i+1:]...)
			go func() { <-w.done; freeBuf(w.data) }()
			return
		}
	}
}

// invalidate drops every window that overlaps [off, off+n).
func (r *readAhead) invalidate(off, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range append([]*raWindow(nil), r.wins...) {
		if w.off < off+n && off < w.off+int64(len(w.data)) {
			r.dropLocked(w)
			r.gen++
		}
	}
}

func (r *readAhead) stop() {
	r.mu.Lock()
	r.closed = true
	wins := r.wins
	r.wins = nil
	r.mu.Unlock()
	for _, w := range wins {
		<-w.done
		freeBuf(w.data)
	}
}
