package watchdog

import (
	"sync"
	"time"

	"tandem/internal/clock"
)

// Memory is the in-memory twin of a watchdog on a clock: it records feeds
// and says whether, and when, the machine would have been reset.
type Memory struct {
	Clock clock.Clock

	mu       sync.Mutex
	open     bool
	timeout  time.Duration
	lastFeed time.Time
	resetAt  time.Time // zero until the countdown ran out while armed
	feeds    int
}

// Open arms the twin with timeout exactly (no rounding).
func (m *Memory) Open(timeout time.Duration) (time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.checkLocked()
	if timeout <= 0 {
		return 0, errTimeout(timeout)
	}
	m.open, m.timeout, m.lastFeed = true, timeout, m.Clock.Now()
	return timeout, nil
}

// Feed restarts the countdown, unless it already ran out: a reset machine
// runs nothing that could feed it.
func (m *Memory) Feed() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.checkLocked()
	if !m.open {
		return ErrNotOpen
	}
	if m.resetAt.IsZero() {
		m.lastFeed = m.Clock.Now()
		m.feeds++
	}
	return nil
}

// Close disarms the twin (the magic close).
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.checkLocked()
	if !m.open {
		return ErrNotOpen
	}
	m.open = false
	return nil
}

// Reset says when the machine was reset, if it was by now.
func (m *Memory) Reset() (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.checkLocked()
	return m.resetAt, !m.resetAt.IsZero()
}

// Armed says whether the twin is open (armed) and not disarmed by Close.
func (m *Memory) Armed() bool { m.mu.Lock(); defer m.mu.Unlock(); return m.open }

// Feeds counts the feeds that restarted the countdown.
func (m *Memory) Feeds() int { m.mu.Lock(); defer m.mu.Unlock(); return m.feeds }

func (m *Memory) checkLocked() {
	if m.open && m.resetAt.IsZero() && m.Clock.Now().Sub(m.lastFeed) >= m.timeout {
		m.resetAt = m.lastFeed.Add(m.timeout)
	}
}
