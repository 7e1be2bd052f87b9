// Package replication owns the logic that keeps a volume's two replicas
// identical (issue 11): the generation identifiers that decide, at
// connect, which replica is the sync source and which the target (or that
// the two split, or are unrelated); the replication state machine of one
// volume on one node (roles, sync and async modes, write order on the
// secondary, the dirty bitmap, the activity log, resync, verify, peer
// outdating); and the types the adapters share (volume identity, epochs,
// disk states).
//
// It is pure: no sockets, files, goroutines or wall clock. The adapters —
// replication/link (the authenticated TCP link and its frames),
// volume/meta (the metadata on disk) and volume (the replicated block
// device the NBD server exposes) — feed it events and carry out the
// actions it returns, in order.
//
// Files, by what they own:
//   - types.go: VolumeID, Epoch, GenID(s), DiskState, Role, Mode.
//   - genid.go: Side, Decision, Decide — the connect decision table.
//   - splitbrain.go: SplitBrainPolicy, Resolve — --discard and the policies.
//   - generation.go: the generation transitions (new current, resync
//     start and end).
//   - config.go: Config, its defaults and Validate.
//   - frame.go: the frames between the two machines; codec.go: their
//     payloads on the wire; action.go: requests,
//     actions, metadata, errors; event.go: events.
//   - machine.go: Machine, New, Status; queue.go: the local operation
//     queue (conflict ordering); primary.go: client requests and their
//     acknowledgement, losing the peer, detach; peer.go: frames from the
//     peer and the secondary's side; connect.go: link up/down, the
//     handshake, fencing, timers; resync.go; verify.go; digest.go: the
//     verify digest (CRC-32C per 4 KiB block); admin.go: promote,
//     demote, connect, disconnect, resolve, outdate; actlog.go: the
//     activity log; bitmap.go: region sets.
//   - fencer.go: the PeerFencer seam and MemFencer, its in-memory twin.
//
// docs/replication.md describes the design and its guarantees; the model
// in sim_test.go checks them over random interleavings. It imports only
// the standard library; internal/volume and replication/link import it.
package replication
