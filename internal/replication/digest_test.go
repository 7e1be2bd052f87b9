package replication

import (
	"crypto/sha256"
	"encoding/binary"
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

// referenceDigest is RegionDigest spelt out: the CRC-32C of each 4 KiB
// block (the last may be short), big-endian, one after the other, and the
// SHA-256 of that.
func referenceDigest(b []byte) Digest {
	var crcs []byte
	for off := 0; off < len(b); off += 4096 {
		crcs = binary.BigEndian.AppendUint32(crcs, crc32.Checksum(b[off:min(off+4096, len(b))], crc32.MakeTable(crc32.Castagnoli)))
	}
	return sha256.Sum256(crcs)
}

func TestRegionDigestAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{4096, 64 << 10, 3*4096 + 100, 1, 1 << 20} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if got, want := RegionDigest(b), referenceDigest(b); got != want {
			t.Fatalf("%d bytes: %x, want %x", n, got, want)
		}
	}
	// Golden: 8 KiB of zeros (CRC-32C of 4 KiB of zeros is 0x98f94189).
	zero := RegionDigest(make([]byte, 8192))
	if crc := crc32.Checksum(make([]byte, 4096), crc32.MakeTable(crc32.Castagnoli)); crc != 0x98f94189 {
		t.Fatalf("CRC-32C of 4 KiB of zeros: %#x", crc)
	}
	if zero != sha256.Sum256([]byte{0x98, 0xf9, 0x41, 0x89, 0x98, 0xf9, 0x41, 0x89}) {
		t.Fatalf("digest of 8 KiB of zeros: %x", zero)
	}
}

// TestRegionDigestSeesEveryFlippedBit: a bit flipped anywhere in a region
// (a CRC catches every single-bit error) changes its digest.
func TestRegionDigestSeesEveryFlippedBit(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	d := RegionDigest(b)
	for range 2000 {
		off, bit := rng.IntN(len(b)), rng.IntN(8)
		b[off] ^= 1 << bit
		if RegionDigest(b) == d {
			t.Fatalf("bit %d of byte %d flipped, same digest", bit, off)
		}
		b[off] ^= 1 << bit
	}
}

func TestRegionDigestsSplitsIntoRegions(t *testing.T) {
	b := make([]byte, 3*8192+4096)
	for i := range b {
		b[i] = byte(i / 8192)
	}
	ds := RegionDigests(b, 8192)
	if len(ds) != 4 {
		t.Fatalf("%d digests, want 4", len(ds))
	}
	for i, d := range ds {
		if want := RegionDigest(b[i*8192 : min((i+1)*8192, len(b))]); d != want {
			t.Fatalf("digest %d differs", i)
		}
	}
}

func BenchmarkRegionDigests(b *testing.B) {
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		RegionDigests(buf, 64<<10)
	}
}
