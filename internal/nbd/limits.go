package nbd

import (
	"errors"
	"fmt"
	"time"
)

// Limits bound what clients can make a server hold: connections, payload
// memory, and time. The zero value of a field means its default
// (DefaultLimits), except IdleTimeout, where zero means no idle timeout.
type Limits struct {
	// MaxConns caps the connections open at once, in the handshake or in
	// transmission. Default 64: an NBD volume has a handful of clients
	// (the kernel's nbd-client with -C connections, qemu, nbdcopy's 4);
	// 64 leaves room for all of them and their reconnects while keeping
	// per-connection reserves worth having. A client beyond it is told
	// NBD_REP_ERR_POLICY ("too many connections") and the refusal logged.
	MaxConns int
	// MaxMemory bounds the payload buffers of all connections together
	// (requests read and not yet answered). Default 512 MiB. Half of it is
	// split evenly into per-connection reserves (4 MiB each by default,
	// a whole nbdcopy connection's working set: 16 requests of 256 KiB),
	// the other half is shared; see memory. At least 64 MiB, so the
	// largest request (32 MiB) always fits in a reserve plus the shared
	// half.
	MaxMemory int64
	// ConnMemory bounds one connection's payload buffers in flight.
	// Default 64 MiB: nbdcopy keeps 64 × 256 KiB per connection in flight
	// (the server runs 16 of them at a time), the kernel client far less.
	// A single request larger than it still runs when the connection holds
	// nothing else.
	ConnMemory int64
	// StallTimeout ends a connection whose reply makes no progress for
	// this long: a client that stops reading its replies would otherwise
	// pin its buffers, a worker and the reply forever. Default 30 s, the
	// kernel nbd driver's own request timeout: a client that has not taken
	// a byte of a reply for that long has given up on it anyway.
	StallTimeout time.Duration
	// IdleTimeout closes a connection in transmission that has no request
	// in flight and sends none for this long. 0 (the default) means never:
	// a kernel client with a mounted, quiet file system sends nothing for
	// hours and breaks if cut off. Set it when the clients reconnect on
	// their own (qemu's reconnect-delay, nbd-client -persist).
	IdleTimeout time.Duration
	// HandshakeTimeout bounds the handshake (and the TLS handshake within
	// it), so a connection that never chooses an export cannot hold its
	// slot. Default 30 s.
	HandshakeTimeout time.Duration
}

// DefaultLimits returns the limits a server has unless told otherwise; the
// reason for each value is on its field.
func DefaultLimits() Limits {
	return Limits{
		MaxConns:         64,
		MaxMemory:        512 << 20,
		ConnMemory:       64 << 20,
		StallTimeout:     30 * time.Second,
		HandshakeTimeout: defaultHandshakeTimeout,
	}
}

// withDefaults fills zero fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxConns == 0 {
		l.MaxConns = d.MaxConns
	}
	if l.MaxMemory == 0 {
		l.MaxMemory = d.MaxMemory
	}
	if l.ConnMemory == 0 {
		l.ConnMemory = d.ConnMemory
	}
	if l.StallTimeout == 0 {
		l.StallTimeout = d.StallTimeout
	}
	if l.HandshakeTimeout == 0 {
		l.HandshakeTimeout = d.HandshakeTimeout
	}
	return l
}

// Validate reports every problem with l at once (zero fields count as
// their defaults).
func (l Limits) Validate() error {
	l = l.withDefaults()
	var errs []error
	if l.MaxConns < 1 {
		errs = append(errs, fmt.Errorf("nbd: limits: max connections %d: must be at least 1", l.MaxConns))
	}
	if l.MaxMemory < 2*MaxPayload {
		errs = append(errs, fmt.Errorf("nbd: limits: max memory %d: must be at least %d (twice the largest request)", l.MaxMemory, 2*MaxPayload))
	}
	if l.ConnMemory < bufAlign {
		errs = append(errs, fmt.Errorf("nbd: limits: connection memory %d: must be at least %d", l.ConnMemory, bufAlign))
	}
	if l.StallTimeout < 0 || l.IdleTimeout < 0 || l.HandshakeTimeout < 0 {
		errs = append(errs, errors.New("nbd: limits: timeouts must not be negative"))
	}
	return errors.Join(errs...)
}

// reserve is each connection's own share of MaxMemory: half of it split
// evenly, at most ConnMemory, in whole pages.
func (l Limits) reserve() int64 {
	r := min(l.ConnMemory, l.MaxMemory/2/int64(l.MaxConns))
	return r &^ (bufAlign - 1)
}

// connLimit is what one connection may hold: ConnMemory, but no more than
// its reserve and the whole shared part, which it could never get.
func (l Limits) connLimit() int64 {
	return min(l.ConnMemory, l.MaxMemory-int64(l.MaxConns-1)*l.reserve())
}
