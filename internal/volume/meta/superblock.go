package meta

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unicode/utf8"

	"tandem/internal/metapage"
	"tandem/internal/replication"
)

// The superblock is one metapage page (kind TVSB, index 0, zero seed: it is
// read before the volume's UUID is known), stored in the A/B pair at the
// end of the metadata area. Its payload, little endian:
//
//	0   version      uint32
//	4   flags        uint32
//	8   volume UUID  [16]byte
//	24  data size    uint64
//	32  region size  uint32
//	36  extent size  uint32
//	40  AL extents   uint32
//	44  AL slots     uint32
//	48  AL slot pages uint32
//	52  disk state   uint8
//	53  internal     uint8 (1: the metadata is on the backing device)
//	54  reserved     [2]byte
//	56  meta size    uint64
//	64  bitmap pages uint64
//	72  gen current  uint64
//	80  gen bitmap   uint64
//	88  gen history  [2]uint64
//	104 last epoch   uint64
//	112 node name    [64]byte, NUL padded
//	176 peer name    [64]byte, NUL padded
//	240 primary epoch uint64 (of the newest promotion)
//	248 end; the rest of the payload is zero

var sbKind = metapage.VolumeSuperblock

const (
	sbVersion = 1
	nameLen   = 64
	sbUsed    = 248
)

// Flags are the superblock's yes/no facts.
type Flags uint32

const (
	// Consistent: the data is whole (no resync or initial sync stopped
	// halfway through it).
	Consistent Flags = 1 << iota
	// Primary: this replica was primary when the superblock was last
	// written. Set at promotion, cleared at demotion; found set at Open, it
	// says the node stopped (crashed) while primary, so its generation must
	// move on and the peer resyncs its activity log's extents.
	Primary
	// PeerOutdated: the peer is known to be Outdated (a PeerFencer
	// confirmed it), so this replica may go on alone.
	PeerOutdated

	knownFlags = Consistent | Primary | PeerOutdated
)

func (f Flags) String() string {
	var parts []string
	for _, x := range []struct {
		f    Flags
		name string
	}{{Consistent, "consistent"}, {Primary, "primary"}, {PeerOutdated, "peer-outdated"}} {
		if f&x.f != 0 {
			parts = append(parts, x.name)
		}
	}
	if rest := f &^ knownFlags; rest != 0 {
		parts = append(parts, fmt.Sprintf("%#x", uint32(rest)))
	}
	if len(parts) == 0 {
		return "none"
	}
	return fmt.Sprint(parts)
}

// State is what a replica's superblock says besides its geometry: what the
// replication state machine reads at start and changes as it goes.
type State struct {
	Node, Peer string // this replica's node and its peer's
	Gen        replication.GenIDs
	Disk       replication.DiskState
	Flags      Flags
	Epoch      replication.Epoch // the newest epoch seen
	// PrimaryEpoch is the epoch of this replica's newest promotion (0:
	// never primary): split-brain policies compare it.
	PrimaryEpoch replication.Epoch
}

func (s State) check() error {
	for _, n := range []struct{ what, v string }{{"node", s.Node}, {"peer", s.Peer}} {
		if len(n.v) >= nameLen || !utf8.ValidString(n.v) || bytes.IndexByte([]byte(n.v), 0) >= 0 {
			return fmt.Errorf("%s name %q: want valid UTF-8 without NUL, under %d bytes", n.what, n.v, nameLen)
		}
	}
	if s.Disk > replication.UpToDate {
		return fmt.Errorf("disk state %d unknown", s.Disk)
	}
	if s.Flags&^knownFlags != 0 {
		return fmt.Errorf("unknown flags %#x", uint32(s.Flags&^knownFlags))
	}
	return nil
}

// superblock is the decoded payload.
type superblock struct {
	ID       replication.VolumeID
	Layout   layout
	Internal bool
	State    State
}

func (sb *superblock) encode() []byte {
	b := make([]byte, sbUsed)
	le := binary.LittleEndian
	l, st := sb.Layout, sb.State
	le.PutUint32(b[0:], sbVersion)
	le.PutUint32(b[4:], uint32(st.Flags))
	copy(b[8:24], sb.ID[:])
	le.PutUint64(b[24:], uint64(l.DataSize))
	le.PutUint32(b[32:], uint32(l.RegionSize))
	le.PutUint32(b[36:], uint32(l.ExtentSize))
	le.PutUint32(b[40:], uint32(l.ALExtents))
	le.PutUint32(b[44:], uint32(l.ALSlots))
	le.PutUint32(b[48:], uint32(l.ALSlotPages))
	b[52] = byte(st.Disk)
	if sb.Internal {
		b[53] = 1
	}
	le.PutUint64(b[56:], uint64(l.MetaSize))
	le.PutUint64(b[64:], uint64(l.BitmapPages))
	for i, g := range []replication.GenID{st.Gen.Current, st.Gen.Bitmap, st.Gen.History[0], st.Gen.History[1]} {
		le.PutUint64(b[72+8*i:], uint64(g))
	}
	le.PutUint64(b[104:], uint64(st.Epoch))
	copy(b[112:112+nameLen], st.Node)
	copy(b[176:176+nameLen], st.Peer)
	le.PutUint64(b[240:], uint64(st.PrimaryEpoch))
	return b
}

// decodeSuperblock reads a payload, checking every field; it never
// panics, whatever b holds.
func decodeSuperblock(b []byte) (*superblock, error) {
	if len(b) < sbUsed {
		return nil, fmt.Errorf("superblock payload of %d bytes, want %d", len(b), sbUsed)
	}
	le := binary.LittleEndian
	if v := le.Uint32(b[0:]); v != sbVersion {
		return nil, fmt.Errorf("superblock format version %d, this tandem reads %d", v, sbVersion)
	}
	sb := &superblock{Internal: b[53] == 1}
	if b[53] > 1 || b[54] != 0 || b[55] != 0 {
		return nil, fmt.Errorf("superblock placement byte %d and reserved bytes %d %d", b[53], b[54], b[55])
	}
	copy(sb.ID[:], b[8:24])
	if sb.ID == (replication.VolumeID{}) {
		return nil, fmt.Errorf("superblock has a zero volume UUID")
	}
	sb.Layout = layout{
		DataSize:    int64(min(le.Uint64(b[24:]), maxData+1)),
		RegionSize:  int64(le.Uint32(b[32:])),
		ExtentSize:  int64(le.Uint32(b[36:])),
		ALExtents:   int64(le.Uint32(b[40:])),
		ALSlots:     int64(le.Uint32(b[44:])),
		ALSlotPages: int64(le.Uint32(b[48:])),
		MetaSize:    int64(min(le.Uint64(b[56:]), maxData)),
		BitmapPages: int64(min(le.Uint64(b[64:]), maxData)),
	}
	if err := sb.Layout.check(); err != nil {
		return nil, fmt.Errorf("superblock geometry: %w", err)
	}
	st := &sb.State
	st.Flags = Flags(le.Uint32(b[4:]))
	st.Disk = replication.DiskState(b[52])
	st.Gen = replication.GenIDs{
		Current: replication.GenID(le.Uint64(b[72:])),
		Bitmap:  replication.GenID(le.Uint64(b[80:])),
		History: [2]replication.GenID{replication.GenID(le.Uint64(b[88:])), replication.GenID(le.Uint64(b[96:]))},
	}
	st.Epoch = replication.Epoch(le.Uint64(b[104:]))
	st.PrimaryEpoch = replication.Epoch(le.Uint64(b[240:]))
	var err error
	if st.Node, err = decodeName(b[112 : 112+nameLen]); err != nil {
		return nil, fmt.Errorf("superblock node name: %w", err)
	}
	if st.Peer, err = decodeName(b[176 : 176+nameLen]); err != nil {
		return nil, fmt.Errorf("superblock peer name: %w", err)
	}
	if err := st.check(); err != nil {
		return nil, fmt.Errorf("superblock: %w", err)
	}
	for i, c := range b[sbUsed:] {
		if c != 0 {
			return nil, fmt.Errorf("superblock byte %d is %#x past the fields this tandem knows", sbUsed+i, c)
		}
	}
	return sb, nil
}

// decodeName reads a NUL-padded name: text, then only NULs.
func decodeName(b []byte) (string, error) {
	n := bytes.IndexByte(b, 0)
	if n < 0 {
		return "", fmt.Errorf("not NUL terminated")
	}
	for _, c := range b[n:] {
		if c != 0 {
			return "", fmt.Errorf("bytes after the terminating NUL")
		}
	}
	if !utf8.Valid(b[:n]) {
		return "", fmt.Errorf("not UTF-8")
	}
	return string(b[:n]), nil
}
