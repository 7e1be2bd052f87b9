// Package link carries replication frames between the two data nodes of a
// volume (issue 11 item 2): the adapter between the pure replication state
// machine (package replication) and the network.
//
// It owns the frame codec (frame.go), the encoding of the machine's frames
// (message.go), the authenticated TCP link over one or more paths with
// failover and failback (link.go, listen.go, dial.go; a session's two
// sides in session.go and reader.go), the handshake that refuses the wrong
// key, node, volume or size (control.go), keepalive and timeouts, the
// epoch fence of S2, its Prometheus metrics (metrics.go), and an in-memory
// twin (mem.go) with the same Endpoint and Session interfaces for
// in-process cluster tests. Frame kinds below FirstLinkKind belong to the
// state machine; the transport carries them as opaque bytes.
//
// Guarantees: within one Session, frames arrive exactly once and in the
// order sent, also across a move to another path. When a session ends,
// frames in flight may be lost: the state machine treats a new session as
// a reconnect (resend or resync what was not acknowledged). A fenced frame
// whose epoch is older than the newest the receiving node has seen is
// never delivered; the sender gets a KindStale frame saying the newest
// epoch.
//
// It imports replication's shared types, peerid, keyfile and clock; only
// the volume engine and the wiring import it. See docs/replication-link.md.
package link
