package raid

// MemberStatus is one line of the member table.
type MemberStatus struct {
	Name  string `json:"name"`
	Slot  int    `json:"slot"`  // -1 for spares and faulty members
	State string `json:"state"` // in_sync, rebuilding, rebuild_aborted, replacing, spare, faulty
}

// Status is what `tandem raid status` shows, like /proc/mdstat.
type Status struct {
	Name         string         `json:"name"`
	UUID         string         `json:"uuid"`
	Level        string         `json:"level"`
	Layout       string         `json:"layout,omitempty"`
	Chunk        int64          `json:"chunk_bytes"`
	Size         int64          `json:"size_bytes"`
	Slots        int            `json:"slots"`
	InSync       int            `json:"in_sync"`
	State        string         `json:"state"` // clean, active, degraded, resyncing, rebuilding, failed
	Members      []MemberStatus `json:"members"`
	Progress     *Progress      `json:"progress,omitempty"`
	Mismatches   int64          `json:"mismatches"`
	Repaired     int64          `json:"repaired_blocks"`
	ReadErrors   int64          `json:"read_errors"`
	Events       uint64         `json:"events"`
	DirtyRegions int64          `json:"dirty_regions"`
	// ResyncPending counts the bitmap regions whose parity, mirrors and
	// checksums are not yet known to agree with the data: after an
	// unclean shutdown or since create, until the resync (which runs
	// whenever the array is open) has done them.
	ResyncPending int64 `json:"resync_pending_regions"`
	Regions       int64 `json:"regions"` // bitmap regions in all
	Checksums     bool  `json:"checksums"`
}

// Status returns the array's state.
func (a *Array) Status() Status {
	a.mu.RLock()
	st := Status{Name: a.name, UUID: a.uuid.String(), Level: a.geo.Level.String(), Chunk: a.geo.Chunk, Size: a.geo.Size(),
		Slots: a.geo.Members, Events: a.events, Checksums: a.checksums}
	if a.geo.Layout != LayoutDefault {
		st.Layout = a.geo.Layout.String()
	}
	rebuilding := false
	for i, m := range a.slots {
		if m == nil {
			st.Members = append(st.Members, MemberStatus{Name: "(missing)", Slot: i, State: "missing"})
			continue
		}
		state := "in_sync"
		if r := m.rec.Load(); r.pending() {
			state, rebuilding = "rebuilding", true
		} else if r != nil {
			state = "rebuild_aborted"
		} else {
			st.InSync++
		}
		st.Members = append(st.Members, MemberStatus{Name: m.name, Slot: i, State: state})
		if r := a.repl[i]; r != nil {
			st.Members = append(st.Members, MemberStatus{Name: r.name, Slot: i, State: "replacing"})
			rebuilding = true
		}
	}
	for _, m := range a.spares {
		st.Members = append(st.Members, MemberStatus{Name: m.name, Slot: -1, State: "spare"})
	}
	for _, m := range a.faulty {
		st.Members = append(st.Members, MemberStatus{Name: m.name, Slot: -1, State: "faulty"})
	}
	failed, degraded := a.failed, a.degradedLocked()
	a.mu.RUnlock()
	st.Progress = a.Progress()
	st.Mismatches = a.stats.mismatches.Load()
	st.Repaired = a.stats.repaired.Load()
	st.ReadErrors = a.stats.readErrors.Load()
	st.DirtyRegions = a.DirtyRegions()
	st.Regions = a.bm.nbits
	if r := a.resync.Load(); r != nil {
		r.mu.Lock()
		st.ResyncPending = r.pending.count()
		r.mu.Unlock()
	}
	switch {
	case failed:
		st.State = "failed"
	case rebuilding:
		st.State = "rebuilding"
	case degraded:
		st.State = "degraded"
	case a.resync.Load() != nil:
		st.State = "resyncing"
	default:
		st.State = "clean"
	}
	return st
}
