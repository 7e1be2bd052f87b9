package raid

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Level is a RAID level.
type Level int

const (
	Raid0  Level = 0
	Raid1  Level = 1
	Raid5  Level = 5
	Raid6  Level = 6
	Raid10 Level = 10
)

// ParseLevel accepts "0", "raid0", "5", "raid5", "10", …
func ParseLevel(s string) (Level, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(strings.ToLower(s), "raid"))
	if err == nil {
		switch l := Level(n); l {
		case Raid0, Raid1, Raid5, Raid6, Raid10:
			return l, nil
		}
	}
	return 0, fmt.Errorf("raid: unknown level %q (want 0, 1, 5, 6 or 10)", s)
}

func (l Level) String() string { return "raid" + strconv.Itoa(int(l)) }

// Layout is how a level places chunks; each level has its own set.
type Layout int

const (
	LayoutDefault Layout = iota
	LeftSymmetric        // RAID 5/6: parity rotates backwards, data starts after it (md's default)
	Near2                // RAID 10: two copies on neighbouring members (md n2)
	Far2                 // RAID 10: second copy in the far half, shifted one member (md f2)
	Offset2              // RAID 10: second copy in the next row, shifted one member (md o2)
)

var layoutNames = map[Layout]string{LayoutDefault: "default", LeftSymmetric: "left-symmetric", Near2: "n2", Far2: "f2", Offset2: "o2"}

func (l Layout) String() string { return layoutNames[l] }

// ParseLayout accepts the names String returns ("" is the level's default).
func ParseLayout(s string) (Layout, error) {
	if s == "" {
		return LayoutDefault, nil
	}
	for l, n := range layoutNames {
		if n == s {
			return l, nil
		}
	}
	return 0, fmt.Errorf("raid: unknown layout %q (want left-symmetric, n2, f2 or o2)", s)
}

// BlockSize is the unit of checksums and of member I/O: every member read and
// write is a whole number of aligned blocks, as O_DIRECT needs.
const BlockSize = 4096

// Geometry is the pure stripe mapping of an array: how array offsets map to
// member offsets (relative to each member's data area). No I/O.
//
// A stripe is the unit of locking, parity and rebuild. For RAID 0/5/6 it is
// one row of chunks across the members; for RAID 1 one chunk mirrored on
// every member; for RAID 10 one chunk with its two copies.
type Geometry struct {
	Level      Level
	Layout     Layout
	Members    int   // active slots
	Chunk      int64 // bytes, a multiple of BlockSize
	MemberData int64 // bytes of each member's data area, a multiple of Chunk
}

// Loc is where a chunk lives: a member slot and an offset in its data area.
type Loc struct {
	Member int
	Off    int64
}

// Normalize fills the level's default layout.
func (g Geometry) Normalize() Geometry {
	if g.Layout == LayoutDefault {
		switch g.Level {
		case Raid5, Raid6:
			g.Layout = LeftSymmetric
		case Raid10:
			g.Layout = Near2
		}
	}
	return g
}

// MinMembers is the fewest members the level accepts.
func MinMembers(l Level) int {
	switch l {
	case Raid0:
		return 1
	case Raid1, Raid10:
		return 2
	case Raid5:
		return 3
	case Raid6:
		return 4
	}
	return 0
}

// MaxMembers bounds the role table of the superblock.
const MaxMembers = 64

// Validate returns every problem at once.
func (g Geometry) Validate() error {
	var errs []error
	switch g.Level {
	case Raid0, Raid1:
		if g.Layout != LayoutDefault {
			errs = append(errs, fmt.Errorf("raid: %v has no layout %v", g.Level, g.Layout))
		}
	case Raid5, Raid6:
		if g.Layout != LeftSymmetric {
			errs = append(errs, fmt.Errorf("raid: %v supports only left-symmetric, not %v", g.Level, g.Layout))
		}
	case Raid10:
		if g.Layout != Near2 && g.Layout != Far2 && g.Layout != Offset2 {
			errs = append(errs, fmt.Errorf("raid: raid10 supports n2, f2 and o2, not %v", g.Layout))
		}
	default:
		errs = append(errs, fmt.Errorf("raid: unknown level %d", int(g.Level)))
	}
	if g.Members < MinMembers(g.Level) {
		errs = append(errs, fmt.Errorf("raid: %v needs at least %d members, got %d", g.Level, MinMembers(g.Level), g.Members))
	}
	if g.Members > MaxMembers {
		errs = append(errs, fmt.Errorf("raid: at most %d members, got %d", MaxMembers, g.Members))
	}
	if g.Chunk < BlockSize || g.Chunk%BlockSize != 0 || g.Chunk&(g.Chunk-1) != 0 {
		errs = append(errs, fmt.Errorf("raid: chunk %d is not a power of two of at least %d", g.Chunk, BlockSize))
	} else if g.MemberData < g.Chunk*g.rowsPerStripeGroup() || g.MemberData%g.Chunk != 0 {
		errs = append(errs, fmt.Errorf("raid: member data area %d holds no whole stripe of chunk %d", g.MemberData, g.Chunk))
	}
	return errors.Join(errs...)
}

// rowsPerStripeGroup is how many member rows one unit of the layout needs.
func (g Geometry) rowsPerStripeGroup() int64 {
	if g.Level == Raid10 && g.Layout != Near2 {
		return 2
	}
	return 1
}

// rows is the number of chunk rows in each member's data area.
func (g Geometry) rows() int64 { return g.MemberData / g.Chunk }

// DataChunks is the number of data chunks in one stripe.
func (g Geometry) DataChunks() int {
	switch g.Level {
	case Raid0:
		return g.Members
	case Raid5:
		return g.Members - 1
	case Raid6:
		return g.Members - 2
	}
	return 1
}

// ParityChunks is 1 for RAID 5, 2 for RAID 6, else 0.
func (g Geometry) ParityChunks() int {
	switch g.Level {
	case Raid5:
		return 1
	case Raid6:
		return 2
	}
	return 0
}

// Copies is how many copies of each data chunk exist.
func (g Geometry) Copies() int {
	switch g.Level {
	case Raid1:
		return g.Members
	case Raid10:
		return 2
	}
	return 1
}

// Stripes is the number of stripes in the array.
func (g Geometry) Stripes() int64 {
	switch g.Level {
	case Raid10:
		if g.Layout == Near2 {
			return g.rows() * int64(g.Members) / 2
		}
		return g.rows() / 2 * int64(g.Members)
	}
	return g.rows()
}

// StripeBytes is the array data held by one stripe.
func (g Geometry) StripeBytes() int64 { return int64(g.DataChunks()) * g.Chunk }

// Size is the array's usable size in bytes.
func (g Geometry) Size() int64 { return g.Stripes() * g.StripeBytes() }

// DataFraction is the share of raw capacity that holds data.
func (g Geometry) DataFraction() float64 {
	return float64(g.DataChunks()) / float64(g.DataChunks()+g.ParityChunks()) / float64(g.Copies())
}

// Locate maps an array offset to its stripe, data chunk index and offset
// within that chunk.
func (g Geometry) Locate(off int64) (stripe int64, data int, inChunk int64) {
	sb := g.StripeBytes()
	stripe, rem := off/sb, off%sb
	return stripe, int(rem / g.Chunk), rem % g.Chunk
}

// DataLocs appends the locations of the copies of data chunk d of stripe s.
func (g Geometry) DataLocs(s int64, d int, dst []Loc) []Loc {
	n := int64(g.Members)
	switch g.Level {
	case Raid0:
		return append(dst, Loc{d, s * g.Chunk})
	case Raid1:
		for m := 0; m < g.Members; m++ {
			dst = append(dst, Loc{m, s * g.Chunk})
		}
		return dst
	case Raid5:
		p := g.Members - 1 - int(s%n)
		return append(dst, Loc{(p + 1 + d) % g.Members, s * g.Chunk})
	case Raid6:
		p := g.Members - 1 - int(s%n)
		return append(dst, Loc{(p + 2 + d) % g.Members, s * g.Chunk})
	}
	switch g.Layout { // RAID 10, stripe = one logical chunk
	case Near2:
		for k := int64(0); k < 2; k++ {
			slot := 2*s + k
			dst = append(dst, Loc{int(slot % n), slot / n * g.Chunk})
		}
	case Offset2:
		row := s / n * 2
		dst = append(dst, Loc{int(s % n), row * g.Chunk}, Loc{int((s + 1) % n), (row + 1) * g.Chunk})
	case Far2:
		half := g.rows() / 2
		dst = append(dst, Loc{int(s % n), s / n * g.Chunk}, Loc{int((s + 1) % n), (half + s/n) * g.Chunk})
	}
	return dst
}

// ParityMembers returns the members holding P and Q of stripe s (-1 when the
// level has none); both sit at offset s*Chunk.
func (g Geometry) ParityMembers(s int64) (p, q int) {
	switch g.Level {
	case Raid5:
		return g.Members - 1 - int(s%int64(g.Members)), -1
	case Raid6:
		p = g.Members - 1 - int(s%int64(g.Members))
		return p, (p + 1) % g.Members
	}
	return -1, -1
}

// Role is what a member holds in a stripe: a data index (>= 0), RoleP or RoleQ.
type Role int

const (
	RoleNone Role = -3
	RoleQ    Role = -2
	RoleP    Role = -1
)

// RoleOf says what member m holds in stripe s, and where.
func (g Geometry) RoleOf(s int64, m int) (Role, Loc) {
	p, q := g.ParityMembers(s)
	switch m {
	case p:
		return RoleP, Loc{m, s * g.Chunk}
	case q:
		return RoleQ, Loc{m, s * g.Chunk}
	}
	var buf [MaxMembers]Loc
	for d := 0; d < g.DataChunks(); d++ {
		for _, l := range g.DataLocs(s, d, buf[:0]) {
			if l.Member == m {
				return Role(d), l
			}
		}
	}
	return RoleNone, Loc{}
}

// Tolerates is how many failed members the level survives whatever they are.
func (g Geometry) Tolerates() int {
	switch g.Level {
	case Raid1:
		return g.Members - 1
	case Raid5, Raid10:
		return 1
	case Raid6:
		return 2
	}
	return 0
}

// Survives reports whether every chunk can still be read when the members
// for which failed returns true are gone.
func (g Geometry) Survives(failed func(m int) bool) bool {
	lost := 0
	for m := 0; m < g.Members; m++ {
		if failed(m) {
			lost++
		}
	}
	switch g.Level {
	case Raid0, Raid5, Raid6:
		return lost <= g.ParityChunks()
	case Raid1:
		return lost < g.Members
	}
	// RAID 10 layouts repeat every Members stripes (Near2: 2 rows = Members stripes).
	var buf [2]Loc
	for s := int64(0); s < min(g.Stripes(), 2*int64(g.Members)); s++ {
		alive := false
		for _, l := range g.DataLocs(s, 0, buf[:0]) {
			alive = alive || !failed(l.Member)
		}
		if !alive {
			return false
		}
	}
	return true
}
