// Package vipguard owns the kernel-enforced VIP lease (DESIGN "The kernel
// enforces the lease for the VIP"): nftables rules that silence every guarded
// VIP — no ARP, no neighbour advertisements, no inbound or outbound traffic —
// unless the VIP is in a set whose element times out when this node's lease
// ends. The holder refreshes the element on every renewal; if the agent
// freezes or dies, the kernel silences the VIP at lease end with no process
// alive.
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
	// Allow lets vip speak for remaining, counted from now, replacing any
	// earlier allowance (also a longer one). A remaining under a millisecond
	// revokes. vip must be guarded. If the kernel state is gone (a firewall
	// reload flushed the ruleset), Allow installs it again first.
	Allow(vip netip.Addr, remaining time.Duration) error
	// Revoke silences vip now. Revoking a silent VIP succeeds.
	Revoke(vip netip.Addr) error
	// Remaining reports how long vip may still speak (0 when silenced).
	Remaining(vip netip.Addr) (time.Duration, error)
	// Close removes everything Install created: the VIPs are unguarded.
	Close() error
}

// ErrNotGuarded is returned for a VIP that Install was not given.
var ErrNotGuarded = errors.New("vipguard: address is not guarded")

// IsNotGuarded reports whether err means the VIP was never installed.
func IsNotGuarded(err error) bool { return errors.Is(err, ErrNotGuarded) }

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
