package nbd

import (
	"context"
	"sync"
)

// memory is one server's budget for payload buffers in flight (requests
// read and not yet answered), shared by all its connections. Each
// connection has a reserve of its own, which no other connection can take,
// and may borrow beyond it from a shared pool up to its own limit:
//
//	limit = maxConns × reserve + shared
//
// so the total never exceeds limit, clients that pin memory (they send
// reads and never read the replies) can take at most the shared pool and
// their own reserves, and every other connection still has its reserve to
// make progress with. Borrowers wait in arrival order, so a large request
// is not starved by a stream of small ones. Memory pinned by a client that
// stopped reading comes back when its stalled reply times out
// (Limits.StallTimeout) or it disconnects.
type memory struct {
	mu       sync.Mutex
	cond     sync.Cond // borrowers waiting for the shared pool
	reserve  int64
	shared   int64
	borrowed int64         // of shared, in use
	inFlight int64         // total bytes held by connections
	queue    []*connMemory // borrowers waiting, in arrival order
	waits    int64         // acquires that had to wait for the shared pool
}

func newMemory(l Limits) *memory {
	m := &memory{reserve: l.reserve(), shared: l.MaxMemory - int64(l.MaxConns)*l.reserve()}
	m.cond.L = &m.mu
	return m
}

// connMemory is one connection's account. Only the connection's reader
// acquires (one request at a time); workers release.
type connMemory struct {
	m        *memory
	cond     sync.Cond // the reader waiting for this connection's own releases
	limit    int64
	used     int64
	borrowed int64 // part of used taken from the shared pool
	queued   bool  // the reader is in m.queue
	dead     bool
}

func (m *memory) newConn(limit int64) *connMemory {
	c := &connMemory{m: m, limit: limit}
	c.cond.L = &m.mu
	return c
}

// acquire waits until n more bytes fit; it fails once the account is
// killed (the connection is ending). A request larger than the
// connection's limit is let through when the connection holds nothing, so
// every valid request can run.
func (c *connMemory) acquire(n int64) bool {
	m := c.m
	m.mu.Lock()
	defer m.mu.Unlock()
	for !c.dead && c.used > 0 && c.used+n > c.limit {
		c.cond.Wait()
	}
	// Only this reader adds to c.used, so what it must borrow can only
	// shrink while it waits (its own workers release): it goes ahead as
	// soon as it needs nothing from the shared pool, or is first in line
	// and what it needs is free.
	if c.need(n) > 0 {
		c.queued = true
		m.queue = append(m.queue, c)
		waited := false
		for !c.dead {
			need := c.need(n)
			if need <= 0 || (m.queue[0] == c && m.borrowed+need <= m.shared) {
				break
			}
			waited = true
			m.cond.Wait()
		}
		if waited {
			m.waits++
		}
		c.queued = false
		m.dequeue(c)
	}
	if c.dead {
		return false
	}
	need := max(0, c.need(n))
	c.used += n
	c.borrowed += need
	m.borrowed += need
	m.inFlight += n
	return true
}

// need is how much of n the connection must borrow from the shared pool.
func (c *connMemory) need(n int64) int64 {
	return max(0, c.used+n-c.m.reserve) - c.borrowed
}

func (m *memory) dequeue(c *connMemory) {
	for i, q := range m.queue {
		if q == c {
			m.queue = append(m.queue[:i], m.queue[i+1:]...)
			break
		}
	}
	if len(m.queue) > 0 {
		m.cond.Broadcast() // a new head
	}
}

func (c *connMemory) release(n int64) {
	m := c.m
	m.mu.Lock()
	c.used -= n
	m.inFlight -= n
	wake := c.queued // its own reader may need less now
	if b := max(0, c.used-m.reserve); b < c.borrowed {
		m.borrowed -= c.borrowed - b
		c.borrowed = b
		wake = wake || len(m.queue) > 0
	}
	if wake {
		m.cond.Broadcast()
	}
	m.mu.Unlock()
	c.cond.Signal()
}

// kill wakes a waiting acquire for good (connection shutting down).
func (c *connMemory) kill() {
	m := c.m
	m.mu.Lock()
	c.dead = true
	m.mu.Unlock()
	c.cond.Broadcast()
	m.cond.Broadcast()
}

// killOnDone kills c when ctx ends; the returned func stops watching.
func (c *connMemory) killOnDone(ctx context.Context) func() bool {
	return context.AfterFunc(ctx, c.kill)
}

// stats returns the bytes in flight and how many acquires waited.
func (m *memory) stats() (inFlight, waits int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.inFlight, m.waits
}
