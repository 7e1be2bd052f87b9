package meta

import (
	"errors"
	"fmt"
	"log/slog"

	"tandem/internal/blockdev"
	"tandem/internal/replication"
)

// CreateOptions shape a new volume replica's metadata.
type CreateOptions struct {
	// ID is the volume's UUID; zero makes a random one (the first replica).
	// The second replica is created with the first one's.
	ID replication.VolumeID
	// Node and Peer name this replica's node and its peer's.
	Node, Peer string
	// Meta, when set, holds the metadata (a separate meta file or device)
	// and the whole backing device is data. Nil keeps the metadata at the
	// end of the backing device.
	Meta blockdev.Device
	// Name names the backing device in messages (its path).
	Name string
	// DataSize is the exposed size, a multiple of 4 KiB; 0 takes all the
	// backing device leaves beside the metadata.
	DataSize int64
	// RegionSize is the data covered by one bitmap bit: what the smallest
	// write costs in resync after a disconnect. 64 KiB keeps the bitmap at
	// 2 MiB per TiB (both copies) while a 4 KiB write resyncs at most 64 KiB.
	RegionSize int64
	// ExtentSize is the data covered by one activity log extent; ALExtents
	// how many the log holds. 1024 × 4 MiB = 4 GiB hot: a write costs a
	// log update only when it leaves that working set, and a primary's
	// crash resyncs at most 4 GiB (DRBD's default al-extents is 1237).
	ExtentSize int64
	ALExtents  int
	// Disk is the initial disk state; zero (Diskless) means Inconsistent:
	// the data has not been synced with the peer yet.
	Disk replication.DiskState
	// Gen is the initial generation identifiers; zero means Current =
	// replication.JustCreated.
	Gen replication.GenIDs
	// Force overwrites metadata (tandem volume or raid) and data found
	// where the metadata goes.
	Force bool
	// Logger receives notes on create; nil discards them.
	Logger *slog.Logger
}

// DefaultCreateOptions returns the defaults described on each field.
func DefaultCreateOptions() CreateOptions {
	return CreateOptions{RegionSize: 64 << 10, ExtentSize: 4 << 20, ALExtents: 1024}
}

func (o CreateOptions) withDefaults() CreateOptions {
	d := DefaultCreateOptions()
	if o.RegionSize == 0 {
		o.RegionSize = d.RegionSize
	}
	if o.ExtentSize == 0 {
		o.ExtentSize = d.ExtentSize
	}
	if o.ALExtents == 0 {
		o.ALExtents = d.ALExtents
	}
	if o.Disk == replication.Diskless {
		o.Disk = replication.Inconsistent
	}
	if o.Gen == (replication.GenIDs{}) {
		o.Gen.Current = replication.JustCreated
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Validate returns every problem with o at once (after defaults).
func (o CreateOptions) Validate() error {
	o = o.withDefaults()
	var errs []error
	pow2 := func(v int64) bool { return v > 0 && v&(v-1) == 0 }
	if !pow2(o.RegionSize) || o.RegionSize < pageSize || o.RegionSize > maxRegion {
		errs = append(errs, fmt.Errorf("region size %d: want a power of two from %d to %d", o.RegionSize, pageSize, maxRegion))
	}
	if !pow2(o.ExtentSize) || o.ExtentSize < o.RegionSize || o.ExtentSize > maxRegion {
		errs = append(errs, fmt.Errorf("extent size %d: want a power of two from the region size to %d", o.ExtentSize, maxRegion))
	}
	if o.ALExtents < 1 || o.ALExtents > maxALExtents {
		errs = append(errs, fmt.Errorf("activity log extents %d: want 1 to %d", o.ALExtents, maxALExtents))
	}
	if o.DataSize < 0 || o.DataSize%pageSize != 0 || o.DataSize > maxData {
		errs = append(errs, fmt.Errorf("data size %d: want a multiple of %d up to %d", o.DataSize, pageSize, int64(maxData)))
	}
	if err := (State{Node: o.Node, Peer: o.Peer, Disk: o.Disk}).check(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// OpenOptions say where an existing replica's metadata is and how to treat
// damage.
type OpenOptions struct {
	// Meta is the separate meta device the replica was created with; nil
	// for metadata at the end of the backing device.
	Meta blockdev.Device
	// Name names the backing device in messages (its path).
	Name string
	// Salvage opens metadata whose bitmap pages or activity log fail their
	// checksums in both copies by counting every region they cover as
	// dirty (more resync, never less), instead of refusing. A bad
	// superblock is always refused.
	Salvage bool
	// Logger receives what Open and Recover found; nil discards it.
	Logger *slog.Logger
}
