package raid

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"tandem/internal/blockdev"
	"tandem/internal/clock"
	"tandem/internal/events"
)

type testArray struct {
	t      *testing.T
	a      *Array
	mems   []*blockdev.Mem
	faults []*blockdev.Faulty
	names  []string
	ref    []byte
	rec    *events.Recorder
	clk    *clock.Fake
	co     CreateOptions
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func testOptions(t *testing.T, clk *clock.Fake, rec *events.Recorder) Options {
	return Options{
		Logger:       slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Clock:        clk,
		Events:       rec,
		NoBackground: true,
		BitmapDelay:  time.Nanosecond,
	}
}

// newTestArray creates an array over n+spares memory members of size bytes,
// finishes the initial resync and fills it with random data.
func newTestArray(t *testing.T, co CreateOptions, n, spares int, size int64) *testArray {
	t.Helper()
	ta := &testArray{t: t, rec: &events.Recorder{}, clk: clock.NewFake(time.Unix(1_700_000_000, 0)), co: co}
	var ms, ss []Member
	for i := 0; i < n+spares; i++ {
		m := blockdev.NewMem(size)
		f := blockdev.NewFaulty(m)
		ta.mems = append(ta.mems, m)
		ta.faults = append(ta.faults, f)
		name := fmt.Sprintf("m%d", i)
		ta.names = append(ta.names, name)
		if i < n {
			ms = append(ms, Member{name, f})
		} else {
			ss = append(ss, Member{name, f})
		}
	}
	a, err := Create(ms, ss, co, testOptions(t, ta.clk, ta.rec))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	ta.a = a
	a.RunJobs()
	ta.ref = make([]byte, a.Size())
	if _, err := a.ReadAt(ta.ref, 0); err != nil {
		t.Fatalf("initial read: %v", err)
	}
	ta.fill(rand.New(rand.NewPCG(uint64(n), uint64(co.Level))))
	return ta
}

func (ta *testArray) fill(r *rand.Rand) {
	ta.t.Helper()
	buf := make([]byte, len(ta.ref))
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	ta.write(buf, 0)
	// Out of the write-behind queue: tests then touch the members directly.
	if err := ta.a.Flush(); err != nil {
		ta.t.Fatalf("flush: %v", err)
	}
}

func (ta *testArray) write(p []byte, off int64) {
	ta.t.Helper()
	if _, err := ta.a.WriteAt(p, off); err != nil {
		ta.t.Fatalf("write %d+%d: %v", off, len(p), err)
	}
	copy(ta.ref[off:], p)
}

// randomWrites does n writes of random (often unaligned) size and place.
func (ta *testArray) randomWrites(r *rand.Rand, n int) {
	ta.t.Helper()
	size := int64(len(ta.ref))
	for i := 0; i < n; i++ {
		l := r.Int64N(3*ta.a.geo.Chunk) + 1
		if r.IntN(2) == 0 {
			l = (l + BlockSize - 1) &^ (BlockSize - 1)
		}
		l = min(l, size)
		off := r.Int64N(size - l + 1)
		if r.IntN(2) == 0 {
			off &^= BlockSize - 1
		}
		p := make([]byte, l)
		for j := range p {
			p[j] = byte(r.Uint32())
		}
		ta.write(p, off)
	}
}

// verify reads the whole array and compares its SHA-256 with the model's.
func (ta *testArray) verify(what string) {
	ta.t.Helper()
	got := make([]byte, len(ta.ref))
	if _, err := ta.a.ReadAt(got, 0); err != nil {
		ta.t.Fatalf("%s: read: %v", what, err)
	}
	if sha256.Sum256(got) != sha256.Sum256(ta.ref) {
		for i := range got {
			if got[i] != ta.ref[i] {
				s, d, in := ta.a.geo.Locate(int64(i))
				ta.t.Fatalf("%s: first difference at %d (stripe %d data %d +%d)", what, i, s, d, in)
			}
		}
	}
	// Unaligned small reads go through the same paths.
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20; i++ {
		l := r.Int64N(10000) + 1
		off := r.Int64N(int64(len(ta.ref)) - l)
		p := make([]byte, l)
		if _, err := ta.a.ReadAt(p, off); err != nil || !bytes.Equal(p, ta.ref[off:off+l]) {
			ta.t.Fatalf("%s: small read %d+%d: %v", what, off, l, err)
		}
	}
}

func (ta *testArray) members() []Member {
	var out []Member
	for i, f := range ta.faults {
		out = append(out, Member{ta.names[i], f})
	}
	return out
}

// reopen closes the array and assembles it again from the same members.
func (ta *testArray) reopen(o func(*Options)) {
	ta.t.Helper()
	if err := ta.a.Close(); err != nil {
		ta.t.Fatalf("close: %v", err)
	}
	ta.assemble(ta.members(), o)
}

func (ta *testArray) assemble(ms []Member, o func(*Options)) {
	ta.t.Helper()
	opts := testOptions(ta.t, ta.clk, ta.rec)
	if o != nil {
		o(&opts)
	}
	u := ta.a.UUID()
	a, err := Assemble(ms, AssembleOptions{UUID: &u}, opts)
	if err != nil {
		ta.t.Fatalf("assemble: %v", err)
	}
	ta.a = a
}

func waitIdle(t *testing.T, a *Array) {
	t.Helper()
	if err := a.WaitIdle(context.Background()); err != nil {
		t.Fatal(err)
	}
}

type levelCase struct {
	name string
	co   CreateOptions
	n    int
}

func levelCases() []levelCase {
	c := func(l Level, lay Layout, n int) levelCase {
		return levelCase{fmt.Sprintf("%v-%v-%d", l, lay, n), CreateOptions{Level: l, Layout: lay, Chunk: 8192, BitmapChunk: 64 << 10, JournalSize: 256 << 10}, n}
	}
	return []levelCase{
		c(Raid0, 0, 3), c(Raid1, 0, 2), c(Raid1, 0, 3), c(Raid5, 0, 3), c(Raid5, 0, 4), c(Raid6, 0, 4), c(Raid6, 0, 5),
		c(Raid10, Near2, 4), c(Raid10, Near2, 3), c(Raid10, Far2, 4), c(Raid10, Offset2, 3),
	}
}

const testMemberSize = 1 << 20

// parkedRebuild waits until a's background rebuild is parked on its pacing
// timer (the only timer an array arms) or has finished, and reports whether
// it has finished. Tests advance the fake clock only then, so fake time
// never passes while the rebuild works. (Yielding a fixed number of times
// instead let a rebuild starved of CPU on a loaded machine find seconds of
// fake time gone at once and finish in one burst, past every point the
// tests look at: "no superblock recorded the rebuild's position".)
func parkedRebuild(t *testing.T, clk *clock.Fake, a *Array) (finished bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if a.Status().State == "clean" {
			return true
		}
		if clk.Pending() > 0 {
			return false
		}
		if time.Now().After(deadline) {
			t.Fatalf("rebuild neither waits on the clock nor finishes: %+v", a.Status())
		}
		runtime.Gosched()
	}
}
