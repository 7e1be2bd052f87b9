package raid

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"testing/quick"
)

// refParity is the dumb reference: byte by byte, Q = sum g^i * d_i.
func refParity(data [][]byte) (p, q []byte) {
	n := len(data[0])
	p, q = make([]byte, n), make([]byte, n)
	for i := 0; i < n; i++ {
		for k, d := range data {
			p[i] ^= d[i]
			c := byte(1)
			for j := 0; j < k; j++ {
				c = gfMulByte(c, 2)
			}
			q[i] ^= gfMulByte(c, d[i])
		}
	}
	return p, q
}

func TestGFTables(t *testing.T) {
	for a := 0; a < 256; a++ {
		for b := 0; b < 256; b++ {
			if got, want := gfMul[a][b], gfMulByte(byte(a), byte(b)); got != want {
				t.Fatalf("%d*%d = %d, want %d", a, b, got, want)
			}
		}
		if a != 0 && gfMulByte(byte(a), gfInv(byte(a))) != 1 {
			t.Fatalf("inverse of %d", a)
		}
	}
	// Linux raid6: g^8 = 0x1d under 0x11d.
	if gfPow(8) != 0x1d {
		t.Fatalf("g^8 = %#x", gfPow(8))
	}
}

func randStripe(r *rand.Rand, k, n int) [][]byte {
	data := make([][]byte, k)
	for i := range data {
		data[i] = make([]byte, n)
		for j := range data[i] {
			data[i][j] = byte(r.Uint32())
		}
	}
	return data
}

func TestParityMatchesReference(t *testing.T) {
	f := func(seed uint64, kk, nn uint8) bool {
		r := rand.New(rand.NewPCG(seed, 1))
		k, n := int(kk%14)+1, int(nn)*3+1 // odd lengths exercise the tail loop
		data := randStripe(r, k, n)
		wp, wq := refParity(data)
		p, q := make([]byte, n), make([]byte, n)
		genSyndrome(data, p, q)
		p5 := make([]byte, n)
		genParity(data, p5, nil)
		return bytes.Equal(p, wp) && bytes.Equal(q, wq) && bytes.Equal(p5, wp)
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 300}); err != nil {
		t.Fatal(err)
	}
}

func TestReconstructEveryLossPattern(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for k := 1; k <= 8; k++ {
		for _, n := range []int{1, 33, 4096} {
			data := randStripe(r, k, n)
			p, q := refParity(data)
			for a := 0; a < k+2; a++ {
				for b := a; b < k+2; b++ {
					lost := []int{a}
					if b != a {
						lost = append(lost, b)
					}
					d := make([][]byte, k)
					for i := range d {
						d[i] = append([]byte(nil), data[i]...)
					}
					pp, qq := append([]byte(nil), p...), append([]byte(nil), q...)
					for _, l := range lost {
						garbage := []byte{}
						switch {
						case l < k:
							garbage = d[l]
						case l == k:
							garbage = pp
						default:
							garbage = qq
						}
						for i := range garbage {
							garbage[i] = 0xa5
						}
					}
					if err := reconstruct(d, pp, qq, lost); err != nil {
						t.Fatalf("k=%d lost=%v: %v", k, lost, err)
					}
					for i := range d {
						if !bytes.Equal(d[i], data[i]) {
							t.Fatalf("k=%d n=%d lost=%v: data %d wrong", k, n, lost, i)
						}
					}
					if !bytes.Equal(pp, p) || !bytes.Equal(qq, q) {
						t.Fatalf("k=%d lost=%v: parity wrong", k, lost)
					}
					// RAID 5: single losses among data and P.
					if len(lost) == 1 && a <= k {
						d5 := make([][]byte, k)
						for i := range d5 {
							d5[i] = append([]byte(nil), data[i]...)
						}
						p5 := append([]byte(nil), p...)
						if a < k {
							clear(d5[a])
						} else {
							clear(p5)
						}
						if err := reconstruct(d5, p5, nil, lost); err != nil {
							t.Fatal(err)
						}
						if a < k && !bytes.Equal(d5[a], data[a]) || !bytes.Equal(p5, p) {
							t.Fatalf("raid5 k=%d lost=%d wrong", k, a)
						}
					}
				}
			}
		}
	}
	if err := reconstruct(make([][]byte, 3), nil, nil, []int{0, 1}); err == nil {
		t.Fatal("raid5 with two lost: want error")
	}
}

func BenchmarkGenSyndrome(b *testing.B) {
	for _, impl := range []struct {
		name string
		gen  func(data [][]byte, p, q []byte)
	}{{"go", genSyndrome}, {"simd", genSyndromeFast}} {
		for _, k := range []int{4, 8} {
			b.Run(fmt.Sprintf("%s/%ddata", impl.name, k), func(b *testing.B) {
				data := randStripe(rand.New(rand.NewPCG(1, 1)), k, 64<<10)
				p, q := make([]byte, 64<<10), make([]byte, 64<<10)
				b.SetBytes(int64(k) * 64 << 10)
				for b.Loop() {
					impl.gen(data, p, q)
				}
			})
		}
	}
}

func TestGenSyndromeFastMatchesGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for k := 1; k <= 20; k++ {
		for _, n := range []int{1, 31, 64, 4096, 65536 + 4096} {
			data := randStripe(r, k, n)
			p1, q1 := make([]byte, n), make([]byte, n)
			p2, q2 := make([]byte, n), make([]byte, n)
			genSyndrome(data, p1, q1)
			genSyndromeFast(data, p2, q2)
			if !bytes.Equal(p1, p2) || !bytes.Equal(q1, q2) {
				t.Fatalf("k=%d n=%d: SIMD syndrome differs", k, n)
			}
		}
	}
}
