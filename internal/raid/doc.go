// Package raid owns tandem's userspace software RAID: levels 0, 1, 5, 6 and
// 10 over any blockdev.Device (files, block devices, memory), with on-disk
// superblocks, a write-intent bitmap, a write-hole journal for RAID 5/6,
// per-block CRC-32C checksums with repair, hot spares, online rebuild and
// scrub (check / repair).
//
// The pure parts — stripe mapping (geometry.go), parity math (parity.go,
// gf.go), on-disk encodings (superblock.go, metapage.go, journal encoding)
// — do no I/O and are tested against dumb references. The engine
// (array.go, io.go, stripe.go, jobs.go, manage.go, scrub.go) does the I/O.
//
// An *Array is itself a blockdev.Device, so the NBD server and replication
// serve it like any disk. It reports health as events.Event on the
// events.Bus it is given (Fail, DegradedArray, SpareActive, Rebuild…,
// ChecksumRepaired, MismatchesFound).
//
// Its health is also exported as Prometheus metrics (tandem_raid_*) on the
// Registerer in Options.
//
// It imports blockdev, clock and events of ours (and the Prometheus client);
// cmd/, raidcli and the storage layers above it import it.
package raid
