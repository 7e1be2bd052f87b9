// Package volume owns a replicated volume on one node (issue 11): it runs
// the replication state machine of internal/replication against the real
// things — the replica's metadata and data (volume/meta), the link to the
// peer (replication/link) and a PeerFencer — and, while this node is
// primary, is the blockdev.Device the NBD server exposes.
//
// It is an adapter: every decision is the machine's. One goroutine at a
// time owns the machine (a mutex): the one an input arrived on — a
// client's request, a local I/O's completion, a frame from the peer, a
// link change, a fencer answer, an admin command, the loop's timer — feeds
// it and carries out the actions it returns in order: durable metadata
// writes at once, then, once the machine is released, the frames (sent in
// the machine's order by that goroutine or the session's sender) and the
// local I/O (by that goroutine, or goroutines of their own, each going on
// with its completion). No input is handed to another goroutine to be
// taken: each hand-off cost tens of microseconds of a replicated write.
//
// Files: volume.go (Options, Open, Close, admin commands, Status),
// loop.go (steps, the loop's timers and the actions), session.go (a link
// session's reader and sender), device.go (blockdev.Device), state.go (the
// metadata's state as the machine's Meta).
//
// docs/volumes.md describes it for operators. It imports replication,
// replication/link, volume/meta, blockdev and clock; cmd/ (tandem volume)
// and the cluster's volume resource import it.
package volume
