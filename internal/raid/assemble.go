package raid

import (
	"errors"
	"fmt"

	"tandem/internal/blockdev"
	"tandem/internal/events"
)

// AssembleOptions choose which array to bring up from the offered members.
type AssembleOptions struct {
	UUID *UUID  // the array to assemble; nil with Name empty: the first member's
	Name string // or by name
}

// MemberProblem is a member left out of an assembly, and why.
type MemberProblem struct {
	Name string
	Err  error
	dev  UUID // its identity when it had a superblock of the array
}

func (p MemberProblem) Error() string { return fmt.Sprintf("%s: %v", p.Name, p.Err) }

// Examined is what a member's superblock says (mdadm --examine).
type Examined struct {
	Array    UUID
	Name     string
	Geometry Geometry
	Role     int
	Events   uint64
	Clean    bool
	Size     int64
}

// Examine reads the superblock of one device.
func Examine(m Member) (*Examined, error) {
	sb, _, err := readSuperblock(m.Dev)
	if err != nil {
		return nil, fmt.Errorf("raid: member %s: %w", m.Name, err)
	}
	return &Examined{Array: sb.Array, Name: sb.Name, Geometry: sb.Geometry, Role: int(sb.Role), Events: sb.Events, Clean: sb.Clean, Size: sb.Geometry.Size()}, nil
}

type candidate struct {
	Member
	sb  *superblock
	seq uint64
}

// Assemble brings up an array from the members offered. Members that carry
// no superblock of the array, or one that is corrupt, stale (an older event
// counter), marked faulty, or a duplicate of another, are left out and listed
// by LeftOut; the array starts degraded when its level allows, and fails
// with every reason otherwise. A dirty, degraded RAID 5/6 needs Force.
func Assemble(offered []Member, ao AssembleOptions, o Options) (*Array, error) {
	o = o.withDefaults()
	cands, fresh, problems, err := candidates(offered, ao)
	if err != nil {
		return nil, err
	}
	a := &Array{name: fresh.Name, uuid: fresh.Array, geo: fresh.Geometry, lay: fresh.Layout, checksums: fresh.checksums(),
		created: fresh.Created, opts: o, log: o.Logger, events: fresh.Events}
	g := a.geo
	a.slots = make([]*member, g.Members)
	a.repl = make([]*member, g.Members)
	seen := map[UUID]string{}
	dirty := false
	var accepted []*member
	for i, c := range cands {
		ent, ok := fresh.device(c.sb.Dev)
		var why error
		switch {
		case seen[c.sb.Dev] != "":
			why = fmt.Errorf("duplicate of %s (same member identity)", seen[c.sb.Dev])
		case !ok:
			why = errors.New("not in the array's role table (removed)")
		case c.sb.Events+1 < fresh.Events:
			why = fmt.Errorf("stale: event counter %d, array at %d; re-add it with add", c.sb.Events, fresh.Events)
		case ent.Role == RoleFaulty:
			why = errors.New("marked faulty in the array; re-add it with add")
		case c.sb.Geometry != fresh.Geometry || c.sb.Layout != fresh.Layout:
			why = errors.New("superblock disagrees with the array's geometry")
		case c.Dev.Size() < fresh.Layout.DataOff+fresh.Layout.MemberData:
			why = fmt.Errorf("too small: %d bytes, array needs %d", c.Dev.Size(), fresh.Layout.DataOff+fresh.Layout.MemberData)
		case ent.Role >= 0 && (int(ent.Role) >= g.Members):
			why = fmt.Errorf("role %d out of range", ent.Role)
		}
		if why != nil {
			problems = append(problems, MemberProblem{c.Name, why, c.sb.Dev})
			continue
		}
		seen[c.sb.Dev] = c.Name
		m := &member{id: i, name: c.Name, dev: c.Dev, uuid: c.sb.Dev, lay: fresh.Layout, sbSeq: c.seq, role: ent.Role, lastSlot: ent.Slot}
		if a.checksums {
			m.crc = &crcTable{m: m, seed: a.uuid, pages: map[int64]*crcPage{}}
		}
		dirty = dirty || !c.sb.Clean
		switch {
		case ent.Role == RoleSpare:
			a.spares = append(a.spares, m)
		case a.slots[ent.Role] == nil:
			if ent.Recovery >= 0 {
				r := &recovery{spb: a.lay.StripesPerBit}
				r.pos.Store(ent.Recovery)
				m.rec.Store(r)
			}
			a.slots[ent.Role] = m
		default:
			// Two members for one slot: the one in sync holds it, the other
			// was being built to replace it.
			old := a.slots[ent.Role]
			if old.rec.Load() != nil && ent.Recovery < 0 {
				a.slots[ent.Role], m = m, old
			}
			if m.rec.Load() == nil {
				r := &recovery{spb: a.lay.StripesPerBit}
				r.pos.Store(max(0, ent.Recovery))
				m.rec.Store(r)
			}
			a.repl[ent.Role] = m
		}
		accepted = append(accepted, m)
	}
	// Members in the role table that did not come: remembered as faulty, so
	// they can be re-added later with a bitmap resync.
	for _, d := range fresh.Devices {
		if _, here := seen[d.UUID]; here || d.Role == RoleSpare {
			continue
		}
		if d.Role >= 0 {
			d.Slot, d.Role = d.Role, RoleFaulty
		}
		a.absent = append(a.absent, d)
	}
	if !g.Survives(a.slotOutLocked) {
		return nil, assembleError(fmt.Sprintf("%s %q cannot start: not enough in-sync members", g.Level, a.name), problems)
	}
	degraded := false
	for i := range a.slots {
		degraded = degraded || a.slotOutLocked(i)
	}
	if dirty && degraded && g.ParityChunks() > 0 && !o.Force {
		return nil, assembleError(fmt.Sprintf("%s %q is dirty and degraded: data written by interrupted writes may be either version; start it with force", g.Level, a.name), problems)
	}
	a.leftOut = problems

	a.bm = newBitmap(a.lay.bitmapBits(g), a.lay.StripesPerBit, a.lay.BitmapPages)
	devs := make([]blockdev.Device, len(accepted))
	for i, m := range accepted {
		devs[i] = m.dev
	}
	a.bm.readFrom(devs, a.lay, a.uuid)
	if g.ParityChunks() > 0 {
		a.jr = newJournal(a.lay)
		var present []*member
		for _, m := range accepted {
			if m.role >= 0 {
				present = append(present, m)
			}
		}
		n, err := a.replayJournal(present)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			o.Logger.Warn("raid: replayed journal after unclean shutdown", "array", a.name, "entries", n)
		}
	}
	if dirty && !a.bm.bits.empty() {
		a.resync.Store(&resyncState{pending: a.bm.bits.clone(), crcOnly: degraded})
	}
	a.mu.Lock()
	a.clean = false
	err = a.writeSuperblocksLocked(true)
	a.writeBitmapLocked(nil)
	a.mu.Unlock()
	if err != nil {
		return nil, err
	}
	a.jobs = newJobRunner(a, !o.NoBackground)
	if o.WriteBehind > 0 {
		a.wb = newWriteBehind(a, o.WriteBehind)
	}
	if o.ReadAhead > 0 {
		a.ra = newReadAhead(a, o.ReadAhead)
	}
	if o.Registerer != nil {
		a.metrics = newMetrics(a)
		if err := o.Registerer.Register(a.metrics); err != nil {
			o.Logger.Warn("raid: metrics not registered", "array", a.name, "err", err)
			a.metrics = nil
		}
	}
	for _, p := range problems {
		o.Logger.Warn("raid: member left out", "array", a.name, "member", p.Name, "reason", p.Err)
	}
	if degraded {
		a.emit(events.RaidDegradedArray, fmt.Sprintf("assembled degraded: %d of %d slots in sync", g.Members-countTrue(g.Members, a.slotOutLocked), g.Members), nil)
	}
	o.Logger.Info("raid: assembled", "array", a.name, "level", g.Level.String(), "members", len(accepted), "degraded", degraded, "resync", a.resync.Load() != nil)
	a.jobs.kick()
	return a, nil
}

// candidates reads the superblocks of the offered members, keeps those of
// the wanted array and returns the freshest superblock.
func candidates(offered []Member, ao AssembleOptions) ([]candidate, *superblock, []MemberProblem, error) {
	var problems []MemberProblem
	var cands []candidate
	want := ao.UUID
	for _, m := range offered {
		sb, seq, err := readSuperblock(m.Dev)
		if err != nil {
			problems = append(problems, MemberProblem{Name: m.Name, Err: err})
			continue
		}
		if want == nil && (ao.Name == "" || ao.Name == sb.Name) {
			u := sb.Array
			want = &u
		}
		if sb.Array != *wantOr(want) {
			problems = append(problems, MemberProblem{Name: m.Name, Err: fmt.Errorf("belongs to another array (%q %s)", sb.Name, sb.Array)})
			continue
		}
		cands = append(cands, candidate{m, sb, seq})
	}
	if len(cands) == 0 {
		return nil, nil, problems, assembleError("no member of the array found", problems)
	}
	fresh := cands[0].sb
	for _, c := range cands {
		if c.sb.Events > fresh.Events {
			fresh = c.sb
		}
	}
	return cands, fresh, problems, nil
}

func wantOr(u *UUID) *UUID {
	if u == nil {
		return &UUID{}
	}
	return u
}

func countTrue(n int, f func(int) bool) int {
	c := 0
	for i := 0; i < n; i++ {
		if f(i) {
			c++
		}
	}
	return c
}

func assembleError(msg string, problems []MemberProblem) error {
	errs := []error{errors.New("raid: " + msg)}
	for _, p := range problems {
		errs = append(errs, p)
	}
	return errors.Join(errs...)
}

// LeftOut lists the members offered to Assemble that were not used.
func (a *Array) LeftOut() []MemberProblem { return a.leftOut }

// Inspect describes an array from the superblocks of the members offered,
// without opening it or writing anything (status of an array not served).
func Inspect(offered []Member, ao AssembleOptions) (Status, []MemberProblem, error) {
	cands, fresh, problems, err := candidates(offered, ao)
	if err != nil {
		return Status{}, problems, err
	}
	g := fresh.Geometry
	st := Status{Name: fresh.Name, UUID: fresh.Array.String(), Level: g.Level.String(), Chunk: g.Chunk, Size: g.Size(),
		Slots: g.Members, Events: fresh.Events, Checksums: fresh.checksums(), Regions: fresh.Layout.bitmapBits(g)}
	if g.Layout != LayoutDefault {
		st.Layout = g.Layout.String()
	}
	names := map[UUID]string{}
	for _, c := range cands {
		if c.sb.Events+1 >= fresh.Events {
			names[c.sb.Dev] = c.Name
		} else {
			problems = append(problems, MemberProblem{Name: c.Name, Err: fmt.Errorf("stale: event counter %d, array at %d", c.sb.Events, fresh.Events)})
		}
	}
	dirty := false
	var devs []blockdev.Device
	for _, c := range cands {
		if d, ok := fresh.device(c.sb.Dev); ok && d.Role != RoleFaulty && c.sb.Events+1 >= fresh.Events {
			dirty = dirty || !c.sb.Clean
			devs = append(devs, c.Dev)
		}
	}
	// What Assemble will find: the set bits, resynced if the array was not
	// stopped cleanly (killed mid-write, or created and not yet synced).
	bm := newBitmap(fresh.Layout.bitmapBits(g), fresh.Layout.StripesPerBit, fresh.Layout.BitmapPages)
	bm.readFrom(devs, fresh.Layout, fresh.Array)
	st.DirtyRegions = bm.bits.count()
	if dirty {
		st.ResyncPending = st.DirtyRegions
	}
	slots := make([]*MemberStatus, g.Members)
	rebuilding := false
	for _, d := range fresh.Devices {
		name, here := names[d.UUID]
		if !here {
			continue
		}
		switch {
		case d.Role == RoleSpare:
			st.Members = append(st.Members, MemberStatus{Name: name, Slot: -1, State: "spare"})
		case d.Role == RoleFaulty:
			st.Members = append(st.Members, MemberStatus{Name: name, Slot: -1, State: "faulty"})
		case int(d.Role) < g.Members:
			state := "in_sync"
			if d.Recovery >= 0 {
				state, rebuilding = "rebuilding", true
			} else {
				st.InSync++
			}
			if slots[d.Role] != nil {
				state = "replacing"
			}
			ms := MemberStatus{Name: name, Slot: int(d.Role), State: state}
			if slots[d.Role] == nil {
				slots[d.Role] = &ms
			} else {
				st.Members = append(st.Members, ms)
			}
		}
	}
	var out []MemberStatus
	for i, s := range slots {
		if s == nil {
			out = append(out, MemberStatus{Name: "(missing)", Slot: i, State: "missing"})
		} else {
			out = append(out, *s)
		}
	}
	st.Members = append(out, st.Members...)
	switch {
	case !g.Survives(func(i int) bool {
		return slots[i] == nil || slots[i].State != "in_sync" && slots[i].State != "replacing"
	}):
		st.State = "failed"
	case rebuilding:
		st.State = "rebuilding"
	case st.InSync < g.Members:
		st.State = "degraded"
	case dirty:
		st.State = "active" // not stopped cleanly, or in use
	default:
		st.State = "clean"
	}
	return st, problems, nil
}
