package meta

import "errors"

var (
	// ErrNoMetadata: the device holds no tandem volume metadata (where its
	// superblock would be, both copies are blank).
	ErrNoMetadata = errors.New("no tandem volume metadata")
	// ErrCorrupt is what every CorruptError matches with errors.Is.
	ErrCorrupt = errors.New("corrupt volume metadata")
	// ErrInUse: Create found metadata or data it would overwrite.
	ErrInUse = errors.New("device in use")
	// ErrALFull: every extent in the activity log has writes in flight; a
	// write to another extent waits for an End.
	ErrALFull = errors.New("activity log full: every hot extent has writes in flight")
	// ErrNotRecovered: Begin before Recover, while the activity log still
	// names extents a crash left hot.
	ErrNotRecovered = errors.New("activity log not recovered: call Recover first")
	// ErrClosed: the Meta was closed.
	ErrClosed = errors.New("volume metadata closed")
)

// CorruptError says which device's metadata is damaged and how.
type CorruptError struct {
	Device string // the device holding the metadata
	What   string // what is wrong, in words
}

func (e *CorruptError) Error() string {
	return "volume meta: " + e.Device + ": " + e.What
}

func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// IsCorrupt reports whether err says the metadata is damaged (a checksum
// failed in both copies, or a field is impossible).
func IsCorrupt(err error) bool { return errors.Is(err, ErrCorrupt) }

// IsNoMetadata reports whether err says there is no metadata at all.
func IsNoMetadata(err error) bool { return errors.Is(err, ErrNoMetadata) }

// IsInUse reports whether Create refused a device that holds metadata or
// data.
func IsInUse(err error) bool { return errors.Is(err, ErrInUse) }

// IsALFull reports whether a Begin must wait for an End.
func IsALFull(err error) bool { return errors.Is(err, ErrALFull) }
