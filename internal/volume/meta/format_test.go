package meta

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"tandem/internal/blockdev"
	"tandem/internal/metapage"
	"tandem/internal/raid"
	"tandem/internal/replication"
)

func sampleSuperblock() *superblock {
	l, _, err := planLayout(1<<30, 0, DefaultCreateOptions())
	if err != nil {
		panic(err)
	}
	return &superblock{
		ID: replication.VolumeID{0xde, 0xad, 0xbe, 0xef, 15: 1}, Layout: l, Internal: true,
		State: State{Node: "db1", Peer: "db2", Disk: replication.UpToDate, Flags: Consistent | Primary, Epoch: 42,
			Gen: replication.GenIDs{Current: 0x1111, Bitmap: 0x2222, History: [2]replication.GenID{0x3333, 4}}},
	}
}

// The superblock's bytes are the on-disk format: a change here is a new
// format version.
func TestSuperblockGoldenBytes(t *testing.T) {
	b := sampleSuperblock().encode()
	want := "01000000" + "03000000" + "deadbeef000000000000000000000001" + // version, flags, UUID
		"00c0fe3f00000000" + "00000100" + "00004000" + "00040000" + "08000000" + "02000000" + // data, region, extent, AL extents, slots, slot pages
		"03" + "01" + "0000" + "0040010000000000" + "0100000000000000" + // disk, internal, reserved, meta size, bitmap pages
		"1111000000000000" + "2222000000000000" + "3333000000000000" + "0400000000000000" + "2a00000000000000" // generations, epoch
	if got := hex.EncodeToString(b[:112]); got != want {
		t.Fatalf("superblock bytes changed:\n got %s\nwant %s", got, want)
	}
	if got := string(b[112:115]) + "|" + string(b[176:179]); got != "db1|db2" {
		t.Fatalf("names at 112 and 176: %q", got)
	}
	sb, err := decodeSuperblock(b)
	if err != nil {
		t.Fatal(err)
	}
	if *sb != *sampleSuperblock() {
		t.Fatalf("round trip:\n got %+v\nwant %+v", sb, sampleSuperblock())
	}
}

func TestActivityLogTransactionGoldenBytes(t *testing.T) {
	seed := [16]byte{1}
	tx := encodeTx(make([]byte, 2*pageSize), seed, 5, []uint32{3, 7})
	if len(tx) != pageSize {
		t.Fatalf("a 2-extent transaction writes %d bytes, want one page", len(tx))
	}
	if got, want := hex.EncodeToString(tx[:28]), "5456414c"+"02000000"+"0500000000000000"+"03000000"+"07000000"+"f2362a02"; got != want {
		t.Fatalf("transaction bytes %s, want %s", got, want)
	}
	l := layout{ALExtents: 4, ExtentSize: 1 << 20, DataSize: 8 << 20}
	seq, list, err := decodeTx(tx, seed, l.ALExtents, l.extents())
	if err != nil || seq != 5 || len(list) != 2 || list[1] != 7 {
		t.Fatalf("decode: %d %v %v", seq, list, err)
	}
	if _, _, err := decodeTx(tx, [16]byte{2}, 4, 8); !errors.Is(err, errNoTx) {
		t.Fatalf("another volume's transaction: %v", err)
	}
	if _, _, err := decodeTx(tx, seed, 4, 5); err == nil || errors.Is(err, errNoTx) {
		t.Fatalf("extent past the data: %v", err)
	}
	if n := txLen(1024); n != 2*pageSize {
		t.Fatalf("1024 extents take %d bytes", n)
	}
}

// A superblock write torn by a crash leaves the previous one in force.
func TestTornSuperblockWriteKeepsThePrevious(t *testing.T) {
	for _, tear := range []int{0, 1, 16, 300, pageSize - 1} {
		mem := blockdev.NewMem(testSize)
		dev := blockdev.NewFaulty(mem)
		m := mustCreate(t, dev, small())
		if err := m.SetEpoch(5); err != nil {
			t.Fatal(err)
		}
		dev.TearNextWrite(tear)
		if err := m.SetEpoch(6); err == nil {
			t.Fatal("torn write reported success")
		}
		if m.State().Epoch != 5 {
			t.Fatalf("failed update changed the state in memory: %d", m.State().Epoch)
		}
		again := mustOpen(t, mem.CrashKeeping(func(int) bool { return true }), OpenOptions{})
		if again.State().Epoch != 5 {
			t.Fatalf("tear %d: epoch %d after a torn write, want 5", tear, again.State().Epoch)
		}
		// The retry goes to the same copy: the good one is never at risk.
		dev.TearNextWrite(10)
		m.SetEpoch(7)
		if e := mustOpen(t, mem.CrashKeeping(func(int) bool { return true }), OpenOptions{}).State().Epoch; e != 5 {
			t.Fatalf("tear %d: second torn write lost the good copy: epoch %d", tear, e)
		}
		if err := m.SetEpoch(7); err != nil {
			t.Fatal(err)
		}
		if e := mustOpen(t, mem.Crash(), OpenOptions{}).State().Epoch; e != 7 {
			t.Fatalf("epoch %d after the retry, want 7", e)
		}
	}
}

// metaArea returns where m's pieces are on its device.
func sbOffset(m *Meta) int64 { return m.metaOff + m.lay.sbOff() }

func TestBitFlipsAreChecksumErrors(t *testing.T) {
	mem := blockdev.NewMem(testSize)
	m := mustCreate(t, mem, small())
	m.SetEpoch(3) // superblock copy B holds seq 1 (create), A seq 2
	m.Bitmap().Set(0, 4096)
	m.Bitmap().Flush()
	m.Close()
	img := mem.Crash()
	for _, c := range []struct {
		name string
		offs []int64
		want string
	}{
		{"the older superblock copy", []int64{sbOffset(m) + pageSize + 100}, ""},
		{"both superblock copies", []int64{sbOffset(m) + 100, sbOffset(m) + pageSize + 100}, "both superblock copies"},
		{"both copies of bitmap page 0", []int64{m.metaOff + 200, m.metaOff + pageSize + 200}, "bitmap page 0"},
		{"every activity log slot", alSlotOffsets(m), "activity log"},
	} {
		bad := img.Crash()
		for _, off := range c.offs {
			bad.FlipBit(off, 3)
		}
		got, err := Open(bad, OpenOptions{Name: "/dev/test"})
		if c.want == "" {
			if err != nil || got.State().Epoch != 3 {
				t.Fatalf("%s: %v", c.name, err)
			}
			continue
		}
		if !IsCorrupt(err) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "/dev/test") {
			t.Fatalf("%s: %v, want a corruption error naming /dev/test and %q", c.name, err, c.want)
		}
		if strings.Contains(c.want, "superblock") {
			continue
		}
		// Salvage counts what the damage hides as dirty.
		s, err := Open(bad, OpenOptions{Salvage: true})
		if err != nil {
			t.Fatalf("%s: salvage: %v", c.name, err)
		}
		s.AL().Recover()
		if n := s.Bitmap().DirtyRegions(); n < min(bitsPerPage, s.Bitmap().Regions()) {
			t.Fatalf("%s: salvage left %d dirty regions", c.name, n)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(bad.Crash(), OpenOptions{}); err != nil {
			t.Fatalf("%s: salvaged metadata does not open: %v", c.name, err)
		}
	}
}

func alSlotOffsets(m *Meta) []int64 {
	var out []int64
	for s := range m.lay.ALSlots {
		out = append(out, m.metaOff+m.lay.alSlotOff(s)+10)
	}
	return out
}

func TestOpenWhatIsNotOurs(t *testing.T) {
	if _, err := Open(blockdev.NewMem(testSize), OpenOptions{}); !IsNoMetadata(err) {
		t.Fatalf("blank device: %v", err)
	}
	junk := blockdev.NewMem(testSize)
	junk.WriteAt([]byte("some file system"), testSize-5000)
	if _, err := Open(junk, OpenOptions{}); !IsNoMetadata(err) {
		t.Fatalf("device with data: %v", err)
	}
	if _, err := Open(blockdev.NewMem(100), OpenOptions{}); !IsNoMetadata(err) {
		t.Fatalf("tiny device: %v", err)
	}
	// Metadata whose superblock checksums but says nonsense.
	mem := blockdev.NewMem(testSize)
	m := mustCreate(t, mem, small())
	sb := &superblock{ID: m.ID(), Layout: m.lay, Internal: true, State: m.State()}
	sb.Layout.RegionSize = 3000
	page := make([]byte, pageSize)
	metapage.Encode(page, [16]byte{}, sbKind, 0, 99, sb.encode())
	mem.WriteAt(page, sbOffset(m)+pageSize)
	if _, err := Open(mem, OpenOptions{}); !IsCorrupt(err) || !strings.Contains(err.Error(), "region size 3000") {
		t.Fatalf("nonsense superblock: %v", err)
	}
}

// Create refuses a tandem raid member, and raid refuses a volume's device.
func TestCreateRefusesRaidMember(t *testing.T) {
	members := []raid.Member{{Name: "a", Dev: blockdev.NewMem(testSize)}, {Name: "b", Dev: blockdev.NewMem(testSize)}}
	a, err := raid.Create(members, nil, raid.CreateOptions{Name: "r", Level: raid.Raid1}, raid.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	_, err = Create(members[0].Dev, small())
	if !IsInUse(err) || !strings.Contains(err.Error(), "raid member") {
		t.Fatalf("create over a raid member: %v", err)
	}
	o := small()
	o.Force = true
	mustCreate(t, members[0].Dev, o)
	if _, err := raid.Examine(members[0]); err == nil {
		t.Fatal("a forced create left the raid superblock")
	}
	if err := raid.Claimable(members[0], raid.UUID{}); err == nil || !strings.Contains(err.Error(), "volume") {
		t.Fatalf("raid claims a volume's backing device: %v", err)
	}
}
