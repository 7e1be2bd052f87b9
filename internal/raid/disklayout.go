package raid

import "fmt"

// diskLayout is where each area lives on a member (byte offsets from the
// start of the member, all BlockSize aligned). Pure arithmetic; the
// superblock records the result so later versions never recompute it.
//
//	superblock A, B | bitmap pages ×2 | checksum pages ×2 | journal | data
type diskLayout struct {
	BitmapOff     int64
	BitmapPages   int64
	StripesPerBit int64
	CRCOff        int64
	CRCPages      int64 // 0 when checksums are off
	JournalOff    int64
	JournalSize   int64 // 0 for levels without parity; includes 2 checkpoint pages
	DataOff       int64
	MemberData    int64
}

const (
	bitsPerPage = 4064 * 8
	crcsPerPage = 4064 / 4
	dataAlign   = 64 << 10
	// folioAlign is where the data area starts on members large enough
	// that it costs under 2% of them: the page cache keeps a file in folios
	// of up to 2 MiB (ext4 since Linux 6.16), which a write gets only where
	// the file offset is aligned as much. At 64 KiB, 256 KiB NBD writes to a
	// single-member RAID 0 over a buffered member took 64 KiB folios and
	// ~15% more system CPU per GiB than the same writes to a plain file
	// (measured in `tandem raid bench`'s NBD comparison; docs/nbd.md).
	folioAlign     = 2 << 20
	minJournalSize = 4 * BlockSize
)

// layoutParams are the choices of `create` that shape the member layout.
type layoutParams struct {
	Geometry    Geometry // MemberData ignored
	MemberSize  int64    // smallest member's size
	BitmapChunk int64    // bytes of member data per bitmap bit
	JournalSize int64    // bytes for the write-hole journal (RAID 5/6)
	Checksums   bool
}

func planLayout(p layoutParams) (diskLayout, error) {
	g := p.Geometry
	if g.Chunk < BlockSize {
		return diskLayout{}, fmt.Errorf("raid: chunk %d below %d", g.Chunk, BlockSize)
	}
	var l diskLayout
	l.StripesPerBit = max(1, p.BitmapChunk/g.Chunk)
	// Upper bounds from the whole member size; the areas are tiny next to it.
	maxRows := p.MemberSize / g.Chunk
	maxStripes := maxRows * int64(max(1, g.Members))
	bits := (maxStripes + l.StripesPerBit - 1) / l.StripesPerBit
	l.BitmapOff = 2 * BlockSize
	l.BitmapPages = max(1, (bits+bitsPerPage-1)/bitsPerPage)
	l.CRCOff = l.BitmapOff + 2*l.BitmapPages*BlockSize
	if p.Checksums {
		l.CRCPages = (p.MemberSize/BlockSize + crcsPerPage - 1) / crcsPerPage
	}
	l.JournalOff = l.CRCOff + 2*l.CRCPages*BlockSize
	if g.ParityChunks() > 0 {
		// At most 1/16 of a small member goes to the journal.
		j := min(p.JournalSize, p.MemberSize/16)
		l.JournalSize = max(minJournalSize, j/BlockSize*BlockSize)
		if need := 2*BlockSize + BlockSize + int64(g.Members)*g.Chunk; l.JournalSize < 2*need {
			l.JournalSize = 2 * need // room for two of the largest entries
		}
	}
	align := int64(dataAlign)
	if p.MemberSize >= 64*folioAlign {
		align = folioAlign
	}
	l.DataOff = (l.JournalOff + l.JournalSize + align - 1) / align * align
	l.MemberData = (p.MemberSize - l.DataOff) / g.Chunk * g.Chunk
	if g.Level == Raid10 && g.Layout != Near2 {
		l.MemberData = l.MemberData / (2 * g.Chunk) * 2 * g.Chunk
	}
	if l.MemberData <= 0 {
		return l, fmt.Errorf("raid: member of %d bytes is too small: metadata needs %d", p.MemberSize, l.DataOff)
	}
	return l, nil
}

// bitmapBits is how many bits the bitmap uses for g.
func (l diskLayout) bitmapBits(g Geometry) int64 {
	return (g.Stripes() + l.StripesPerBit - 1) / l.StripesPerBit
}
