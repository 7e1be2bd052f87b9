// Package meta owns a replicated volume replica's metadata on disk (issue
// 11 item 1): its identity and geometry, the replication state the state
// machine in internal/replication reads at start (generation identifiers,
// disk state, flags, the newest epoch seen), the dirty bitmap of what the
// peer may miss, and the activity log of the extents with writes in flight
// (after a crash only those need resync beyond the bitmap). It also gives
// the data area as a blockdev.Device.
//
// The metadata sits at the end of the backing device (internal, the
// default, like DRBD's) or on a separate meta device; docs/volume-metadata.md
// has the format. Every structure survives a crash at any write: the
// superblock and each bitmap page are metapage A/B pages with sequence
// numbers and CRC-32C, the activity log a ring of checksummed transactions;
// tests cut the power at every step (blockdev.Faulty, blockdev.Mem).
//
// It is an adapter: it does I/O on the devices it is given and decides
// nothing about replication. It imports blockdev, metapage and the shared
// types of replication; internal/volume imports it.
package meta
