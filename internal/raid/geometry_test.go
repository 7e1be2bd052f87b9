package raid

import (
	"fmt"
	"strings"
	"testing"
)

func allGeometries() []Geometry {
	var out []Geometry
	add := func(l Level, lay Layout, ns ...int) {
		for _, n := range ns {
			out = append(out, Geometry{Level: l, Layout: lay, Members: n, Chunk: 4096, MemberData: 24 * 4096})
		}
	}
	add(Raid0, LayoutDefault, 1, 2, 3, 4)
	add(Raid1, LayoutDefault, 2, 3)
	add(Raid5, LeftSymmetric, 3, 4, 5)
	add(Raid6, LeftSymmetric, 4, 5, 6)
	add(Raid10, Near2, 2, 3, 4, 5)
	add(Raid10, Far2, 2, 3, 4)
	add(Raid10, Offset2, 2, 3, 4)
	return out
}

func name(g Geometry) string { return fmt.Sprintf("%v-%v-%d", g.Level, g.Layout, g.Members) }

// Every member chunk is used at most once, every data chunk has Copies
// distinct members, and RoleOf inverts DataLocs/ParityMembers.
func TestGeometryIsABijection(t *testing.T) {
	for _, g := range allGeometries() {
		if err := g.Validate(); err != nil {
			t.Fatalf("%s: %v", name(g), err)
		}
		used := map[Loc]string{}
		claim := func(l Loc, what string) {
			if l.Member < 0 || l.Member >= g.Members || l.Off < 0 || l.Off+g.Chunk > g.MemberData || l.Off%g.Chunk != 0 {
				t.Fatalf("%s: %s at %+v out of range", name(g), what, l)
			}
			if prev, ok := used[l]; ok {
				t.Fatalf("%s: %s and %s both at %+v", name(g), prev, what, l)
			}
			used[l] = what
		}
		for s := int64(0); s < g.Stripes(); s++ {
			for d := 0; d < g.DataChunks(); d++ {
				locs := g.DataLocs(s, d, nil)
				if len(locs) != g.Copies() {
					t.Fatalf("%s: %d copies", name(g), len(locs))
				}
				for k, l := range locs {
					claim(l, fmt.Sprintf("s%d d%d copy%d", s, d, k))
					if r, at := g.RoleOf(s, l.Member); r != Role(d) || at != l {
						t.Fatalf("%s: RoleOf(%d,%d) = %v %+v, want d%d", name(g), s, l.Member, r, at, d)
					}
				}
			}
			p, q := g.ParityMembers(s)
			if (p >= 0) != (g.ParityChunks() >= 1) || (q >= 0) != (g.ParityChunks() == 2) {
				t.Fatalf("%s: parity members %d %d", name(g), p, q)
			}
			if p >= 0 {
				claim(Loc{p, s * g.Chunk}, "P")
			}
			if q >= 0 {
				claim(Loc{q, s * g.Chunk}, "Q")
			}
		}
		if g.Size() != g.Stripes()*g.StripeBytes() || g.Size() <= 0 {
			t.Fatalf("%s: size %d", name(g), g.Size())
		}
	}
}

// Linux md left-symmetric: RAID 5 on 4 members puts P on member 3 in stripe
// 0, 2 in stripe 1, … with D0 right after P; RAID 6 puts Q right after P.
func TestLeftSymmetricMatchesMd(t *testing.T) {
	g := Geometry{Level: Raid5, Layout: LeftSymmetric, Members: 4, Chunk: 4096, MemberData: 8 * 4096}
	want := [][]int{{0, 1, 2, 3}, {3, 0, 1, 2}, {2, 3, 0, 1}} // member of D0, D1, D2, P per stripe
	for s, w := range want {
		p, _ := g.ParityMembers(int64(s))
		got := []int{}
		for d := 0; d < 3; d++ {
			got = append(got, g.DataLocs(int64(s), d, nil)[0].Member)
		}
		got = append(got, p)
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Fatalf("raid5 stripe %d: %v want %v", s, got, w)
		}
	}
	g6 := Geometry{Level: Raid6, Layout: LeftSymmetric, Members: 5, Chunk: 4096, MemberData: 8 * 4096}
	p, q := g6.ParityMembers(0)
	if p != 4 || q != 0 || g6.DataLocs(0, 0, nil)[0].Member != 1 {
		t.Fatalf("raid6 stripe 0: P=%d Q=%d D0=%d", p, q, g6.DataLocs(0, 0, nil)[0].Member)
	}
}

func TestSurvives(t *testing.T) {
	for _, g := range allGeometries() {
		for a := 0; a < g.Members; a++ {
			for b := a; b < g.Members; b++ {
				failed := func(m int) bool { return m == a || m == b }
				lost := 1
				if b != a {
					lost = 2
				}
				got := g.Survives(failed)
				if lost <= g.Tolerates() && !got {
					t.Fatalf("%s: should survive %d,%d", name(g), a, b)
				}
				if lost > g.Tolerates() && g.Level != Raid10 && got {
					t.Fatalf("%s: should not survive %d,%d", name(g), a, b)
				}
			}
		}
	}
}

func TestValidateReportsEverything(t *testing.T) {
	err := Geometry{Level: 7, Members: 1, Chunk: 1000}.Validate()
	if err == nil {
		t.Fatal("want error")
	}
	for _, w := range []string{"unknown level", "chunk 1000"} {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("%v lacks %q", err, w)
		}
	}
	if err := (Geometry{Level: Raid5, Layout: LeftSymmetric, Members: 2, Chunk: 4096, MemberData: 4096}).Validate(); err == nil || !strings.Contains(err.Error(), "at least 3") {
		t.Fatalf("too few members: %v", err)
	}
}
