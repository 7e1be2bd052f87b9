package meta

import (
	"container/list"
	"fmt"
	"log/slog"

	"tandem/internal/blockdev"
	"tandem/internal/metapage"
	"tandem/internal/replication"
)

// Open reads a replica's metadata from dev (or o.Meta). Damage is an error
// that names the device and what is wrong (IsCorrupt), never a panic; with
// o.Salvage, damaged bitmap pages and an unreadable activity log count as
// dirty instead. If the activity log names hot extents (the last user
// crashed), Recover must run before the first Begin.
func Open(dev blockdev.Device, o OpenOptions) (*Meta, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Meta{dev: dev, mdev: dev, internal: o.Meta == nil, log: o.Logger, name: deviceName(dev, o.Name)}
	if o.Meta != nil {
		m.mdev = o.Meta
		m.name = deviceName(o.Meta, "") + " (meta of " + m.name + ")"
	}
	sb, seq, err := readSuperblock(m.mdev, m.name)
	if err != nil {
		return nil, err
	}
	m.id, m.lay, m.st, m.sbSeq = sb.ID, sb.Layout, sb.State, seq
	if err := m.place(sb); err != nil {
		return nil, err
	}
	m.bm = newBitmap(m.lay.bits(), m.lay.BitmapPages)
	if err := m.loadBitmap(o.Salvage); err != nil {
		return nil, err
	}
	if err := m.loadAL(o.Salvage); err != nil {
		return nil, err
	}
	m.log.Info("volume meta: opened", "device", m.name, "volume_id", m.id.String(), "disk", m.st.Disk.String(),
		"flags", m.st.Flags.String(), "dirty_regions", m.bm.count(), "unclean", m.unclean)
	return m, nil
}

// place finds the metadata area and checks the devices fit the superblock.
func (m *Meta) place(sb *superblock) error {
	switch {
	case sb.Internal && m.mdev != m.dev:
		return fmt.Errorf("volume meta: %s: the metadata says it lives on the backing device, yet a meta device was given", m.name)
	case !sb.Internal && m.mdev == m.dev:
		return fmt.Errorf("volume meta: %s: this is a separate meta device's metadata, not the backing device's: open it with its meta device", m.name)
	}
	end := m.mdev.Size() / pageSize * pageSize
	m.metaOff = end - m.lay.MetaSize
	if m.metaOff < 0 {
		return &CorruptError{m.name, fmt.Sprintf("the metadata area (%d bytes) is larger than the device (%d)", m.lay.MetaSize, m.mdev.Size())}
	}
	if sb.Internal && m.lay.DataSize > m.metaOff {
		return &CorruptError{m.name, fmt.Sprintf("the data (%d bytes) overlaps the metadata at %d", m.lay.DataSize, m.metaOff)}
	}
	if !sb.Internal && m.lay.DataSize > m.dev.Size() {
		return fmt.Errorf("volume meta: %s: the backing device has %d bytes, the volume's data %d: was it shrunk, or is it the wrong device?", m.name, m.dev.Size(), m.lay.DataSize)
	}
	return nil
}

// loadBitmap reads every bitmap page, both copies, in large reads.
func (m *Meta) loadBitmap(salvage bool) error {
	const pagesPerRead = 128
	buf := blockdev.AlignedBuffer(2 * pagesPerRead * pageSize)
	for p0 := int64(0); p0 < m.lay.BitmapPages; p0 += pagesPerRead {
		n := min(pagesPerRead, m.lay.BitmapPages-p0)
		chunk := buf[:2*n*pageSize]
		if _, err := m.mdev.ReadAt(chunk, m.metaOff+m.lay.bitmapOff(p0, 0)); err != nil {
			return fmt.Errorf("volume meta: %s: read bitmap: %w", m.name, err)
		}
		for i := range n {
			p := p0 + i
			a := chunk[2*i*pageSize : (2*i+1)*pageSize]
			b := chunk[(2*i+1)*pageSize : (2*i+2)*pageSize]
			seq, payload, ok := metapage.Pick(a, b, m.id, bitmapKind, uint32(p))
			if ok {
				m.bm.load(p, payload, seq)
				continue
			}
			r0, r1 := p*bitsPerPage, min((p+1)*bitsPerPage, m.bm.nbits)
			if !salvage {
				return &CorruptError{m.name, fmt.Sprintf("bitmap page %d (regions %d to %d) fails its checksum in both copies; open with salvage to resync those regions", p, r0, r1-1)}
			}
			m.log.Warn("volume meta: bitmap page unreadable, its regions count as dirty", "device", m.name, "page", p)
			m.bm.set(r0, r1) // rewritten by the next bitmap flush
		}
	}
	m.bm.trim()
	return nil
}

// loadAL reads the activity log ring and keeps its newest transaction's
// extents for Recover.
func (m *Meta) loadAL(salvage bool) error {
	ring := blockdev.AlignedBuffer(int(m.lay.ALSlots * m.lay.ALSlotPages * pageSize))
	if _, err := m.mdev.ReadAt(ring, m.metaOff+m.lay.alOff()); err != nil {
		return fmt.Errorf("volume meta: %s: read activity log: %w", m.name, err)
	}
	seq, extents, found, err := newestTx(ring, m.lay, m.id)
	m.al = activityLog{hot: map[uint32]*alEntry{}, idle: list.New(), seq: seq}
	if len(extents) > 0 {
		m.al.pending = extents
	}
	if err == nil && found {
		m.unclean = len(extents) > 0
		return nil
	}
	what := "no activity log transaction passes its checksum"
	if err != nil {
		what = err.Error()
	}
	if !salvage {
		return &CorruptError{m.name, what + "; open with salvage to resync everything"}
	}
	m.log.Warn("volume meta: activity log unreadable, every region counts as dirty", "device", m.name, "reason", what)
	m.bm.set(0, m.bm.nbits)
	m.al.pending = nil
	for e := range m.lay.extents() {
		m.al.pending = append(m.al.pending, uint32(e))
	}
	m.unclean = true
	return nil
}

// ID is the volume's UUID.
func (m *Meta) ID() replication.VolumeID { return m.id }

// DataSize is the exposed size in bytes.
func (m *Meta) DataSize() int64 { return m.lay.DataSize }

// Internal reports whether the metadata lives on the backing device.
func (m *Meta) Internal() bool { return m.internal }

// MetaBytes is the size of the metadata area.
func (m *Meta) MetaBytes() int64 { return m.lay.MetaSize }

// Unclean reports whether the activity log named hot extents at Open: the
// last user did not Close (a crash), so Recover resyncs them.
func (m *Meta) Unclean() bool { return m.unclean }
