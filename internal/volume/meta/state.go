package meta

import (
	"fmt"

	"tandem/internal/blockdev"
	"tandem/internal/metapage"
	"tandem/internal/replication"
)

// State returns what the superblock says now.
func (m *Meta) State() State {
	m.sbMu.Lock()
	defer m.sbMu.Unlock()
	return m.st
}

// Update changes the state with fn and writes it durably, in one
// superblock write: a crash leaves the old state or the new, never a mix.
// On error the state in memory stays the old one.
func (m *Meta) Update(fn func(*State)) error {
	m.sbMu.Lock()
	defer m.sbMu.Unlock()
	st := m.st
	fn(&st)
	if err := st.check(); err != nil {
		return fmt.Errorf("volume meta: %s: %w", m.name, err)
	}
	if err := m.writeSuperblock(st); err != nil {
		return err
	}
	m.st = st
	return nil
}

// Persist writes the superblock durably as it is.
func (m *Meta) Persist() error { return m.Update(func(*State) {}) }

// SetDiskState records the disk state durably.
func (m *Meta) SetDiskState(d replication.DiskState) error {
	return m.Update(func(s *State) { s.Disk = d })
}

// SetGenIDs records the generation identifiers durably.
func (m *Meta) SetGenIDs(g replication.GenIDs) error {
	return m.Update(func(s *State) { s.Gen = g })
}

// SetFlags sets the flags in set and clears those in clear, durably.
func (m *Meta) SetFlags(set, clear Flags) error {
	return m.Update(func(s *State) { s.Flags = s.Flags&^clear | set })
}

// SetPeer records the peer's node name durably.
func (m *Meta) SetPeer(name string) error {
	return m.Update(func(s *State) { s.Peer = name })
}

// SetEpoch records e as the newest epoch seen, durably; the record never
// goes back (an older e writes nothing).
func (m *Meta) SetEpoch(e replication.Epoch) error {
	if m.State().Epoch >= e {
		return nil
	}
	return m.Update(func(s *State) { s.Epoch = max(s.Epoch, e) })
}

// writeSuperblock writes st as the next version, to the copy that does not
// hold the newest good one, and syncs. The version moves on only once it is
// durable, so a retry after a failure writes the same copy again.
func (m *Meta) writeSuperblock(st State) error {
	if m.closed.Load() {
		return fmt.Errorf("volume meta: %s: %w", m.name, ErrClosed)
	}
	sb := superblock{ID: m.id, Layout: m.lay, Internal: m.internal, State: st}
	seq := m.sbSeq + 1
	page := blockdev.AlignedBuffer(pageSize)
	metapage.Encode(page, [16]byte{}, sbKind, 0, seq, sb.encode())
	if _, err := m.mdev.WriteAt(page, m.metaOff+m.lay.sbOff()+metapage.Slot(seq)*pageSize); err != nil {
		return fmt.Errorf("volume meta: %s: write superblock: %w", m.name, err)
	}
	if err := m.syncMeta(); err != nil {
		return fmt.Errorf("volume meta: %s: sync superblock: %w", m.name, err)
	}
	m.sbSeq = seq
	return nil
}

// syncMeta flushes the metadata device; when that is the backing device,
// the flush made every data write completed before it durable too.
func (m *Meta) syncMeta() error {
	if !m.internal {
		return m.mdev.Flush()
	}
	return m.flushData()
}

// flushData flushes the backing device and records which data writes are
// now durable.
func (m *Meta) flushData() error {
	upTo := m.writes.Load()
	if err := m.dev.Flush(); err != nil {
		return err
	}
	for {
		old := m.flushed.Load()
		if old >= upTo || m.flushed.CompareAndSwap(old, upTo) {
			return nil
		}
	}
}

// dataDurable makes every data write completed up to upTo durable.
func (m *Meta) dataDurable(upTo uint64) error {
	if m.flushed.Load() >= upTo {
		return nil
	}
	return m.flushData()
}

// Close makes the bitmap durable and empties the activity log of every
// idle extent (after making their data durable), so that the next Open
// finds a clean log. Begin, Update and Bitmap().Flush fail afterwards,
// also when Close itself failed (the next Open then recovers). It leaves
// the devices open.
func (m *Meta) Close() error {
	m.txMu.Lock()
	defer m.txMu.Unlock()
	m.alMu.Lock()
	already := m.closed.Swap(true)
	m.alMu.Unlock()
	if already {
		return nil
	}
	if err := m.dataDurable(m.writes.Load()); err != nil {
		return fmt.Errorf("volume meta: %s: close: flush data: %w", m.name, err)
	}
	m.bmMu.Lock()
	err := m.writePagesLocked(m.bm.dirtyPages())
	m.bmMu.Unlock()
	if err != nil {
		return err
	}
	m.alMu.Lock()
	clean := m.al.needRecover() || len(m.al.hot) == 0
	busy := map[uint32]bool{}
	for e, ent := range m.al.hot {
		if ent.refs > 0 {
			busy[e] = true
		}
	}
	m.alMu.Unlock()
	if clean {
		return nil
	}
	return m.writeTx(sortedExtents(busy))
}
