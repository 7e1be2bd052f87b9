package raid

import "testing"

// The data area starts on a 2 MiB boundary where that costs little, so the
// page cache can hold a buffered member's data in its largest folios, and
// on a 64 KiB one on small members.
func TestDataAreaAlignment(t *testing.T) {
	for _, tc := range []struct {
		level   Level
		members int
		size    int64
		align   int64
	}{
		{Raid0, 1, 1 << 30, folioAlign},
		{Raid5, 4, 1 << 30, folioAlign},
		{Raid6, 5, 64 * folioAlign, folioAlign},
		{Raid1, 2, 64*folioAlign - BlockSize, dataAlign},
		{Raid5, 3, 1 << 20, dataAlign},
	} {
		g := Geometry{Level: tc.level, Members: tc.members, Chunk: 64 << 10}.Normalize()
		l, err := planLayout(layoutParams{Geometry: g, MemberSize: tc.size, BitmapChunk: 64 << 20, JournalSize: 16 << 20, Checksums: true})
		if err != nil {
			t.Fatalf("%v ×%d, %d bytes: %v", tc.level, tc.members, tc.size, err)
		}
		if l.DataOff%tc.align != 0 || l.DataOff < l.JournalOff+l.JournalSize || l.DataOff-(l.JournalOff+l.JournalSize) >= tc.align {
			t.Errorf("%v ×%d, %d bytes: data at %d, metadata ends at %d; want the next multiple of %d", tc.level, tc.members, tc.size, l.DataOff, l.JournalOff+l.JournalSize, tc.align)
		}
	}
}
