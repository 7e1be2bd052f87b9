// Package filesystem owns the `filesystem` resource agent: it mounts a
// file system that lives on an NBD export served on this node (the
// volume engine's primary replica), and owns everything between the
// export and the mount: the block device (the kernel's nbd through
// nbd-client where the kernel has the module, else nbdfuse's FUSE file
// behind a loop device, chosen automatically and reported by Mode), the
// file system's check (e2fsck -p), making a file system on a blank
// volume when asked, the mount, and on stop the unmount (killing what
// holds the mount after a timeout, as the Filesystem OCF agent's
// force_unmount does: the holders are found in /proc, no fuser needed),
// the loop device, the FUSE mount and the nbdfuse process. A stop leaves
// nothing mounted or attached, or fails saying what is left.
//
// Its state directory (one per resource) and the kernel's tables are its
// memory, not the Agent value: an agent restarted after a crash finds
// the nbdfuse, loop device and mount its predecessor left, keeps them
// when whole, and cleans them up when not.
//
// It implements resource.Agent; the node builds it from
// config.Filesystem and is its only importer. It imports clock and
// resource.
package filesystem
