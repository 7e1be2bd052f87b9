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

// flush waits for a device flush that begins after the call. With none
// running, the caller runs it on its own goroutine (the common case, one
// flush at a time: no hand-off to another goroutine and back, which cost
// tens of microseconds per flush on a busy host); callers that arrive
// meanwhile are flushed together by a goroutine started when it is done.
func (g *groupFlush) flush() error {
	g.mu.Lock()
	if g.next == nil {
		g.next = &flushBatch{done: make(chan struct{})}
	}
	b := g.next
	if g.running {
		g.mu.Unlock()
		<-b.done
		return b.err
	}
	g.running, g.next = true, nil
	g.mu.Unlock()
	b.err = g.dev.Flush()
	close(b.done)
	g.handOn()
	return b.err
}

// handOn starts a goroutine for the callers that arrived during a flush,
// or marks the flusher idle.
func (g *groupFlush) handOn() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.next == nil {
		g.running = false
		return
	}
	go g.run()
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
