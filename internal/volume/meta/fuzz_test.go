package meta

import (
	"encoding/binary"
	"slices"
	"testing"

	"tandem/internal/blockdev"
	"tandem/internal/metapage"
	"tandem/internal/replication"
)

// The seed corpora are in testdata/fuzz: valid encodings of each structure
// (written by the tests' own encoders), which go test runs every time.

func FuzzSuperblock(f *testing.F) {
	f.Add(sampleSuperblock().encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < metapage.Payload {
			b = append(b, make([]byte, metapage.Payload-len(b))...)
		}
		sb, err := decodeSuperblock(b[:metapage.Payload])
		if err != nil {
			return
		}
		if err := sb.Layout.check(); err != nil {
			t.Fatalf("decoded an impossible layout: %v", err)
		}
		again, err := decodeSuperblock(append(sb.encode(), make([]byte, metapage.Payload-sbUsed)...))
		if err != nil || *again != *sb {
			t.Fatalf("re-encode: %v\n got %+v\nwant %+v", err, again, sb)
		}
	})
}

var fuzzSeed = [16]byte{9}

func FuzzActivityLog(f *testing.F) {
	f.Add(encodeTx(make([]byte, 2*pageSize), fuzzSeed, 3, []uint32{1, 5, 9}))
	f.Fuzz(func(t *testing.T, b []byte) {
		const capacity, extents = 1024, 4096
		b = fixTxCRC(b)
		seq, list, err := decodeTx(b, fuzzSeed, capacity, extents)
		if err != nil {
			return
		}
		if len(list) > capacity || !slices.IsSorted(list) || seq == 0 {
			t.Fatalf("accepted seq %d with %d extents %v", seq, len(list), list)
		}
		seq2, list2, err := decodeTx(encodeTx(make([]byte, 2*pageSize), fuzzSeed, seq, list), fuzzSeed, capacity, extents)
		if err != nil || seq2 != seq || !slices.Equal(list, list2) {
			t.Fatalf("re-encode: %v", err)
		}
	})
}

// fixTxCRC gives a transaction the checksum its count asks for, so the
// fuzzer reaches the checks behind it.
func fixTxCRC(b []byte) []byte {
	if len(b) < alHeader+4 {
		return b
	}
	end := alHeader + 4*int64(binary.LittleEndian.Uint32(b[4:]))
	if end+4 <= int64(len(b)) {
		binary.LittleEndian.PutUint32(b[end:], metapage.CRC(fuzzSeed, b[:end]))
	}
	return b
}

// FuzzOpen puts an arbitrary superblock payload (with a valid checksum) and
// arbitrary activity log bytes on a device and opens it: an error or a
// usable Meta, never a panic.
func FuzzOpen(f *testing.F) {
	l, _, _ := planLayout(fuzzDevSize, 0, small().withDefaults())
	sb := superblock{ID: replication.VolumeID(fuzzSeed), Layout: l, Internal: true, State: State{Node: "a"}}
	f.Add(sb.encode(), encodeTx(make([]byte, pageSize), fuzzSeed, 2, []uint32{0, 3}))
	f.Fuzz(func(t *testing.T, payload, ring []byte) {
		dev := blockdev.NewMem(fuzzDevSize)
		end := int64(fuzzDevSize)
		page := make([]byte, pageSize)
		metapage.Encode(page, [16]byte{}, sbKind, 0, 1, payload)
		dev.WriteAt(page, end-pageSize)
		if len(ring) > 0 {
			ring = fixTxCRC(ring[:min(len(ring), 4*pageSize)])
			dev.WriteAt(ring, max(0, end-2*pageSize-int64(len(ring))))
		}
		m, err := Open(dev, OpenOptions{Salvage: len(payload)%2 == 0})
		if err != nil {
			return
		}
		m.AL().Recover()
		m.AL().Begin(0)
		m.Bitmap().Set(0, 1)
		m.Bitmap().Ranges()(func(int64, int64) bool { return true })
		m.Close()
	})
}

const fuzzDevSize = 256 << 10
