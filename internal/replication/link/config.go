package link

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"tandem/internal/clock"
	"tandem/internal/keyfile"
	"tandem/internal/replication"
)

// Path is one network path between the two nodes: this node listens on
// Local and dials the peer's Local (Peer here) from Local's address.
type Path struct {
	Local netip.AddrPort
	Peer  netip.AddrPort
}

// Config is one node's end of one volume's link.
type Config struct {
	Self, Peer string // node names; the lower name dials, the other listens
	Key        []byte // the cluster key (keyfile.KeySize bytes)
	Volume     replication.VolumeID
	Size       uint64            // volume size in bytes; both replicas must agree
	Epoch      replication.Epoch // the newest epoch seen (from the metadata)
	Paths      []Path            // in preference order
	Limits     Limits
	Clock      clock.Clock  // nil: the wall clock
	Logger     *slog.Logger // nil: discard
	// OnEvent, if set, receives every event, on the link's goroutines: it
	// must not block.
	OnEvent func(Event)
	// Fenced says which data kinds the epoch fence applies to (those that
	// change the receiver's data or generation); nil: every data kind.
	// Frames of other kinds still raise the newest epoch seen.
	Fenced func(Kind) bool
}

func fencedBy(f func(Kind) bool, k Kind) bool { return f == nil || f(k) }

// Limits bound time and memory per link.
type Limits struct {
	// DialTimeout bounds TCP connect, TLS and hello on one path: a path
	// that does not answer within it is skipped for the next.
	DialTimeout time.Duration
	// HandshakeTimeout bounds TLS and hello on an accepted connection;
	// until then it holds one of a few handshake slots.
	HandshakeTimeout time.Duration
	// PingInterval: each side pings this often, so a healthy idle peer
	// is heard from well within Timeout, and the RTT stays current.
	PingInterval time.Duration
	// Timeout: a peer that sends nothing for this long while this side
	// waits to read, that takes this long to complete a frame once its
	// header has arrived, or that accepts no bytes of a frame written to
	// it for this long, is dropped (DRBD's ping-timeout and timeout).
	Timeout time.Duration
	// ReconnectMin and ReconnectMax bound the dialler's backoff between
	// rounds over every path.
	ReconnectMin, ReconnectMax time.Duration
	// FailbackInterval: while on a less preferred path, the dialler tries
	// the better ones this often and moves the session back to the first
	// that answers.
	FailbackInterval time.Duration
	// RecvWindow is how many received frames may wait for Recv; with one
	// being processed that is RecvWindow+1 buffers of up to MaxPayload.
	// A consumer that falls behind stops the reading, and TCP's window
	// stops the sender.
	RecvWindow int
}

// DefaultLimits are for a LAN between two servers.
func DefaultLimits() Limits {
	return Limits{
		DialTimeout:      3 * time.Second,        // a LAN answers in a millisecond; TLS takes a few
		HandshakeTimeout: 5 * time.Second,        // as raft's transport
		PingInterval:     time.Second,            // 5 pings per Timeout: one lost does not matter
		Timeout:          5 * time.Second,        // below the failover budget of a 6 s DRBD ko
		ReconnectMin:     100 * time.Millisecond, // reconnect fast after a blip
		ReconnectMax:     2 * time.Second,        // but do not spin on a dead peer
		FailbackInterval: 2 * time.Second,        // a repaired path is used again within seconds
		RecvWindow:       4,                      // 5 MiB at most per volume, enough to overlap disk and network
	}
}

// Validate returns every problem with c at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("link: "+format, a...)) }
	if c.Self == "" || c.Peer == "" {
		bad("self and peer must be named")
	} else if c.Self == c.Peer {
		bad("self and peer are both %q", c.Self)
	}
	if len(c.Self) > maxName || len(c.Peer) > maxName {
		bad("node names are at most %d bytes", maxName)
	}
	if len(c.Key) != keyfile.KeySize {
		bad("cluster key is %d bytes, want %d", len(c.Key), keyfile.KeySize)
	}
	if c.Volume == (replication.VolumeID{}) {
		bad("volume ID is zero")
	}
	if len(c.Paths) == 0 {
		bad("no paths")
	}
	for i, p := range c.Paths {
		if !p.Local.IsValid() || !p.Peer.IsValid() || p.Peer.Port() == 0 {
			bad("paths[%d]: local %v, peer %v: both need an address, the peer a port", i, p.Local, p.Peer)
		}
	}
	l := c.Limits
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"dial_timeout", l.DialTimeout}, {"handshake_timeout", l.HandshakeTimeout}, {"ping_interval", l.PingInterval},
		{"timeout", l.Timeout}, {"reconnect_min", l.ReconnectMin}, {"reconnect_max", l.ReconnectMax}, {"failback_interval", l.FailbackInterval}} {
		if d.v <= 0 {
			bad("%s is %v, want > 0", d.name, d.v)
		}
	}
	if l.PingInterval >= l.Timeout {
		bad("ping_interval %v must be below timeout %v, or an idle peer is dropped", l.PingInterval, l.Timeout)
	}
	if l.ReconnectMax < l.ReconnectMin {
		bad("reconnect_max %v is below reconnect_min %v", l.ReconnectMax, l.ReconnectMin)
	}
	if l.RecvWindow < 1 || l.RecvWindow > 64 {
		bad("recv_window is %d, want 1..64", l.RecvWindow)
	}
	return errors.Join(errs...)
}

// dials reports whether this node is the one that dials: the one whose
// name sorts first. Only one side ever dials, so two connections never
// cross; the other side only listens.
func (c *Config) dials() bool { return c.Self < c.Peer }

func (c *Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

func (c *Config) clock() clock.Clock {
	if c.Clock == nil {
		return clock.Real{}
	}
	return c.Clock
}
