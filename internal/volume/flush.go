package volume

import (
	"sync"

	"tandem/internal/blockdev"
)

// groupFlush shares device flushes between the operations that want one
// at the same time (group commit): a caller is answered by the first
// flush that begins after it asked, so every write that completed before
// it asked is durable when it returns, as with a flush of its own. A
// resync target writes each region with FUA, eight or more at once: one
// fdatasync each cost a resync most of its rate.
type groupFlush struct {
	dev     blockdev.Device
	mu      sync.Mutex
	running bool
	next    *flushBatch // callers waiting for a flush that has not begun
}

type flushBatch struct {
	done chan struct{}
	err  error
}

// flush waits for a device flush that begins after the call.
func (g *groupFlush) flush() error {
	g.mu.Lock()
	if g.next == nil {
		g.next = &flushBatch{done: make(chan struct{})}
	}
	b := g.next
	if !g.running {
		g.running = true
		go g.run()
	}
	g.mu.Unlock()
	<-b.done
	return b.err
}

// run flushes for each batch in turn until none waits.
func (g *groupFlush) run() {
	for {
		g.mu.Lock()
		b := g.next
		g.next = nil
		if b == nil {
			g.running = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		b.err = g.dev.Flush()
		close(b.done)
	}
}
