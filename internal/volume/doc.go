// Package volume owns a replicated volume on one node (issue 11): it runs
// the replication state machine of internal/replication against the real
// things — the replica's metadata and data (volume/meta), the link to the
// peer (replication/link) and a PeerFencer — and, while this node is
// primary, is the blockdev.Device the NBD server exposes.
//
// It is an adapter: every decision is the machine's. One goroutine (the
// loop) owns the machine: it feeds it client requests, local I/O
// completions, frames from the peer, link changes, fencer answers, admin
// commands and the time, and carries out the actions it returns in order —
// durable metadata writes in the loop, local I/O and fencing on their own
// goroutines (answering back through the loop), frames through one sender
// per session (FIFO).
//
// Files: volume.go (Options, Open, Close, admin commands, Status),
// loop.go (the loop and the actions), session.go (a link session's
// reader and sender), device.go (blockdev.Device), state.go (the
// metadata's state as the machine's Meta).
//
// docs/volumes.md describes it for operators. It imports replication,
// replication/link, volume/meta, blockdev and clock; cmd/ (tandem volume)
// and the cluster's volume resource import it.
package volume
