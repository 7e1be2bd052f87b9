package raid

import (
	"sync"

	"github.com/klauspost/reedsolomon"
)

// P and Q are a Reed-Solomon code with a fixed matrix: P's row is all ones
// and Q's row is g^0, g^1, … over GF(2^8) with polynomial 0x11d, the field
// klauspost/reedsolomon works in too. Given that matrix, its SIMD kernels
// (AVX2, AVX-512 and GFNI on amd64, NEON on arm64) compute the very bytes
// genSyndrome computes, several times faster; a property test holds the two
// to the byte-by-byte reference.

var syndromeCoders [MaxMembers + 1]struct {
	once sync.Once
	enc  reedsolomon.Encoder
}

// syndromeCoder returns the encoder for k data blocks, or nil when the
// library refuses the matrix (genSyndrome then does the work).
func syndromeCoder(k int) reedsolomon.Encoder {
	if k < 1 || k > MaxMembers {
		return nil
	}
	c := &syndromeCoders[k]
	c.once.Do(func() {
		p, q := make([]byte, k), make([]byte, k)
		for i := range k {
			p[i], q[i] = 1, gfPow(i)
		}
		// One goroutine: the callers already run one stripe run per
		// flusher, and splitting a few MiB over two cores cost more in
		// wake-ups than it gained.
		enc, err := reedsolomon.New(k, 2, reedsolomon.WithCustomMatrix([][]byte{p, q}), reedsolomon.WithMaxGoroutines(1))
		if err == nil {
			c.enc = enc
		}
	})
	return c.enc
}

// genSyndromeFast computes P and Q with the SIMD coder when it can.
func genSyndromeFast(data [][]byte, p, q []byte) {
	enc := syndromeCoder(len(data))
	if enc == nil || len(data) < 2 {
		genSyndrome(data, p, q)
		return
	}
	shards := make([][]byte, 0, len(data)+2)
	shards = append(append(shards, data...), p, q)
	if err := enc.Encode(shards); err != nil {
		genSyndrome(data, p, q)
	}
}
