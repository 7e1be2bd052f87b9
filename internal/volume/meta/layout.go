package meta

import (
	"fmt"

	"tandem/internal/metapage"
)

// The metadata area is the last MetaSize bytes (below the last whole 4 KiB
// page) of the device that holds it: the backing device itself (internal
// metadata, the default, like DRBD's), or a separate meta device. Its end
// is the anchor Open finds the superblock by, whatever the sizes chosen at
// create:
//
//	bitmap pages ×2 (A/B per page) | activity log: ALSlots × ALSlotPages | superblock A, B
//
// All offsets are multiples of pageSize; the superblock records the
// numbers, and Open checks they agree with this arithmetic.

const pageSize = metapage.Size

// bitsPerPage is how many regions one bitmap page covers: a whole number of
// 64-bit words of metapage's payload.
const bitsPerPage = metapage.Payload / 8 * 64

// alRing is how many transaction slots the activity log rotates through.
// Two would do for safety (a torn transaction leaves the one before); more
// spread a flash device's wear over more pages for 8 KiB each.
const alRing = 8

// layout is a volume's geometry: where everything is, in bytes.
type layout struct {
	DataSize    int64 // exposed data bytes, a multiple of pageSize
	RegionSize  int64 // bytes of data per bitmap bit
	ExtentSize  int64 // bytes of data per activity log extent
	ALExtents   int64 // hot extents the activity log holds
	ALSlots     int64 // transaction slots in the ring
	ALSlotPages int64 // pages of one transaction slot
	BitmapPages int64 // bitmap pages (each stored twice)
	MetaSize    int64 // bytes of the metadata area
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// bits is how many regions (bitmap bits) the data has; the last region may
// be shorter than RegionSize.
func (l layout) bits() int64 { return ceilDiv(l.DataSize, l.RegionSize) }

// extents is how many activity log extents the data has.
func (l layout) extents() int64 { return ceilDiv(l.DataSize, l.ExtentSize) }

func (l layout) bitmapOff(page int64, slot int64) int64 { return (2*page + slot) * pageSize }
func (l layout) alOff() int64                           { return 2 * l.BitmapPages * pageSize }
func (l layout) alSlotOff(slot int64) int64             { return l.alOff() + slot*l.ALSlotPages*pageSize }
func (l layout) sbOff() int64                           { return l.MetaSize - 2*pageSize }

// alSlotPagesFor is the pages a transaction of n extents needs.
func alSlotPagesFor(n int64) int64 { return ceilDiv(alHeader+4*n+4, pageSize) }

// metaSizeFor is the metadata area for bitmapPages bitmap pages and an
// activity log of alExtents.
func metaSizeFor(bitmapPages, alExtents int64) int64 {
	return (2*bitmapPages + alRing*alSlotPagesFor(alExtents) + 2) * pageSize
}

// MetaSize is how large a separate meta device must be for dataSize bytes
// of data with o's region size and activity log (defaults where unset).
func MetaSize(dataSize int64, o CreateOptions) int64 {
	o = o.withDefaults()
	return metaSizeFor(max(1, ceilDiv(ceilDiv(dataSize, o.RegionSize), bitsPerPage)), int64(o.ALExtents))
}

// planLayout places a new volume. backing is the backing device's size;
// metaDev the meta device's (0 for internal metadata). It returns the
// layout and the offset of the metadata area on the device that holds it.
func planLayout(backing, metaDev int64, o CreateOptions) (layout, int64, error) {
	l := layout{RegionSize: o.RegionSize, ExtentSize: o.ExtentSize, ALExtents: int64(o.ALExtents), ALSlots: alRing}
	l.ALSlotPages = alSlotPagesFor(l.ALExtents)
	end := backing / pageSize * pageSize
	if metaDev == 0 {
		// Enough bitmap for the whole device; the data is a little less.
		l.BitmapPages = max(1, ceilDiv(ceilDiv(end, l.RegionSize), bitsPerPage))
		l.MetaSize = metaSizeFor(l.BitmapPages, l.ALExtents)
		room := end - l.MetaSize
		if room < pageSize {
			return l, 0, fmt.Errorf("backing device of %d bytes is too small: the metadata alone takes %d", backing, l.MetaSize)
		}
		l.DataSize = room
		if o.DataSize > 0 {
			if o.DataSize > room {
				return l, 0, fmt.Errorf("data size %d does not fit: at most %d of the backing device's %d bytes are left beside the metadata", o.DataSize, room, backing)
			}
			l.DataSize = o.DataSize
		}
		return l, room, nil
	}
	l.DataSize = end
	if o.DataSize > 0 {
		if o.DataSize > end {
			return l, 0, fmt.Errorf("data size %d exceeds the backing device (%d bytes)", o.DataSize, backing)
		}
		l.DataSize = o.DataSize
	}
	if l.DataSize < pageSize {
		return l, 0, fmt.Errorf("backing device of %d bytes is too small", backing)
	}
	l.BitmapPages = max(1, ceilDiv(l.bits(), bitsPerPage))
	l.MetaSize = metaSizeFor(l.BitmapPages, l.ALExtents)
	metaEnd := metaDev / pageSize * pageSize
	if metaEnd < l.MetaSize {
		return l, 0, fmt.Errorf("meta device of %d bytes is too small: %d bytes of data need %d", metaDev, l.DataSize, l.MetaSize)
	}
	return l, metaEnd - l.MetaSize, nil
}

// check says what is wrong with a layout read from a superblock, if
// anything: every number within its bounds and agreeing with the
// arithmetic above.
func (l layout) check() error {
	switch {
	case l.RegionSize < pageSize || l.RegionSize > maxRegion || l.RegionSize&(l.RegionSize-1) != 0:
		return fmt.Errorf("region size %d is not a power of two from %d to %d", l.RegionSize, pageSize, maxRegion)
	case l.ExtentSize < l.RegionSize || l.ExtentSize > maxExtent || l.ExtentSize&(l.ExtentSize-1) != 0:
		return fmt.Errorf("extent size %d is not a power of two from the region size (%d) to %d", l.ExtentSize, l.RegionSize, maxExtent)
	case l.DataSize < pageSize || l.DataSize%pageSize != 0 || l.DataSize > maxData:
		return fmt.Errorf("data size %d is not a positive multiple of %d up to %d", l.DataSize, pageSize, int64(maxData))
	case l.extents() > maxExtentNumber:
		return fmt.Errorf("%d activity log extents of %d bytes: at most %d", l.extents(), l.ExtentSize, int64(maxExtentNumber))
	case l.ALExtents < 1 || l.ALExtents > maxALExtents:
		return fmt.Errorf("activity log of %d extents (1 to %d)", l.ALExtents, maxALExtents)
	case l.ALSlots < 2 || l.ALSlots > 64:
		return fmt.Errorf("activity log ring of %d slots (2 to 64)", l.ALSlots)
	case l.ALSlotPages != alSlotPagesFor(l.ALExtents):
		return fmt.Errorf("activity log slots of %d pages, %d extents need %d", l.ALSlotPages, l.ALExtents, alSlotPagesFor(l.ALExtents))
	case l.BitmapPages < ceilDiv(l.bits(), bitsPerPage) || l.BitmapPages > ceilDiv(maxData/pageSize, bitsPerPage):
		return fmt.Errorf("bitmap of %d pages for %d regions", l.BitmapPages, l.bits())
	case l.MetaSize != (2*l.BitmapPages+l.ALSlots*l.ALSlotPages+2)*pageSize:
		return fmt.Errorf("metadata area of %d bytes does not match its bitmap and activity log", l.MetaSize)
	}
	return nil
}

const (
	maxRegion    = 1 << 30
	maxExtent    = 1 << 31 // fits the superblock's uint32
	maxALExtents = 65534
	maxData      = 1 << 56 // 64 PiB
	// maxExtentNumber: activity log transactions name extents as uint32.
	maxExtentNumber = 1<<32 - 1
)
