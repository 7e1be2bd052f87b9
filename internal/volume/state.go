package volume

import (
	"tandem/internal/replication"
	"tandem/internal/volume/meta"
)

// persisted reads what the machine needs at start from the replica's
// metadata. An unclean replica (the node stopped while it had writes in
// flight) first folds its activity log into the dirty bitmap
// (meta.ActivityLog.Recover), so what the machine gets back as Dirty
// already covers those extents.
func persisted(md *meta.Meta) (replication.Persisted, error) {
	if _, err := md.AL().Recover(); err != nil {
		return replication.Persisted{}, err
	}
	st := md.State()
	p := replication.Persisted{Meta: machineMeta(st)}
	rs := md.Bitmap().RegionSize()
	for off, n := range md.Bitmap().Ranges() {
		first := int(off / rs)
		last := int((off + n + rs - 1) / rs)
		p.Dirty = append(p.Dirty, replication.RegionRange{First: first, N: last - first})
	}
	return p, nil
}

func machineMeta(st meta.State) replication.Meta {
	return replication.Meta{
		GenIDs:       st.Gen,
		Disk:         st.Disk,
		Epoch:        st.Epoch,
		PrimaryEpoch: st.PrimaryEpoch,
		Primary:      st.Flags&meta.Primary != 0,
	}
}

// applyMeta writes the machine's Meta into the superblock's state.
func applyMeta(st *meta.State, m replication.Meta) {
	st.Gen, st.Disk, st.PrimaryEpoch = m.GenIDs, m.Disk, m.PrimaryEpoch
	st.Epoch = max(st.Epoch, m.Epoch)
	st.Flags &^= meta.Primary | meta.Consistent
	if m.Primary {
		st.Flags |= meta.Primary
	}
	if m.Disk == replication.UpToDate || m.Disk == replication.Outdated {
		st.Flags |= meta.Consistent
	}
}
