// Package link carries replication frames between the two data nodes of a
// volume (issue 11 item 2): the adapter between the pure replication state
// machine (package replication) and the network.
//
// It owns the frame codec (frame.go), the authenticated TCP link over one
// or more paths with failover and failback (Link), the handshake that
// refuses the wrong peer, volume or size, keepalive and timeouts, the
// epoch fence of S2, and an in-memory twin (MemNetwork) with the same
// Endpoint and Session interfaces for in-process cluster tests. Frame
// kinds below FirstLinkKind and their payloads belong to the state
// machine; the link carries them as opaque bytes.
//
// Guarantees: within one Session, frames arrive exactly once and in the
// order sent, also across a move to another path (see Session). When a
// session ends, frames in flight may be lost: the state machine treats a
// new session as a reconnect (resend or resync what was not
// acknowledged). A frame whose epoch is older than the newest the
// receiving node has seen is never delivered; the sender gets a KindStale
// frame saying the newest epoch.
//
// It imports replication's shared types, peerid, keyfile and clock; only
// the volume engine and the wiring import it. See docs/replication-link.md.
package link
