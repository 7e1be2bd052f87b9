package raid

import (
	"encoding/binary"
	"errors"
	"fmt"

	"tandem/internal/events"
)

// ErrNoMember is returned when a named member is not in the array.
var ErrNoMember = errors.New("raid: no such member")

// ErrLastCopy is returned by Fail for a member without which the array
// would fail (mdadm --fail refuses such a member too).
var ErrLastCopy = errors.New("raid: refusing to fail the member")

func (a *Array) findLocked(name string) *member {
	for _, list := range [][]*member{a.slots, a.repl, a.spares, a.faulty} {
		for _, m := range list {
			if m != nil && m.name == name {
				return m
			}
		}
	}
	return nil
}

// Fail marks a member faulty, as an I/O error would (mdadm --fail). A spare
// takes its slot if there is one.
func (a *Array) Fail(name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.findLocked(name)
	if m == nil {
		return fmt.Errorf("%w: %s", ErrNoMember, name)
	}
	if m.role == RoleFaulty {
		return nil
	}
	if slot := int(m.role); slot >= 0 && a.slots[slot] == m && !a.geo.Survives(func(i int) bool { return i == slot || a.slotOutLocked(i) }) {
		// As md refuses (EBUSY): the array would fail and every reader and
		// writer get errors; an I/O error still fails the member.
		return fmt.Errorf("%w: %s holds the last copy of some of %s's data", ErrLastCopy, name, a.name)
	}
	a.failMemberLocked(m, errors.New("failed by administrator"))
	return a.writeSuperblocksLocked(true)
}

// Remove takes a faulty or spare member out of the array and closes its
// device (mdadm --remove). Active members must be failed first.
func (a *Array) Remove(name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.findLocked(name)
	if m == nil {
		// A faulty member left out at assembly is already detached; its
		// role table entry stays so it can be re-added with a bitmap resync.
		for _, p := range a.leftOut {
			for _, d := range a.absent {
				if p.Name == name && d.UUID == p.dev {
					return nil
				}
			}
		}
		return fmt.Errorf("%w: %s", ErrNoMember, name)
	}
	switch m.role {
	case RoleFaulty:
		for i, f := range a.faulty {
			if f == m {
				a.faulty = append(a.faulty[:i], a.faulty[i+1:]...)
				break
			}
		}
		// Remember it: it may come back with add and resync only what it missed.
		a.absent = append(a.absent, devEntry{UUID: m.uuid, Role: RoleFaulty, Slot: m.lastSlot, Recovery: -1})
	case RoleSpare:
		for i, s := range a.spares {
			if s == m {
				a.spares = append(a.spares[:i], a.spares[i+1:]...)
				break
			}
		}
	default:
		return fmt.Errorf("raid: member %s is active; fail it first", name)
	}
	err := a.writeSuperblocksLocked(true)
	m.dev.Close()
	a.emit(events.AdminAction, fmt.Sprintf("member %s removed", name), map[string]any{"member": name})
	return err
}

// Add adds a device. A former member whose slot is still empty and that was
// in sync when it left is re-added and resyncs only the regions written
// since (the bitmap); any other device becomes a spare, taken at once if a
// slot is empty.
func (a *Array) Add(nm Member) error {
	if nm.Dev.Size() < a.lay.DataOff+a.lay.MemberData {
		return fmt.Errorf("raid: member %s: too small: %d bytes, array needs %d", nm.Name, nm.Dev.Size(), a.lay.DataOff+a.lay.MemberData)
	}
	sb, seq, _ := readSuperblock(nm.Dev)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || a.failed {
		return ErrFailed
	}
	if a.findLocked(nm.Name) != nil && a.findLocked(nm.Name).role != RoleFaulty {
		return fmt.Errorf("raid: member %s is already in the array", nm.Name)
	}
	m := &member{id: a.nextID(), name: nm.Name, dev: nm.Dev, lay: a.lay, role: RoleSpare, lastSlot: -1}
	if a.checksums {
		m.crc = &crcTable{m: m, seed: a.uuid, pages: map[int64]*crcPage{}}
	}
	readd := -1
	if sb != nil && sb.Array == a.uuid {
		for _, lm := range a.liveMembersLocked() {
			if lm.uuid == sb.Dev {
				return fmt.Errorf("raid: member %s is already in the array as %s", nm.Name, lm.name)
			}
		}
		m.sbSeq = seq
		readd = a.takeFormerLocked(sb.Dev)
	}
	if readd >= 0 && a.slots[readd] == nil {
		m.uuid, m.role, m.lastSlot = sb.Dev, int32(readd), int32(readd)
		a.bm.mu.Lock()
		only := a.bm.bits.clone()
		a.bm.mu.Unlock()
		r := &recovery{spb: a.lay.StripesPerBit, only: only, readd: true}
		m.rec.Store(r)
		a.slots[readd] = m
		a.log.Info("raid: member re-added; resyncing regions written meanwhile", "array", a.name, "member", nm.Name, "slot", readd, "regions", only.count())
	} else {
		m.uuid = newUUID()
		a.spares = append(a.spares, m)
		a.log.Info("raid: spare added", "array", a.name, "member", nm.Name)
	}
	a.writeBitmapLocked([]*member{m})
	if a.jr != nil {
		// Entries an old journal on this device may hold are not ours to replay.
		a.jr.mu.Lock()
		cp := a.jr.written
		a.jr.cpSeq++
		cps := a.jr.cpSeq
		a.jr.mu.Unlock()
		payload := make([]byte, 8)
		binary.LittleEndian.PutUint64(payload, cp)
		if err := writeMetaPage(m, a.uuid, a.lay.JournalOff, checkpointKind, 0, cps, payload); err != nil {
			return err
		}
	}
	err := a.writeSuperblocksLocked(true)
	a.emit(events.AdminAction, fmt.Sprintf("member %s added", nm.Name), map[string]any{"member": nm.Name, "readd": readd >= 0})
	a.jobs.kick()
	return err
}

// takeFormerLocked forgets a former member's entry and returns the slot it
// may be re-added to, or -1.
func (a *Array) takeFormerLocked(dev UUID) int {
	for i, d := range a.absent {
		if d.UUID == dev {
			a.absent = append(a.absent[:i], a.absent[i+1:]...)
			if d.Recovery < 0 {
				return int(d.Slot)
			}
			return -1
		}
	}
	for i, f := range a.faulty {
		if f.uuid == dev {
			a.faulty = append(a.faulty[:i], a.faulty[i+1:]...)
			if f.rec.Load() == nil {
				return int(f.lastSlot)
			}
			return -1
		}
	}
	return -1
}

func (a *Array) nextID() int {
	n := 0
	for _, list := range [][]*member{a.slots, a.repl, a.spares, a.faulty} {
		for _, m := range list {
			if m != nil {
				n = max(n, m.id+1)
			}
		}
	}
	return n
}

// Replace builds nm as a copy of the active member old while old stays in
// service (redundancy is never reduced); when the copy completes, old is
// marked faulty and can be removed (mdadm --replace --with).
func (a *Array) Replace(old string, nm Member) error {
	if nm.Dev.Size() < a.lay.DataOff+a.lay.MemberData {
		return fmt.Errorf("raid: member %s: too small: %d bytes, array needs %d", nm.Name, nm.Dev.Size(), a.lay.DataOff+a.lay.MemberData)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	om := a.findLocked(old)
	if om == nil {
		return fmt.Errorf("%w: %s", ErrNoMember, old)
	}
	if om.role < 0 || a.slots[om.role] != om || om.rec.Load() != nil {
		return fmt.Errorf("raid: member %s is not an in-sync active member", old)
	}
	slot := int(om.role)
	if a.repl[slot] != nil {
		return fmt.Errorf("raid: member %s is already being replaced by %s", old, a.repl[slot].name)
	}
	if a.findLocked(nm.Name) != nil {
		return fmt.Errorf("raid: member %s is already in the array", nm.Name)
	}
	m := &member{id: a.nextID(), name: nm.Name, dev: nm.Dev, uuid: newUUID(), lay: a.lay, role: int32(slot), lastSlot: int32(slot)}
	if a.checksums {
		m.crc = &crcTable{m: m, seed: a.uuid, pages: map[int64]*crcPage{}}
	}
	m.rec.Store(&recovery{spb: a.lay.StripesPerBit})
	a.repl[slot] = m
	a.writeBitmapLocked([]*member{m})
	err := a.writeSuperblocksLocked(true)
	a.emit(events.AdminAction, fmt.Sprintf("replacing %s with %s", old, nm.Name), map[string]any{"member": old, "with": nm.Name})
	a.jobs.kick()
	return err
}
