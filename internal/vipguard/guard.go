// Package vipguard owns the kernel-enforced VIP lease (DESIGN "The kernel
// enforces the lease for the VIP"): nftables rules that silence every guarded
// VIP — no ARP, no neighbour advertisements, no inbound or outbound traffic —
// unless the VIP is in a set whose element times out when this node's lease
// ends. The holder refreshes the element on every renewal; if the agent
// freezes or dies, the kernel silences the VIP at lease end with no process
// alive.
//
// # The bound
//
// When AllowUntil(vip, until) returns nil, the kernel lets vip speak at no
// instant after until, whatever happens to the process afterwards. The
// argument: an element's timeout d is fixed when the batch is built, and the
// kernel starts counting it (the jiffy counter when it processes the
// message, plus d rounded down to whole jiffies) somewhere between the send
// and the acknowledgement, so the element is gone by ack+d. The guard reads
// the clock after the acknowledgement and, if ack+d > until (the batch, or
// our reading of its ack, was late: a loaded machine), sends the element
// again, shorter, from the new reading — a replacement that lands before
// until, so the longer element never outlives it — and after a few late
// tries revokes and returns an IsLate error. Any other error leaves the
// earlier allowance as it was (batches are atomic), ending by its own until.
// An allowance computed from "now + remaining" before the batch, as Allow
// once did, ended tens of milliseconds after the lease when the agent was
// descheduled in between. What stays outside the bound: the kernel checks
// expiry against the jiffy counter, which trails the clock by the latency
// of a tick, and keeps an element shorter than one jiffy for one jiffy; and
// a process stopped for good inside AllowUntil, between a late batch and
// its correction, leaves the late element, which may end after until by
// that batch's delay (the kernel applies a batch inside the sending
// syscall, so the delay is the sender's preemption between reading the
// clock and the end of that syscall). A caller's margin covers these.
// Measured (HZ=250): a 300 ms allowance went silent 292–297 ms after it was
// asked for — the rounding down to jiffies, never late.
//
// Guard is the seam; NFT (Linux) is the real implementation, Mem an in-memory
// twin with a fake clock for tests of other packages. Imported by the manager,
// resource/vip and cmd; it imports only internal/clock.
package vipguard

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Guard installs and drives the kernel-side lease for a node's VIPs.
//
// Install must come first; it is idempotent and keeps the allowances already
// in force, so an agent that restarts does not silence a VIP it still holds.
// The interface is not part of the rules: silencing a VIP on every interface
// is never wrong, and the rules then survive an interface being renamed or
// re-created.
type Guard interface {
	// Install guards exactly vips (the address part is what counts).
	Install(vips []netip.Prefix) error
	// AllowUntil lets vip speak until until at the latest, replacing any
	// earlier allowance (also a longer one): the kernel silences it at
	// until even if this process never runs again (see "The bound"). Less
	// than a millisecond left (on Linux: less than the netlink round trip
	// allowed for, at most maxSlack) revokes. vip must be guarded. If the kernel
	// state is gone (a firewall reload flushed the ruleset), AllowUntil
	// installs it again first. When the kernel could not be made to end the
	// allowance by until, vip is revoked and the error says so (IsLate).
	AllowUntil(vip netip.Addr, until time.Time) error
	// Allow is AllowUntil(vip, now+remaining).
	Allow(vip netip.Addr, remaining time.Duration) error
	// Revoke silences vip now. Revoking a silent VIP succeeds.
	Revoke(vip netip.Addr) error
	// Remaining reports how long vip may still speak (0 when silenced).
	Remaining(vip netip.Addr) (time.Duration, error)
	// Dropped counts the packets to vip the guard has dropped on the way
	// in since Install (it was silenced): on the node that holds the VIP's
	// lease, every one is a client the guard turned away by mistake.
	Dropped(vip netip.Addr) (uint64, error)
	// Close removes everything Install created: the VIPs are unguarded.
	Close() error
}

// ErrNotGuarded is returned for a VIP that Install was not given.
var ErrNotGuarded = errors.New("vipguard: address is not guarded")

// IsNotGuarded reports whether err means the VIP was never installed.
func IsNotGuarded(err error) bool { return errors.Is(err, ErrNotGuarded) }

// ErrLate is returned when every batch of an AllowUntil was acknowledged too
// late to keep the element inside until; the VIP was revoked instead. It is
// safe (the VIP is silent while the lease is still valid) and rare: the
// last try leaves half the time left for its round trip.
var ErrLate = errors.New("vipguard: netlink batches acknowledged too late for the lease; revoked")

// IsLate reports whether err means AllowUntil revoked because its batches
// landed too late.
func IsLate(err error) bool { return errors.Is(err, ErrLate) }

const (
	// batchSlack is taken off the first element's timeout for the netlink
	// round trip (a quarter of a millisecond when idle), so the first batch
	// usually lands within the bound and needs no second one.
	batchSlack = time.Millisecond
	// maxSlack caps the slack a late batch leaves for the next calls.
	maxSlack = 10 * time.Millisecond
	// lateAttempts is how many late batches AllowUntil sends before it
	// revokes; each try leaves room for a round trip twice as slow as the
	// last, the last try for one as long as half the time left.
	lateAttempts = 3
)

// nextSlack is the first-try slack for the next AllowUntil after a batch
// that took rtt: a late one raises it to rtt (at most maxSlack), a timely
// one lets it decay a quarter of the way back to batchSlack per call.
func nextSlack(cur, rtt time.Duration, late bool) time.Duration {
	if late {
		return min(maxSlack, max(cur, rtt))
	}
	return max(batchSlack, cur-(cur-batchSlack)/4)
}

func lateError(vip netip.Addr, until time.Time, rtts []time.Duration) error {
	return fmt.Errorf("%w: %s: round trips %v, %v before the end", ErrLate, vip, rtts, time.Until(until).Round(time.Microsecond))
}

// elementTimeout is the kernel element timeout for remaining: whole
// milliseconds (the kernel's unit), rounded down so the kernel never allows
// a VIP beyond the lease; 0 means "revoke instead" (a 0 timeout would make
// the element permanent).
func elementTimeout(remaining time.Duration) time.Duration {
	return remaining.Truncate(time.Millisecond)
}

func notGuarded(vip netip.Addr) error { return fmt.Errorf("%w: %s", ErrNotGuarded, vip) }

// addrs returns the unmapped addresses of vips, without duplicates.
func addrs(vips []netip.Prefix) map[netip.Addr]bool {
	m := make(map[netip.Addr]bool, len(vips))
	for _, p := range vips {
		m[p.Addr().Unmap()] = true
	}
	return m
}
