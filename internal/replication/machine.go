package replication

import (
	"fmt"
	"slices"
	"time"
)

// connState is the connection to the peer as the machine sees it.
type connState uint8

const (
	// connStandAlone: not connecting (admin disconnect, split brain,
	// unrelated data); only Connect leaves it.
	connStandAlone connState = iota
	// connWaiting: the link is down and the adapter keeps trying.
	connWaiting
	// connHandshake: the link is up; hellos are being exchanged.
	connHandshake
	// connEstablished: a decision was taken; see syncState.
	connEstablished
)

var connNames = [...]string{"StandAlone", "Connecting", "Handshake", "Connected"}

func (c connState) String() string { return connNames[c] }

type syncState uint8

const (
	syncNone         syncState = iota
	syncSourceBitmap           // Bitmap sent, waiting for the target's BitmapAck
	syncSource                 // moving regions
	syncSourceDone             // ResyncDone sent, waiting for its ack
	syncTargetBitmap           // waiting for the source's Bitmap
	syncTarget                 // receiving regions
)

// Machine is the replication state machine of one volume on one node. Feed
// it client requests, local I/O completions, peer frames, link changes,
// fencer results, admin commands and the time; take its actions with
// Actions and carry them out in order. It is not safe for concurrent use.
type Machine struct {
	cfg  Config
	meta Meta
	role Role
	// disk is the in-memory disk state; meta.Disk is what is durable
	// (a detached disk is Diskless here and Inconsistent there).
	disk           DiskState
	crashedPrimary bool
	deposed        bool
	// supersededAt is the newest epoch the cluster gave the group to the
	// peer at (Depose): in memory only, it refuses a promotion at an
	// older epoch and nothing else.
	supersededAt Epoch
	demoting     bool
	dirty        *Bitmap
	al           *actLog

	conn      connState
	sync      syncState
	linkUp    bool
	helloSent *Hello
	peerHello *Hello
	peerDisk  DiskState
	peerRole  Role
	// peerFenced: the peer cannot be promoted without the writes this
	// primary acknowledges alone (the fencer outdated it, it is a sync
	// target, it detached or said it is not UpToDate).
	peerFenced  bool
	discardNode string
	sendSeq     uint64
	refusing    *refusal // a refused handshake waits for the peer's refusal
	peerRefused bool     // the peer's FrameRefuse came first

	fenceOut     bool // a Fence action awaits FenceDone
	fenceRetryAt time.Time
	suspended    bool // last Suspend/Resume told

	ahead   bool
	lag     map[uint64]lagEntry // async: data frames not yet acknowledged
	lagSize int64

	queue    []*item          // local operations not started, in arrival order
	active   []*item          // started, not done
	ops      map[uint64]*item // started local operations by action ID
	peerOps  map[uint64]*item // operations waiting for the peer, by frame Seq
	clients  []*item          // client requests not yet completed, in arrival order
	session  uint64           // bumped at every LinkUp
	nextID   uint64
	itemSeq  uint64
	tick     uint64
	flushing *item // the internal flush in progress

	localFlushed, peerFlushed, peerSafe uint64
	// sentAt: regions written to the peer since its last acknowledged
	// flush, and when; marked dirty if the link drops.
	sentAt map[int]uint64

	rs       *resync
	vf       *verify
	tokens   float64 // resync and verify rate limiter: allowance in bytes
	tokensAt time.Time

	now time.Time // of the input being handled
	out []Action
}

type lagEntry struct {
	bytes int64
	at    time.Time
}

// New returns the machine of a replica whose durable state is p, at now.
// A replica found with Meta.Primary set crashed as primary: its
// activity-log extents are folded into the dirty bitmap.
func New(cfg Config, p Persisted, now time.Time) (*Machine, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Machine{
		cfg: cfg, meta: p.Meta, disk: p.Meta.Disk, dirty: NewBitmap(cfg.Regions()),
		al: newActLog(cfg.ALExtents), conn: connWaiting, peerDisk: Diskless,
		lag: map[uint64]lagEntry{}, ops: map[uint64]*item{}, peerOps: map[uint64]*item{},
		sentAt: map[int]uint64{},
	}
	if m.meta.GenIDs.Current == 0 {
		m.meta.GenIDs.Current = JustCreated
	}
	for _, rr := range p.Dirty {
		for r := max(rr.First, 0); r < rr.First+rr.N && r < m.dirty.Len(); r++ {
			m.dirty.Set(r)
		}
	}
	if p.Meta.Primary {
		m.crashedPrimary = true
		var regions []int
		for _, e := range p.Active {
			for r := e * cfg.ExtentRegions; r < (e+1)*cfg.ExtentRegions && r < m.dirty.Len(); r++ {
				regions = append(regions, r)
			}
		}
		m.setBits(regions)
		if len(p.Active) > 0 {
			m.emit(ALEnd{Extents: p.Active})
		}
	}
	return m, nil
}

// Actions returns and clears what the machine asks for, in order.
func (m *Machine) Actions() []Action {
	a := m.out
	m.out = nil
	return a
}

func (m *Machine) emit(a Action) { m.out = append(m.out, a) }

func (m *Machine) event(e Event) { m.emit(e) }

func (m *Machine) persist() { m.emit(Persist{Meta: m.meta}) }

func (m *Machine) send(f Frame) {
	m.sendSeq++
	f.Volume, f.Epoch, f.Seq = m.cfg.Volume, m.meta.Epoch, m.sendSeq
	m.emit(Send{Frame: f})
}

func (m *Machine) newID() uint64 {
	m.nextID++
	return m.nextID
}

// setBits marks regions dirty, emitting only the new ones.
func (m *Machine) setBits(regions []int) {
	var fresh []int
	for _, r := range regions {
		if m.dirty.Set(r) {
			fresh = append(fresh, r)
		} else if m.rs != nil && m.rs.inflight[r] {
			m.rs.redirty[r] = true // its resync read may predate this write
		}
	}
	if len(fresh) > 0 {
		slices.Sort(fresh)
		m.emit(SetBits{Ranges: rangesOf(fresh)})
	}
}

// clearBits clears regions (sorted) in the dirty bitmap, emitting one
// ClearBits for those that were set.
func (m *Machine) clearBits(regions []int) {
	var cleared []int
	for _, r := range regions {
		if m.dirty.Clear(r) {
			cleared = append(cleared, r)
		}
	}
	if len(cleared) > 0 {
		m.emit(ClearBits{Ranges: rangesOf(cleared)})
	}
}

// regions lists the regions [off, off+n) touches.
func (m *Machine) regions(off, n int64) []int {
	if n <= 0 {
		return nil
	}
	first, last := int(off/m.cfg.RegionSize), int((off+n-1)/m.cfg.RegionSize)
	out := make([]int, 0, last-first+1)
	for r := first; r <= last; r++ {
		out = append(out, r)
	}
	return out
}

// regionRange is region r's byte range (the last one may be short).
func (m *Machine) regionRange(r int) (off, n int64) {
	off = int64(r) * m.cfg.RegionSize
	return off, min(m.cfg.RegionSize, m.cfg.Size-off)
}

// regionSpan is the byte range of n regions from first.
func (m *Machine) regionSpan(first, n int) (off, end int64) {
	off, _ = m.regionRange(first)
	last, size := m.regionRange(first + n - 1)
	return off, last + size
}

// wholeRegions checks that n bytes from region first cover whole regions
// of the volume (the last one may be short), at most a chunk, and returns
// their byte range.
func (m *Machine) wholeRegions(first int, n int64) (off, end int64, ok bool) {
	if first < 0 || first >= m.dirty.Len() || n <= 0 || n > MaxChunk {
		return 0, 0, false
	}
	off, _ = m.regionRange(first)
	end = off + n
	return off, end, end <= m.cfg.Size && (end == m.cfg.Size || end%m.cfg.RegionSize == 0)
}

func (m *Machine) extents(off, n int64) []int {
	var out []int
	for _, r := range m.regions(off, n) {
		e := r / m.cfg.ExtentRegions
		if len(out) == 0 || out[len(out)-1] != e {
			out = append(out, e)
		}
	}
	return out
}

func (m *Machine) hasDisk() bool { return m.disk != Diskless }

// replicating: writes are sent to the peer as they happen.
func (m *Machine) replicating() bool {
	return m.linkUp && m.conn == connEstablished && m.peerDisk != Diskless && !m.ahead &&
		m.sync != syncTargetBitmap && m.sync != syncTarget
}

// peerHasData: the peer holds every write (reads may go to it).
func (m *Machine) peerHasData() bool {
	return m.replicating() && m.peerDisk == UpToDate
}

// Status is what `tandem volume status` shows.
type Status struct {
	Role       Role
	Disk       DiskState
	PeerDisk   DiskState
	PeerRole   Role
	Connection string
	// Sync: "", "source" or "target"; ResyncTotal/ResyncDone in bytes.
	Sync                    string
	ResyncTotal, ResyncDone int64
	OutOfSync               int64 // dirty bitmap, bytes
	LagBytes                int64
	Suspended, Ahead        bool
	Verifying               bool
	VerifyDone, VerifyBad   int64
	GenIDs                  GenIDs
	Epoch                   Epoch
	CrashedPrimary          bool
}

// Status reports the machine's state.
func (m *Machine) Status() Status {
	s := Status{Role: m.role, Disk: m.disk, PeerDisk: m.peerDisk, PeerRole: m.peerRole,
		Connection: m.conn.String(), OutOfSync: int64(m.dirty.Count()) * m.cfg.RegionSize,
		LagBytes: m.lagSize, Suspended: m.suspended, Ahead: m.ahead, GenIDs: m.meta.GenIDs,
		Epoch: m.meta.Epoch, CrashedPrimary: m.crashedPrimary}
	if !m.linkUp && m.conn == connEstablished {
		s.Connection = connWaiting.String()
	}
	switch {
	case m.rs != nil:
		s.Sync = "target"
		if m.rs.source {
			s.Sync = "source"
		}
		s.ResyncTotal, s.ResyncDone = m.rs.total, m.rs.moved
	case m.sync == syncTargetBitmap:
		// decided, the source's bitmap on its way: a target already (as
		// "in sync" the agent recorded it UpToDate and placed a group here)
		s.Sync = "target"
	}
	if m.vf != nil {
		s.Verifying, s.VerifyDone, s.VerifyBad = true, m.vf.checked, m.vf.bad
	}
	return s
}

func (m *Machine) String() string {
	s := m.Status()
	return fmt.Sprintf("%s %s/%s %s peer=%s/%s oos=%d ids=%+v", m.cfg.Node, s.Role, s.Disk, s.Connection, s.PeerRole, s.PeerDisk, s.OutOfSync, s.GenIDs)
}
