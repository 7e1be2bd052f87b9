package link

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"tandem/internal/replication"
)

// Endpoint is one node's end of one volume's link: the TCP Link or the
// in-memory twin (MemNetwork). It keeps trying to reach the peer and hands
// out one Session at a time.
type Endpoint interface {
	// Next waits for the next session with the peer. The previous one is
	// over by then (Done is closed).
	Next(ctx context.Context) (Session, error)
	// Observe raises the newest epoch this node has seen (a promotion,
	// the cluster state). Data frames of an older epoch are then refused.
	Observe(replication.Epoch)
	// Newest is the newest epoch this node has seen.
	Newest() replication.Epoch
	// Close ends the current session and stops connecting.
	Close() error
}

// Session is one connection with the peer, possibly moved between paths.
// Frames sent in a session arrive exactly once and in order; a frame in
// flight when the session ends may be lost.
type Session interface {
	// Send writes a data frame (f.Kind below FirstLinkKind) stamped with
	// f.Epoch and f.Flags; the link sets the volume and the sequence
	// number, which it returns. It blocks while the link is busy (that
	// is the backpressure: nothing is queued without bound) and returns
	// once the frame is handed to the connection, so f.Payload may be
	// reused at once. ctx bounds the wait for the connection; a frame
	// whose writing has begun is written or the session ends within the
	// timeout. Send may be called from several goroutines.
	Send(ctx context.Context, f Frame) (seq uint64, err error)
	// Recv returns the next data frame from the peer, or a KindStale
	// frame (DecodeStale) when the peer refused one of ours. The payload
	// is valid until the next Recv. One goroutine at a time.
	Recv(ctx context.Context) (Frame, error)
	// Close ends the session, telling the peer why (reason may be nil).
	Close(reason error)
	// Done is closed when the session is over; Err then says why.
	Done() <-chan struct{}
	Err() error
	// Peer is the peer's hello.
	Peer() Hello
	State() State
}

// State is a session's state for status and metrics.
type State struct {
	Peer      string
	Path      int // index in Config.Paths
	Local     netip.AddrPort
	Remote    netip.AddrPort
	Since     time.Time
	RTT       time.Duration // of the last ping answered; 0 before one
	BytesIn   uint64
	BytesOut  uint64
	FramesIn  uint64
	FramesOut uint64
	Newest    replication.Epoch
}

// EventKind is what happened to a link.
type EventKind uint8

const (
	// EventUp: a session began (Path, Remote).
	EventUp EventKind = iota + 1
	// EventDown: a session ended (Err says why).
	EventDown
	// EventSwitched: the session moved to another path, nothing lost.
	EventSwitched
	// EventRefused: a connection was refused, by either side (Err).
	EventRefused
	// EventDialFailed: no path answered (Err joins every path's error).
	EventDialFailed
	// EventStale: a data frame of an older epoch was refused (Err is a
	// *StaleError), by this side or by the peer.
	EventStale
	// EventEpoch: the newest epoch seen rose (Epoch).
	EventEpoch
)

var eventNames = [...]string{"", "up", "down", "switched", "refused", "dial_failed", "stale", "epoch"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) && k > 0 {
		return eventNames[k]
	}
	return "unknown"
}

// Event is one transition of a link, for the audit log and metrics.
type Event struct {
	Kind   EventKind
	Volume replication.VolumeID
	Peer   string
	Path   int
	Remote string
	Epoch  replication.Epoch
	Err    error
}

// ErrClosed is returned by an Endpoint or Session used after Close.
var ErrClosed = errors.New("link: closed")

// ErrTimeout is wrapped when a peer stopped answering or stalled mid-frame.
var ErrTimeout = errors.New("link: peer timed out")
