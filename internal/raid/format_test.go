package raid

import (
	"encoding/hex"
	"testing"
	"time"
)

func sampleSuperblock() *superblock {
	return &superblock{
		Flags: flagChecksums, Array: UUID{1, 2, 3}, Name: "data",
		Geometry: Geometry{Level: Raid6, Layout: LeftSymmetric, Members: 4, Chunk: 65536, MemberData: 1 << 30},
		Layout:   diskLayout{BitmapOff: 8192, BitmapPages: 1, StripesPerBit: 1024, CRCOff: 16384, CRCPages: 10, JournalOff: 98304, JournalSize: 1 << 20, DataOff: 2 << 20, MemberData: 1 << 30},
		Dev:      UUID{9}, Role: 2, Events: 7, Clean: true, MemberSize: 2 << 30,
		Created: time.Unix(1700000000, 0), Updated: time.Unix(1700000001, 0),
		Devices: []devEntry{{UUID{9}, 2, 2, -1}, {UUID{8}, RoleSpare, -1, -1}},
	}
}

// The superblock layout is an on-disk format: this pins its bytes.
func TestSuperblockGoldenBytes(t *testing.T) {
	b := sampleSuperblock().encode()
	const want = "0100000001000000010203000000000000000000000000006461746100000000" +
		"0000000000000000000000000000000000000000000000000600000001000000" +
		"0400000000000000000001000000000000000040000000000900000000000000" +
		"0000000000000000020000000100000007000000000000000020000000000000" +
		"0100000000000000000400000000000000400000000000000a00000000000000" +
		"0080010000000000000010000000000000002000000000000000004000000000" +
		"000000800000000000002a36fe9c971700cac471fe9c97170000000000000000"
	if got := hex.EncodeToString(b[:224]); got != want {
		t.Fatalf("superblock bytes changed:\n got %s\nwant %s", got, want)
	}
	sb, err := decodeSuperblock(b)
	if err != nil {
		t.Fatal(err)
	}
	if sb.Name != "data" || sb.Geometry != sampleSuperblock().Geometry || sb.Layout != sampleSuperblock().Layout || len(sb.Devices) != 2 || sb.Devices[1].Role != RoleSpare || !sb.Clean {
		t.Fatalf("round trip: %+v", sb)
	}
}

func FuzzSuperblock(f *testing.F) {
	f.Add(sampleSuperblock().encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < pagePayload {
			b = append(b, make([]byte, pagePayload-len(b))...)
		}
		sb, err := decodeSuperblock(b[:pagePayload])
		if err != nil {
			return
		}
		if err := sb.Geometry.Validate(); err != nil {
			t.Fatalf("decoded an invalid geometry: %v", err)
		}
		again, err := decodeSuperblock(sb.encode())
		if err != nil || again.Events != sb.Events || again.Geometry != sb.Geometry {
			t.Fatalf("re-encode: %v", err)
		}
	})
}

func FuzzJournalHeader(f *testing.F) {
	e := &journalEntry{Seq: 4, Stripe: 9, RowLo: 1, RowHi: 3, Slots: 0b1011, Payload: make([]byte, 3*2*BlockSize)}
	h := make([]byte, BlockSize)
	encodeJournalHeader(h, UUID{1}, e)
	f.Add(h)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < BlockSize {
			b = append(b, make([]byte, BlockSize-len(b))...)
		}
		got, _, ok := decodeJournalHeader(b[:BlockSize], UUID{1})
		if ok && (got.RowHi <= got.RowLo || got.blocks() < 2) {
			t.Fatalf("accepted a header with no rows: %+v", got)
		}
	})
}
