package raid

import (
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// Parity math for RAID 5 (P = XOR of the data) and RAID 6 (P and
// Q = sum of g^i * D_i over GF(2^8), i the data index in the stripe), as Linux
// raid6 lays them out. Pure functions over equal-length byte slices; no I/O.
// genSyndrome's hot loop works on 64-bit words, four at a time (about
// 9 GB/s per core); the array computes P+Q with klauspost/reedsolomon's SIMD
// kernels instead (syndrome_simd.go, about 60 GB/s with GFNI), which give
// the same bytes: on two busy cores the difference is CPU the member I/O
// needs. BenchmarkGenSyndrome measures both. Plain XOR uses crypto/subtle,
// whose SIMD code is faster still.

// mul2x8 multiplies each of the eight bytes of v by {02}.
func mul2x8(v uint64) uint64 {
	hi := v & 0x8080808080808080
	return ((v << 1) & 0xfefefefefefefefe) ^ ((hi >> 7) * 0x1d)
}

// xorInto sets dst ^= src (crypto/subtle's XORBytes has SIMD code for
// amd64 and arm64, several times faster than 64-bit words).
func xorInto(dst, src []byte) { subtle.XORBytes(dst, dst, src[:len(dst)]) }

// genParity computes P (and Q when q != nil) of data. Every slice has the
// same length; data has at least one entry.
func genParity(data [][]byte, p, q []byte) {
	if q == nil {
		if len(data) == 1 {
			copy(p, data[0])
			return
		}
		subtle.XORBytes(p, data[0], data[1])
		for _, d := range data[2:] {
			xorInto(p, d)
		}
		return
	}
	genSyndromeFast(data, p, q)
}

// genSyndrome computes P and Q by Horner's rule from the last data block
// down: q = q*g ^ d_i, so the coefficient of d_i ends up g^i.
func genSyndrome(data [][]byte, p, q []byte) {
	last := len(data) - 1
	n := len(p) &^ 31
	for i := 0; i < n; i += 32 {
		z := data[last][i : i+32 : i+32]
		p0, p1 := binary.LittleEndian.Uint64(z[0:]), binary.LittleEndian.Uint64(z[8:])
		p2, p3 := binary.LittleEndian.Uint64(z[16:]), binary.LittleEndian.Uint64(z[24:])
		q0, q1, q2, q3 := p0, p1, p2, p3
		for k := last - 1; k >= 0; k-- {
			s := data[k][i : i+32 : i+32]
			a, b := binary.LittleEndian.Uint64(s[0:]), binary.LittleEndian.Uint64(s[8:])
			c, d := binary.LittleEndian.Uint64(s[16:]), binary.LittleEndian.Uint64(s[24:])
			p0, p1, p2, p3 = p0^a, p1^b, p2^c, p3^d
			q0, q1, q2, q3 = mul2x8(q0)^a, mul2x8(q1)^b, mul2x8(q2)^c, mul2x8(q3)^d
		}
		pp, qq := p[i:i+32:i+32], q[i:i+32:i+32]
		binary.LittleEndian.PutUint64(pp[0:], p0)
		binary.LittleEndian.PutUint64(pp[8:], p1)
		binary.LittleEndian.PutUint64(pp[16:], p2)
		binary.LittleEndian.PutUint64(pp[24:], p3)
		binary.LittleEndian.PutUint64(qq[0:], q0)
		binary.LittleEndian.PutUint64(qq[8:], q1)
		binary.LittleEndian.PutUint64(qq[16:], q2)
		binary.LittleEndian.PutUint64(qq[24:], q3)
	}
	for i := n; i < len(p); i++ {
		pv, qv := data[last][i], data[last][i]
		for k := last - 1; k >= 0; k-- {
			pv ^= data[k][i]
			qv = gfMul[qv][2] ^ data[k][i]
		}
		p[i], q[i] = pv, qv
	}
}

// mulXorInto sets dst ^= c*src.
func mulXorInto(dst, src []byte, c byte) {
	switch c {
	case 0:
		return
	case 1:
		xorInto(dst, src)
		return
	}
	row := &gfMul[c]
	src = src[:len(dst)]
	for i, s := range src {
		dst[i] ^= row[s]
	}
}

// mulInto sets dst = c*src.
func mulInto(dst, src []byte, c byte) {
	row := &gfMul[c]
	src = src[:len(dst)]
	for i, s := range src {
		dst[i] = row[s]
	}
}

// errTooManyLost is returned when more blocks are lost than the parity covers.
var errTooManyLost = errors.New("raid: more blocks lost than the parity can rebuild")

// reconstruct refills the blocks listed in lost, indices 0..k-1 naming data
// blocks, k naming P and k+1 naming Q (q is nil for RAID 5). Blocks not in
// lost are trusted. The lost blocks' slices are overwritten.
func reconstruct(data [][]byte, p, q []byte, lost []int) error {
	k := len(data)
	var lostData []int
	lostP, lostQ := false, false
	for _, l := range lost {
		switch {
		case l < k:
			lostData = append(lostData, l)
		case l == k:
			lostP = true
		case l == k+1 && q != nil:
			lostQ = true
		default:
			return fmt.Errorf("raid: reconstruct: block %d out of range", l)
		}
	}
	maxLost := 1
	if q != nil {
		maxLost = 2
	}
	if len(lost) > maxLost {
		return errTooManyLost
	}
	switch {
	case len(lostData) == 0:
	case len(lostData) == 1 && !lostP:
		x := lostData[0]
		copy(data[x], p)
		for i, d := range data {
			if i != x {
				xorInto(data[x], d)
			}
		}
	case len(lostData) == 1: // P lost too: solve with Q
		x := lostData[0]
		recoverDataFromQ(data, q, x)
	default:
		recoverTwoData(data, p, q, lostData[0], lostData[1])
	}
	if lostP || lostQ {
		if q == nil {
			genParity(data, p, nil)
		} else {
			tp, tq := p, q
			if !lostP {
				tp = make([]byte, len(p))
			}
			if !lostQ {
				tq = make([]byte, len(q))
			}
			genSyndromeFast(data, tp, tq)
		}
	}
	return nil
}

// recoverDataFromQ solves D_x = g^-x * (Q ^ Q_x), Q_x being the syndrome
// with D_x taken as zero.
func recoverDataFromQ(data [][]byte, q []byte, x int) {
	n := len(q)
	dx := data[x]
	clear(dx)
	px := make([]byte, n) // P of the others, discarded
	qx := make([]byte, n)
	genSyndromeFast(data, px, qx)
	xorInto(qx, q)
	mulInto(dx, qx, gfInv(gfPow(x)))
}

// recoverTwoData is Linux's raid6_2data_recov: with x < y lost,
// Pxy/Qxy the parities of the remaining data,
// D_x = A*(P^Pxy) ^ B*(Q^Qxy) with A = g^(y-x)/(g^(y-x)^1), B = g^-x/(g^(y-x)^1),
// D_y = (P^Pxy) ^ D_x.
func recoverTwoData(data [][]byte, p, q []byte, x, y int) {
	if x > y {
		x, y = y, x
	}
	n := len(p)
	clear(data[x])
	clear(data[y])
	pxy := make([]byte, n)
	qxy := make([]byte, n)
	genSyndromeFast(data, pxy, qxy)
	xorInto(pxy, p)
	xorInto(qxy, q)
	gyx := gfPow(y - x)
	denom := gfInv(gyx ^ 1)
	a := gfMul[gyx][denom]
	b := gfMul[gfInv(gfPow(x))][denom]
	rowA, rowB := &gfMul[a], &gfMul[b]
	dx, dy := data[x], data[y]
	for i := 0; i < n; i++ {
		v := rowA[pxy[i]] ^ rowB[qxy[i]]
		dx[i] = v
		dy[i] = pxy[i] ^ v
	}
}

// GenParity computes P, and Q when q is not nil, of equal-length data
// blocks, exactly as the array does (exported for `tandem raid bench`).
func GenParity(data [][]byte, p, q []byte) { genParity(data, p, q) }
