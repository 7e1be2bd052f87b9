package raid

// Arithmetic in GF(2^8) with the polynomial x^8+x^4+x^3+x^2+1 (0x11d) and
// generator {02}: the field Linux raid6 computes Q in, so a tandem RAID 6
// member holds the same Q bytes an md member would.

const gfPoly = 0x11d

var (
	gfExp [510]byte      // gfExp[i] = g^i, doubled so gfExp[a+b] needs no mod
	gfLog [256]byte      // gfLog[g^i] = i; gfLog[0] unused
	gfMul [256][256]byte // full product table for the slow paths (recovery)
)

func init() {
	x := 1
	for i := 0; i < 255; i++ {
		gfExp[i] = byte(x)
		gfExp[i+255] = byte(x)
		gfLog[x] = byte(i)
		x <<= 1
		if x&0x100 != 0 {
			x ^= gfPoly
		}
	}
	for a := 1; a < 256; a++ {
		for b := 1; b < 256; b++ {
			gfMul[a][b] = gfExp[int(gfLog[a])+int(gfLog[b])]
		}
	}
}

// gfPow returns g^n.
func gfPow(n int) byte { return gfExp[((n%255)+255)%255] }

// gfInv returns the multiplicative inverse of a (a != 0).
func gfInv(a byte) byte { return gfExp[(255-int(gfLog[a]))%255] }

// gfMulByte is the byte-at-a-time product, the reference for tests.
func gfMulByte(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 != 0 {
			p ^= a
		}
		hi := a & 0x80
		a <<= 1
		if hi != 0 {
			a ^= byte(gfPoly & 0xff)
		}
		b >>= 1
	}
	return p
}
