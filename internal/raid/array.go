package raid

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"tandem/internal/blockdev"
	"tandem/internal/events"
	"tandem/internal/metapage"
)

// Member names a device offered to Create, Assemble or Add: Name (a path,
// usually) is what errors and status show.
type Member struct {
	Name string
	Dev  blockdev.Device
}

// ErrFailed is returned by I/O on an array that lost more members than its
// level survives.
var ErrFailed = errors.New("raid: array has failed: too many members lost")

// ErrClosed is returned by I/O after Close.
var ErrClosed = errors.New("raid: array is closed")

// Array is an open RAID array. It is a blockdev.Device; all methods are safe
// for concurrent use.
type Array struct {
	name      string
	uuid      UUID
	geo       Geometry
	lay       diskLayout
	checksums bool
	created   time.Time
	opts      Options
	log       *slog.Logger

	mu      sync.RWMutex // the member table below
	slots   []*member
	repl    []*member
	spares  []*member
	faulty  []*member
	absent  []devEntry // members of the role table not present
	leftOut []MemberProblem
	events  uint64
	clean   bool // what the superblocks say
	failed  bool
	closed  bool
	flushMu sync.Mutex

	locks   rangeLock
	bm      *bitmap
	jr      *journal // nil without parity
	resync  atomic.Pointer[resyncState]
	jobs    *jobRunner
	stats   arrayStats
	metrics *metrics
	wb      *writeBehind // nil when Options.WriteBehind < 0
	ra      *readAhead   // nil when Options.ReadAhead < 0
}

type arrayStats struct {
	mismatches    atomic.Int64 // stripes found inconsistent by the last check
	repaired      atomic.Int64 // blocks rewritten after a checksum failure
	readErrors    atomic.Int64
	checkedStripe atomic.Int64
}

// resyncState is the set of bitmap regions whose redundancy is not known to
// agree with the data (after a crash, or since create). Reads there trust
// the data and skip checksums; the resync job recomputes parity, mirrors
// and checksums and removes regions from the set as it goes.
type resyncState struct {
	mu      sync.Mutex
	pending bitset
	crcOnly bool // degraded: only checksums of present members can be redone
}

func (r *resyncState) has(region int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pending.has(region)
}

// pendingAt reports whether stripe s awaits resync.
func (a *Array) pendingAt(s int64) bool {
	r := a.resync.Load()
	return r != nil && r.has(s/a.lay.StripesPerBit)
}

func newUUID() UUID {
	var u UUID
	rand.Read(u[:])
	return u
}

// usedZone is how much of a member's start is looked at before it is
// overwritten: where partition tables and the superblocks of file systems,
// LVM and md (1.1/1.2) live.
const usedZone = 64 << 10

// Claimable says whether m may be written over as a member of the array
// own (the zero UUID: a new array). It may not when its superblock belongs
// to another array, when it holds a replicated volume's metadata, or when it
// has no superblock and its first 64 KiB hold anything but zeros (a file
// system, a partition table; mdadm warns the same way).
// A new file or a wiped disk is all zeros. Callers let "force" skip it.
func Claimable(m Member, own UUID) error {
	if sb, _, err := readSuperblock(m.Dev); err == nil {
		if sb.Array == own {
			return nil
		}
		return fmt.Errorf("raid: member %s already belongs to array %q (%s); use force to overwrite it", m.Name, sb.Name, sb.Array)
	}
	if holdsVolume(m.Dev) {
		return fmt.Errorf("raid: member %s holds a replicated volume's metadata (at its end); use force to overwrite it", m.Name)
	}
	buf := blockdev.AlignedBuffer(int(min(usedZone, m.Dev.Size())))
	n, _ := m.Dev.ReadAt(buf, 0) // unreadable: the superblock writes will say so
	for i, b := range buf[:n] {
		if b != 0 {
			return fmt.Errorf("raid: member %s holds data (a byte at offset %d is not zero: a file system, a partition table?); use force to overwrite it", m.Name, i)
		}
	}
	return nil
}

// holdsVolume reports whether d's last 8 KiB hold a replicated volume's
// superblock (internal/volume/meta): a disk that backs a volume, or holds
// its metadata, is not free even when its first 64 KiB are zeros.
func holdsVolume(d blockdev.Device) bool {
	end := d.Size() / BlockSize * BlockSize
	if end < 2*BlockSize {
		return false
	}
	buf := blockdev.AlignedBuffer(2 * BlockSize)
	if _, err := d.ReadAt(buf, end-2*BlockSize); err != nil {
		return false
	}
	_, _, ok := metapage.Pick(buf[:BlockSize], buf[BlockSize:], [16]byte{}, metapage.VolumeSuperblock, 0)
	return ok
}

// Create writes a new array on members (and spares) and opens it. Nothing is
// written unless every check passes: level and member count, duplicates,
// member sizes, and members that already carry an array or other data in
// their first 64 KiB (unless Force).
// The array starts with every region marked for resync; it is usable at
// once while the resync computes parity and checksums in the background.
func Create(members, spares []Member, co CreateOptions, o Options) (*Array, error) {
	co = co.withDefaults()
	o = o.withDefaults()
	g := Geometry{Level: co.Level, Layout: co.Layout, Members: len(members), Chunk: co.Chunk}.Normalize()
	var errs []error
	if len(co.Name) > nameLen {
		errs = append(errs, fmt.Errorf("raid: name %q longer than %d bytes", co.Name, nameLen))
	}
	all := append(append([]Member(nil), members...), spares...)
	if len(all) > maxDevices {
		errs = append(errs, fmt.Errorf("raid: %d devices, at most %d", len(all), maxDevices))
	}
	seen := map[string]bool{}
	devs := map[blockdev.Device]string{}
	minSize, minName := int64(-1), ""
	for _, m := range all {
		if seen[m.Name] {
			errs = append(errs, fmt.Errorf("raid: member %s given twice", m.Name))
			continue
		}
		if prev, ok := devs[m.Dev]; ok {
			errs = append(errs, fmt.Errorf("raid: member %s is the same device as %s", m.Name, prev))
			continue
		}
		seen[m.Name], devs[m.Dev] = true, m.Name
		if minSize < 0 || m.Dev.Size() < minSize {
			minSize, minName = m.Dev.Size(), m.Name
		}
		if !co.Force {
			if err := Claimable(m, UUID{}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if g.Level != Raid0 && g.Level != Raid1 && g.Level != Raid5 && g.Level != Raid6 && g.Level != Raid10 {
		errs = append(errs, fmt.Errorf("raid: unknown level %d", int(g.Level)))
	}
	var lay diskLayout
	if len(errs) == 0 {
		var err error
		lay, err = planLayout(layoutParams{Geometry: g, MemberSize: minSize, BitmapChunk: co.BitmapChunk, JournalSize: co.JournalSize, Checksums: !co.NoChecksums})
		if err != nil {
			errs = append(errs, fmt.Errorf("member %s: %w", minName, err))
		}
		g.MemberData = lay.MemberData
		if err := g.Validate(); err != nil {
			errs = append(errs, err)
		}
		for _, m := range all {
			if m.Dev.Size() > minSize+minSize/100 {
				o.Logger.Warn("raid: member larger than the smallest; the excess is unused", "member", m.Name, "size", m.Dev.Size(), "used", minSize)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	now := o.Clock.Now()
	sb := &superblock{Array: newUUID(), Name: co.Name, Geometry: g, Layout: lay, Events: 1, MemberSize: minSize, Created: now, Updated: now}
	if !co.NoChecksums {
		sb.Flags |= flagChecksums
	}
	var ms []*member
	for i, m := range all {
		mm := &member{name: m.Name, dev: m.Dev, uuid: newUUID(), lay: lay, role: RoleSpare, lastSlot: -1}
		if i < len(members) {
			mm.role, mm.lastSlot = int32(i), int32(i)
		}
		sb.Devices = append(sb.Devices, devEntry{UUID: mm.uuid, Role: mm.role, Slot: mm.lastSlot, Recovery: -1})
		ms = append(ms, mm)
	}
	// Every region starts dirty: the initial resync makes parity and
	// checksums agree with whatever the members held.
	bm := newBitmap(lay.bitmapBits(g), lay.StripesPerBit, lay.BitmapPages)
	for r := int64(0); r < bm.nbits && !co.AssumeClean; r++ {
		bm.bits.set(r)
	}
	errs2 := parallel(len(ms), func(i int) error {
		m := ms[i]
		if err := writeMemberSuperblock(m, sb); err != nil {
			return err
		}
		for p := int64(0); p < lay.BitmapPages; p++ {
			if err := writeMetaPage(m, sb.Array, lay.BitmapOff, bitmapKind, p, 1, bm.pagePayload(p)); err != nil {
				return err
			}
		}
		if lay.JournalSize > 0 {
			if err := writeMetaPage(m, sb.Array, lay.JournalOff, checkpointKind, 0, 1, make([]byte, 8)); err != nil {
				return err
			}
		}
		if err := m.dev.Flush(); err != nil {
			return m.errorf("flush: %w", err)
		}
		return nil
	})
	if err := errors.Join(errs2...); err != nil {
		return nil, err
	}
	o.Logger.Info("raid: created", "name", co.Name, "uuid", sb.Array.String(), "level", g.Level.String(), "members", len(members), "spares", len(spares), "size", g.Size())
	return Assemble(all, AssembleOptions{UUID: &sb.Array}, o)
}

// writeMemberSuperblock writes sb with m's own identity and role.
func writeMemberSuperblock(m *member, sb *superblock) error {
	own := *sb
	own.Dev, own.Role = m.uuid, m.role
	m.sbSeq++
	buf := alignedBuf(BlockSize)
	defer freeBuf(buf)
	encodePage(buf, UUID{}, sbKind, 0, m.sbSeq, own.encode())
	if _, err := m.dev.WriteAt(buf, pageSlot(m.sbSeq)*BlockSize); err != nil {
		return m.errorf("write superblock: %w", err)
	}
	return nil
}

func writeMetaPage(m *member, seed UUID, base int64, kind [4]byte, index int64, seq uint64, payload []byte) error {
	buf := alignedBuf(BlockSize)
	defer freeBuf(buf)
	encodePage(buf, seed, kind, uint32(index), seq, payload)
	if _, err := m.dev.WriteAt(buf, base+(2*index+pageSlot(seq))*BlockSize); err != nil {
		return m.errorf("write %s page %d: %w", kind[:], index, err)
	}
	return nil
}

// readSuperblock reads the newest valid superblock of d and its page seq.
func readSuperblock(d blockdev.Device) (*superblock, uint64, error) {
	if d.Size() < 2*BlockSize {
		return nil, 0, errors.New("raid: device too small for a superblock")
	}
	buf := alignedBuf(2 * BlockSize)
	defer freeBuf(buf)
	if _, err := d.ReadAt(buf, 0); err != nil {
		return nil, 0, fmt.Errorf("raid: read superblock: %w", err)
	}
	seq, payload, ok := pickPage(buf[:BlockSize], buf[BlockSize:], UUID{}, sbKind, 0)
	if !ok {
		return nil, 0, errNoSuperblock
	}
	sb, err := decodeSuperblock(payload)
	return sb, seq, err
}

var errNoSuperblock = errors.New("raid: no tandem superblock")

// Name returns the array's name.
func (a *Array) Name() string { return a.name }

// UUID returns the array's identity.
func (a *Array) UUID() UUID { return a.uuid }

// Geometry returns the stripe mapping.
func (a *Array) Geometry() Geometry { return a.geo }

// Size is the usable size in bytes.
func (a *Array) Size() int64 { return a.geo.Size() }

func (a *Array) emit(kind events.Kind, msg string, attrs map[string]any) {
	a.opts.Events.Publish(events.Event{Time: a.opts.Clock.Now(), Kind: kind, Node: a.opts.Node, Subject: a.name, Message: msg, Attrs: attrs})
}

// view snapshots the member table.
func (a *Array) view() (*view, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return nil, ErrClosed
	}
	if a.failed {
		return nil, ErrFailed
	}
	return &view{slot: append([]*member(nil), a.slots...), repl: append([]*member(nil), a.repl...)}, nil
}

// liveMembersLocked lists every member that metadata is written to.
func (a *Array) liveMembersLocked() []*member {
	var out []*member
	for _, list := range [][]*member{a.slots, a.repl, a.spares} {
		for _, m := range list {
			if m.usable() {
				out = append(out, m)
			}
		}
	}
	return out
}

// degradedLocked reports whether some slot lacks an in-sync member.
// slotOutLocked reports whether slot i holds no in-sync copy: empty,
// failed, or still (or no longer) being rebuilt.
func (a *Array) slotOutLocked(i int) bool {
	return !a.slots[i].usable() || a.slots[i].rec.Load() != nil
}

func (a *Array) degradedLocked() bool {
	for i := range a.slots {
		if a.slotOutLocked(i) || a.repl[i] != nil {
			return true
		}
	}
	return false
}

// superblockLocked builds the superblock describing the current state.
func (a *Array) superblockLocked() *superblock {
	sb := &superblock{Array: a.uuid, Name: a.name, Geometry: a.geo, Layout: a.lay, Events: a.events, Clean: a.clean,
		MemberSize: 0, Created: a.created, Updated: a.opts.Clock.Now()}
	if a.checksums {
		sb.Flags |= flagChecksums
	}
	add := func(m *member) {
		rec := int64(-1)
		if r := m.rec.Load(); r != nil {
			rec = r.pos.Load()
			if r.only != nil {
				rec = 0 // a partial (bitmap) rebuild restarts from scratch if interrupted
			}
		}
		role := m.role
		if m.failed.Load() {
			role = RoleFaulty
		}
		sb.Devices = append(sb.Devices, devEntry{UUID: m.uuid, Role: role, Slot: m.lastSlot, Recovery: rec})
	}
	for _, list := range [][]*member{a.slots, a.repl, a.spares, a.faulty} {
		for _, m := range list {
			if m != nil {
				add(m)
			}
		}
	}
	for _, d := range a.absent {
		if len(sb.Devices) < maxDevices {
			sb.Devices = append(sb.Devices, d)
		}
	}
	return sb
}

// writeSuperblocksLocked bumps the event counter when bump is set and
// writes the superblock to every live member, then syncs them. Members that
// fail the write are marked faulty and the write is repeated without them.
func (a *Array) writeSuperblocksLocked(bump bool) error {
	if bump {
		a.events++
	}
	for {
		sb := a.superblockLocked()
		ms := a.liveMembersLocked()
		errs := parallel(len(ms), func(i int) error {
			if err := writeMemberSuperblock(ms[i], sb); err != nil {
				return err
			}
			if err := ms[i].dev.Flush(); err != nil {
				return ms[i].errorf("flush: %w", err)
			}
			return nil
		})
		again := false
		for i, err := range errs {
			if err != nil {
				a.failMemberLocked(ms[i], err)
				again = true
			}
		}
		if !again {
			return nil
		}
		if a.failed {
			return ErrFailed
		}
		a.events++
	}
}

// failMemberLocked takes m out of service: faulty in the role table, its
// slot empty (a spare is taken by the job runner), events published.
func (a *Array) failMemberLocked(m *member, cause error) {
	if m.failed.Swap(true) && m.role == RoleFaulty {
		return
	}
	for i := range a.slots {
		if a.slots[i] == m {
			// A replacement in progress takes the slot and goes on as an
			// ordinary rebuild, now from the other members.
			a.slots[i], a.repl[i] = a.repl[i], nil
		}
		if a.repl[i] == m {
			a.repl[i] = nil
		}
	}
	for i, s := range a.spares {
		if s == m {
			a.spares = append(a.spares[:i], a.spares[i+1:]...)
			break
		}
	}
	m.role = RoleFaulty
	a.faulty = append(a.faulty, m)
	a.log.Error("raid: member failed", "array", a.name, "member", m.name, "err", cause)
	a.emit(events.RaidFail, fmt.Sprintf("member %s failed: %v", m.name, cause), map[string]any{"member": m.name, "error": fmt.Sprint(cause)})
	if !a.geo.Survives(a.slotOutLocked) {
		a.failed = true
		a.log.Error("raid: array failed", "array", a.name)
	}
	if a.degradedLocked() && !a.failed {
		a.emit(events.RaidDegradedArray, "array is degraded", map[string]any{"member": m.name})
	}
	if a.jobs != nil {
		a.jobs.kick()
	}
}

// memberFailed is failMemberLocked for callers that do not hold a.mu: it
// also persists the new role table.
func (a *Array) memberFailed(m *member, cause error) {
	if m.failed.Load() {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if m.failed.Load() {
		return
	}
	a.failMemberLocked(m, cause)
	if !a.closed {
		a.writeSuperblocksLocked(true)
	}
}
