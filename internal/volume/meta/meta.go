package meta

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"tandem/internal/blockdev"
	"tandem/internal/metapage"
	"tandem/internal/replication"
)

// Meta is one replica's metadata, open on its devices. Its methods are safe
// for concurrent use. It does not own the devices: Close leaves them open.
type Meta struct {
	name     string          // the device holding the metadata, for messages
	dev      blockdev.Device // backing device: the data (and the metadata when internal)
	mdev     blockdev.Device // the device holding the metadata
	internal bool
	metaOff  int64 // start of the metadata area on mdev
	lay      layout
	id       replication.VolumeID
	log      *slog.Logger
	unclean  bool

	sbMu  sync.Mutex
	st    State
	sbSeq uint64 // newest durable superblock version

	bmMu sync.Mutex
	bm   *bitmap

	// txMu serializes what changes the log's membership (transactions,
	// Recover, Close) and is held across their I/O; alMu guards the log in
	// memory and is held only briefly, so writes to hot extents never wait
	// for a transaction. Lock order: txMu, alMu, bmMu.
	txMu sync.Mutex
	alMu sync.Mutex
	al   activityLog

	// Data writes completed through Data(), and how many of them a
	// completed flush of the backing device made durable: a bit is cleared
	// on disk, and an extent leaves the activity log, only once the data
	// it covers is durable.
	writes  atomic.Uint64
	flushed atomic.Uint64
	closed  atomic.Bool
}

// deviceName is how messages name d.
func deviceName(d blockdev.Device, given string) string {
	if given != "" {
		return given
	}
	if p, ok := d.(interface{ Path() string }); ok {
		return p.Path()
	}
	return "device"
}

// Create writes new metadata for a replica on dev (or on o.Meta) and opens
// it. Unless o.Force, it refuses a device whose metadata area, or whose
// meta device, already holds tandem volume metadata, a tandem raid member
// superblock, or any non-zero byte where the metadata goes. Nothing is
// written until every check passed; a crash part way leaves no metadata.
func Create(dev blockdev.Device, o CreateOptions) (*Meta, error) {
	o = o.withDefaults()
	name := deviceName(dev, o.Name)
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("volume meta: create on %s: %w", name, err)
	}
	mdev, metaSize := dev, int64(0)
	if o.Meta != nil {
		mdev, metaSize = o.Meta, o.Meta.Size()
		name = deviceName(o.Meta, "") + " (meta of " + name + ")"
	}
	lay, metaOff, err := planLayout(dev.Size(), metaSize, o)
	if err != nil {
		return nil, fmt.Errorf("volume meta: create on %s: %w", name, err)
	}
	raid := holdsRaid(dev) || holdsRaid(mdev)
	if !o.Force {
		if err := claimable(dev, mdev, metaOff, lay.MetaSize, raid); err != nil {
			return nil, fmt.Errorf("volume meta: create on %s: %w", name, err)
		}
	}
	id := o.ID
	if id == (replication.VolumeID{}) {
		rand.Read(id[:])
	}
	sb := &superblock{ID: id, Layout: lay, Internal: o.Meta == nil,
		State: State{Node: o.Node, Peer: o.Peer, Gen: o.Gen, Disk: o.Disk}}
	if err := writeNew(dev, mdev, metaOff, sb, raid); err != nil {
		return nil, fmt.Errorf("volume meta: create on %s: %w", name, err)
	}
	o.Logger.Info("volume meta: created", "device", name, "volume_id", id.String(), "data_bytes", lay.DataSize,
		"meta_bytes", lay.MetaSize, "internal", sb.Internal, "region_bytes", lay.RegionSize)
	return Open(dev, OpenOptions{Meta: o.Meta, Name: o.Name, Logger: o.Logger})
}

// writeNew lays down fresh metadata: the old superblock pair (and a raid
// superblock, when forcing over a member) wiped and synced first, so that
// until the new superblock lands, last, Open finds none.
func writeNew(dev, mdev blockdev.Device, metaOff int64, sb *superblock, raid bool) error {
	l := sb.Layout
	zero := blockdev.AlignedBuffer(2 * pageSize)
	if _, err := mdev.WriteAt(zero, metaOff+l.sbOff()); err != nil {
		return fmt.Errorf("wipe superblock: %w", err)
	}
	if raid {
		for _, d := range []blockdev.Device{dev, mdev} {
			if _, err := d.WriteAt(zero, 0); err != nil {
				return fmt.Errorf("wipe raid superblock: %w", err)
			}
		}
	}
	if err := flushBoth(dev, mdev); err != nil {
		return err
	}
	bm := newBitmap(l.bits(), l.BitmapPages)
	page := blockdev.AlignedBuffer(pageSize)
	for p := range l.BitmapPages {
		metapage.Encode(page, sb.ID, bitmapKind, uint32(p), 1, bm.payload(p))
		if _, err := mdev.WriteAt(page, metaOff+l.bitmapOff(p, metapage.Slot(1))); err != nil {
			return fmt.Errorf("write bitmap page %d: %w", p, err)
		}
	}
	tx := encodeTx(blockdev.AlignedBuffer(int(l.ALSlotPages*pageSize)), sb.ID, 1, nil)
	if _, err := mdev.WriteAt(tx, metaOff+l.alSlotOff(1%l.ALSlots)); err != nil {
		return fmt.Errorf("write activity log: %w", err)
	}
	if err := mdev.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	metapage.Encode(page, [16]byte{}, sbKind, 0, 1, sb.encode())
	if _, err := mdev.WriteAt(page, metaOff+l.sbOff()+metapage.Slot(1)*pageSize); err != nil {
		return fmt.Errorf("write superblock: %w", err)
	}
	if err := mdev.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}

func flushBoth(dev, mdev blockdev.Device) error {
	if err := dev.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	if mdev != dev {
		if err := mdev.Flush(); err != nil {
			return fmt.Errorf("flush meta device: %w", err)
		}
	}
	return nil
}

func holdsRaid(d blockdev.Device) bool {
	if d.Size() < 2*pageSize {
		return false
	}
	buf := blockdev.AlignedBuffer(2 * pageSize)
	if _, err := d.ReadAt(buf, 0); err != nil {
		return false
	}
	_, _, ok := metapage.Pick(buf[:pageSize], buf[pageSize:], [16]byte{}, metapage.RaidSuperblock, 0)
	return ok
}

// claimable says why Create may not write where it would.
func claimable(dev, mdev blockdev.Device, metaOff, metaSize int64, raid bool) error {
	for _, d := range []blockdev.Device{dev, mdev} {
		if sb, _, err := readSuperblock(d, ""); err == nil {
			return fmt.Errorf("%w: it holds tandem volume metadata (volume %s, node %q); use force to overwrite it", ErrInUse, sb.ID, sb.State.Node)
		}
	}
	if raid {
		return fmt.Errorf("%w: it is a tandem raid member (a raid superblock at its start); use force to overwrite it", ErrInUse)
	}
	buf := blockdev.AlignedBuffer(1 << 20)
	for at := metaOff; at < metaOff+metaSize; at += int64(len(buf)) {
		chunk := buf[:min(int64(len(buf)), metaOff+metaSize-at)]
		if _, err := mdev.ReadAt(chunk, at); err != nil {
			return fmt.Errorf("read where the metadata goes: %w", err)
		}
		if i := bytes.IndexFunc(chunk, func(r rune) bool { return r != 0 }); i >= 0 {
			return fmt.Errorf("%w: the %d bytes at offset %d, where the metadata goes, hold data (offset %d is not zero: a file system that fills the device?); use force to overwrite them",
				ErrInUse, metaSize, metaOff, at+int64(i))
		}
	}
	return nil
}

// readSuperblock finds the newest valid superblock at d's end; name is
// how errors call d.
func readSuperblock(d blockdev.Device, name string) (*superblock, uint64, error) {
	end := d.Size() / pageSize * pageSize
	if end < 2*pageSize {
		return nil, 0, fmt.Errorf("volume meta: %s: %w: %d bytes is too small to hold any", name, ErrNoMetadata, d.Size())
	}
	buf := blockdev.AlignedBuffer(2 * pageSize)
	if _, err := d.ReadAt(buf, end-2*pageSize); err != nil {
		return nil, 0, fmt.Errorf("volume meta: %s: read superblock: %w", name, err)
	}
	seq, payload, ok := metapage.Pick(buf[:pageSize], buf[pageSize:], [16]byte{}, sbKind, 0)
	if !ok {
		if [4]byte(buf[0:4]) == sbKind || [4]byte(buf[pageSize:pageSize+4]) == sbKind {
			return nil, 0, &CorruptError{name, "both superblock copies (the last 8 KiB) fail their checksum"}
		}
		return nil, 0, fmt.Errorf("volume meta: %s: %w (no superblock in its last 8 KiB)", name, ErrNoMetadata)
	}
	sb, err := decodeSuperblock(payload)
	if err != nil {
		return nil, 0, &CorruptError{name, err.Error()}
	}
	return sb, seq, nil
}
