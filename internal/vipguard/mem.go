package vipguard

import (
	"net/netip"
	"sync"
	"time"

	"tandem/internal/clock"
)

// Mem is an in-memory Guard for tests of other packages: allowances expire
// on the injected clock, and every Allow and Revoke is recorded.
type Mem struct {
	clock clock.Clock

	mu      sync.Mutex
	guarded map[netip.Addr]bool
	until   map[netip.Addr]time.Time
	calls   []Call
	err     error
	dropped map[netip.Addr]uint64
}

// Call is one recorded Allow or AllowUntil (Remaining > 0) or Revoke
// (Remaining == 0).
type Call struct {
	At        time.Time
	VIP       netip.Addr
	Remaining time.Duration
	// Until is the end the caller asked for (zero for a Revoke); the
	// allowance, At+Remaining, never ends after it.
	Until time.Time
}

// NewMem returns an empty guard whose allowances run on c.
func NewMem(c clock.Clock) *Mem {
	return &Mem{clock: c, guarded: map[netip.Addr]bool{}, until: map[netip.Addr]time.Time{}}
}

// Fail makes every later call return err (nil heals).
func (m *Mem) Fail(err error) {
	m.mu.Lock()
	m.err = err
	m.mu.Unlock()
}

func (m *Mem) Install(vips []netip.Prefix) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	m.guarded = addrs(vips)
	return nil
}

// Allow is AllowUntil(vip, now+remaining) on the injected clock.
func (m *Mem) Allow(vip netip.Addr, remaining time.Duration) error {
	return m.AllowUntil(vip, m.clock.Now().Add(remaining))
}

// AllowUntil allows vip until until, in whole milliseconds counted from
// now, like the kernel: the allowance never ends after until. The fake has
// no netlink round trip, so it never needs NFT's second try.
func (m *Mem) AllowUntil(vip netip.Addr, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	vip = vip.Unmap()
	now := m.clock.Now()
	d := elementTimeout(until.Sub(now))
	if d <= 0 {
		return m.revokeLocked(vip)
	}
	if !m.guarded[vip] {
		return notGuarded(vip)
	}
	m.until[vip] = now.Add(d)
	m.calls = append(m.calls, Call{At: now, VIP: vip, Remaining: d, Until: until})
	return nil
}

func (m *Mem) Revoke(vip netip.Addr) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	return m.revokeLocked(vip.Unmap())
}

func (m *Mem) revokeLocked(vip netip.Addr) error {
	delete(m.until, vip)
	m.calls = append(m.calls, Call{At: m.clock.Now(), VIP: vip})
	return nil
}

func (m *Mem) Remaining(vip netip.Addr) (time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return 0, m.err
	}
	vip = vip.Unmap()
	if !m.guarded[vip] {
		return 0, notGuarded(vip)
	}
	return m.remainingLocked(vip), nil
}

func (m *Mem) remainingLocked(vip netip.Addr) time.Duration {
	left := m.until[vip].Sub(m.clock.Now())
	if left <= 0 {
		return 0
	}
	return left
}

// Allowed reports whether the kernel would let vip speak now.
func (m *Mem) Allowed(vip netip.Addr) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.guarded[vip.Unmap()] && m.remainingLocked(vip.Unmap()) > 0
}

// Calls returns the recorded Allow and Revoke calls in order.
func (m *Mem) Calls() []Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Call(nil), m.calls...)
}

// Dropped implements Guard: what Drop recorded.
func (m *Mem) Dropped(vip netip.Addr) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	vip = vip.Unmap()
	if !m.guarded[vip] {
		return 0, notGuarded(vip)
	}
	return m.dropped[vip], nil
}

// Drop records n packets to vip dropped by the guard (tests), unless vip
// is allowed.
func (m *Mem) Drop(vip netip.Addr, n uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	vip = vip.Unmap()
	if m.remainingLocked(vip) > 0 {
		return
	}
	if m.dropped == nil {
		m.dropped = map[netip.Addr]uint64{}
	}
	m.dropped[vip] += n
}

func (m *Mem) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.guarded = map[netip.Addr]bool{}
	m.until = map[netip.Addr]time.Time{}
	return nil
}
