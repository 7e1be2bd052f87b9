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
package replication
