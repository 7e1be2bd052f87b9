package raid

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	"tandem/internal/metapage"
)

// The superblock sits on every member (A/B metadata pages at offset 0). It
// names the array, its geometry and layout, this member's role and the
// whole role table, an event counter that grows with every state change, and
// the clean flag.

var sbKind = metapage.RaidSuperblock

const sbVersion = 1

// UUID identifies an array or a member device.
type UUID [16]byte

func (u UUID) String() string { return hex.EncodeToString(u[:]) }

// Member roles besides an active slot number (>= 0).
const (
	RoleSpare  = -1
	RoleFaulty = -2
)

const (
	flagChecksums = 1 << 0
)

type devEntry struct {
	UUID     UUID
	Role     int32 // slot, RoleSpare or RoleFaulty
	Slot     int32 // last slot held (-1 never); lets a faulty member be re-added
	Recovery int64 // stripes rebuilt; -1 when in sync
}

type superblock struct {
	Flags      uint32
	Array      UUID
	Name       string
	Geometry   Geometry
	Layout     diskLayout
	Dev        UUID
	Role       int32
	Events     uint64
	Clean      bool
	MemberSize int64
	Created    time.Time
	Updated    time.Time
	Devices    []devEntry
}

const (
	maxDevices   = 96
	nameLen      = 32
	devEntrySize = 16 + 4 + 4 + 8
	sbFixed      = 240
)

func (sb *superblock) checksums() bool { return sb.Flags&flagChecksums != 0 }

// device returns the role table entry of dev.
func (sb *superblock) device(dev UUID) (devEntry, bool) {
	for _, d := range sb.Devices {
		if d.UUID == dev {
			return d, true
		}
	}
	return devEntry{}, false
}

func (sb *superblock) encode() []byte {
	b := make([]byte, pagePayload)
	le := binary.LittleEndian
	le.PutUint32(b[0:], sbVersion)
	le.PutUint32(b[4:], sb.Flags)
	copy(b[8:24], sb.Array[:])
	copy(b[24:24+nameLen], sb.Name)
	g := sb.Geometry
	le.PutUint32(b[56:], uint32(g.Level))
	le.PutUint32(b[60:], uint32(g.Layout))
	le.PutUint32(b[64:], uint32(g.Members))
	le.PutUint64(b[72:], uint64(g.Chunk))
	le.PutUint64(b[80:], uint64(g.MemberData))
	copy(b[88:104], sb.Dev[:])
	le.PutUint32(b[104:], uint32(sb.Role))
	if sb.Clean {
		b[108] = 1
	}
	le.PutUint64(b[112:], sb.Events)
	l := sb.Layout
	for i, v := range []int64{l.BitmapOff, l.BitmapPages, l.StripesPerBit, l.CRCOff, l.CRCPages, l.JournalOff, l.JournalSize, l.DataOff, l.MemberData} {
		le.PutUint64(b[120+8*i:], uint64(v))
	}
	le.PutUint64(b[192:], uint64(sb.MemberSize))
	le.PutUint64(b[200:], uint64(sb.Created.UnixNano()))
	le.PutUint64(b[208:], uint64(sb.Updated.UnixNano()))
	le.PutUint32(b[224:], uint32(len(sb.Devices)))
	for i, d := range sb.Devices {
		o := sbFixed + i*devEntrySize
		copy(b[o:o+16], d.UUID[:])
		le.PutUint32(b[o+16:], uint32(d.Role))
		le.PutUint32(b[o+20:], uint32(d.Slot))
		le.PutUint64(b[o+24:], uint64(d.Recovery))
	}
	return b
}

func decodeSuperblock(b []byte) (*superblock, error) {
	le := binary.LittleEndian
	if v := le.Uint32(b[0:]); v != sbVersion {
		return nil, fmt.Errorf("raid: superblock format version %d, this tandem reads %d", v, sbVersion)
	}
	sb := &superblock{Flags: le.Uint32(b[4:])}
	copy(sb.Array[:], b[8:24])
	name := b[24 : 24+nameLen]
	for i, c := range name {
		if c == 0 {
			name = name[:i]
			break
		}
	}
	sb.Name = string(name)
	sb.Geometry = Geometry{
		Level: Level(le.Uint32(b[56:])), Layout: Layout(le.Uint32(b[60:])), Members: int(le.Uint32(b[64:])),
		Chunk: int64(le.Uint64(b[72:])), MemberData: int64(le.Uint64(b[80:])),
	}
	copy(sb.Dev[:], b[88:104])
	sb.Role = int32(le.Uint32(b[104:]))
	sb.Clean = b[108] == 1
	sb.Events = le.Uint64(b[112:])
	var v [9]int64
	for i := range v {
		v[i] = int64(le.Uint64(b[120+8*i:]))
	}
	sb.Layout = diskLayout{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]}
	sb.MemberSize = int64(le.Uint64(b[192:]))
	sb.Created = time.Unix(0, int64(le.Uint64(b[200:])))
	sb.Updated = time.Unix(0, int64(le.Uint64(b[208:])))
	n := int(le.Uint32(b[224:]))
	if n > maxDevices || sbFixed+n*devEntrySize > len(b) {
		return nil, fmt.Errorf("raid: superblock lists %d devices", n)
	}
	for i := 0; i < n; i++ {
		o := sbFixed + i*devEntrySize
		var d devEntry
		copy(d.UUID[:], b[o:o+16])
		d.Role = int32(le.Uint32(b[o+16:]))
		d.Slot = int32(le.Uint32(b[o+20:]))
		d.Recovery = int64(le.Uint64(b[o+24:]))
		sb.Devices = append(sb.Devices, d)
	}
	if err := sb.Geometry.Validate(); err != nil {
		return nil, fmt.Errorf("raid: superblock geometry: %w", err)
	}
	return sb, nil
}
