package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"tandem/internal/testbed"
	"tandem/internal/volume"
)

// Replicated volumes (issue 11) with real processes: `tandem volume` on
// node1 and node2 of a bed, driven through its CLI inside the hosts, data
// written and read from the client host by real NBD clients (nbdcopy, fio
// and tandem's own client where a test must know which writes were
// acknowledged), faults from the bed. The volumes are small, so that the
// whole file runs in about a minute on a busy 2-core machine; every wait
// polls `tandem volume status --json` or the audit log.

const (
	volSize   = 32 << 20
	volRegion = 64 << 10 // the dirty-bitmap granularity (create's default)
	block     = 4 << 10  // the writers' unit
	// volWait bounds every wait for a state: the link's timeout (5 s)
	// plus its reconnect backoff (2 s) several times over, for a loaded
	// machine.
	volWait = 40 * time.Second
)

// The writers' windows: each test writes its own region of the volume.
const (
	fioOff   = 8 << 20  // fio's verified random writes, 8 MiB
	roundOff = 16 << 20 // round r of a failover test: 4 MiB at roundOff + r × 4 MiB
	burstOff = 28 << 20 // what a new primary writes after its promotion
	window   = 4 << 20
)

// TestVolumeFailover: a new volume's initial sync, real clients' data,
// then the primary is killed, frozen and cut off in turn; each time the
// secondary is promoted (no --force: it is UpToDate), serves every write
// the old primary acknowledged before it was lost, takes writes of its
// own, and the old primary comes back without overwriting them and
// resyncs from it.
func TestVolumeFailover(t *testing.T) {
	v := newVolBed(t)
	p := v.newPair("data", 7801, 10809)
	out := p.create(p.reps["node1"], "--size", fmt.Sprint(volSize))
	m := regexp.MustCompile(`uuid ([0-9a-f]{32})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("create printed no UUID: %s", out)
	}
	p.uuid = m[1]
	p.create(p.reps["node2"], "--uuid", p.uuid, "--size", fmt.Sprint(volSize))
	p.up("node1")
	p.up("node2")
	p.waitStatus("node1", "connected, both Inconsistent", func(s volume.Status) bool {
		return s.Connection == "Connected" && s.Disk == "Inconsistent" && s.PeerDisk == "Inconsistent"
	})
	if out, err := p.primary("node1", false); err == nil || !strings.Contains(out, "Inconsistent") {
		t.Errorf("a new replica promoted without --force: %v: %s", err, out)
	}
	start := time.Now()
	if out, err := p.primary("node1", true); err != nil {
		t.Fatalf("the first primary (--force, as the manual says): %v: %s", err, out)
	}
	p.waitInSync("node1", "node2")
	e := p.waitEvent("node2", start, "volume_resync_finished", "")
	if n, _ := e.Attrs["bytes"].(float64); int64(n) != volSize {
		t.Errorf("the initial sync moved %v bytes, want the whole volume (%d)", e.Attrs["bytes"], volSize)
	}
	t.Logf("initial full sync of %d MiB in %v", volSize>>20, e.Time.Sub(start).Round(time.Millisecond))

	// Real clients on the primary's export: nbdcopy of a random image,
	// then fio's verified random writes over part of it.
	img := randomBytes(volSize, uint64(time.Now().UnixNano()))
	p.nbdcopyIn("node1", img)
	p.fio("node1", fioOff, 8<<20)
	model := p.readExport("node1")
	if !bytes.Equal(model[:fioOff], img[:fioOff]) || !bytes.Equal(model[fioOff+8<<20:], img[fioOff+8<<20:]) {
		t.Fatal("the export does not hold the image nbdcopy wrote outside fio's window")
	}
	if got := p.dataArea("node2"); sum(got) != sum(model) {
		t.Fatalf("node2's replica %s differs from what node1 acknowledged %s", sum(got), sum(model))
	}
	t.Logf("nbdcopy and fio (verified) wrote through node1; both replicas hold sha256 %s", sum(model))
	p.notServing("node2")

	rounds := []failoverRound{
		{fault: "SIGKILL", old: "node1", next: "node2", inject: v.bed.Kill, recover: p.up},
		{fault: "SIGSTOP", old: "node2", next: "node1", inject: v.bed.Freeze, recover: func(h string) { v.bed.Thaw(h) }},
		{fault: "cut off", old: "node1", next: "node2", inject: func(h string) testbed.Fault {
			f, err := v.bed.CutOff(h)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}, recover: func(string) {
			if _, err := v.bed.Heal(); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for i, rd := range rounds {
		model = p.failover(i, rd, model)
	}
	p.verify(rounds[len(rounds)-1].next)
}

// failoverRound is one fault of the primary (old) and the promotion of
// its secondary (next).
type failoverRound struct {
	fault     string
	old, next string
	inject    func(host string) testbed.Fault
	recover   func(host string)
}

// failover runs round i over a volume both of whose replicas hold model,
// and returns what they hold after it.
func (p *volPair) failover(i int, rd failoverRound, model []byte) []byte {
	t := p.t
	t.Helper()
	t.Logf("round %d: %s of the primary %s", i+1, rd.fault, rd.old)
	w := p.startWriter(rd.old, uint64(100+i), roundOff+int64(i)*window, window/block, block, 0)
	w.waitAcks(t, 100)
	f := rd.inject(rd.old)
	p.waitStatus(rd.next, "the peer lost", func(s volume.Status) bool { return s.Connection != "Connected" })
	// A primary cut off goes on once its fencer has outdated the peer
	// (standalone: a record on its own disk, docs/volumes.md), so what it
	// acknowledges from then on is its own; what it acknowledged before
	// is on the peer.
	fence := time.Now().Add(time.Hour)
	if rd.fault == "cut off" {
		fence = p.waitEvent(rd.old, f.At, "volume_peer_outdated", "").Time
	}
	w.stop()
	if out, err := p.primary(rd.next, false); err != nil {
		t.Fatalf("promoting %s (UpToDate, peer gone) without --force: %v: %s", rd.next, err, out)
	}
	got := p.readExport(rd.next)
	want, acked := w.expect(model, got, fence)
	if sum(got) != sum(want) {
		t.Fatalf("after the %s, %s serves sha256 %s, want %s (what %s acknowledged): %s",
			rd.fault, rd.next, sum(got), sum(want), rd.old, firstDiff(got, want))
	}
	t.Logf("%s serves all %d writes %s acknowledged before the %s (%d sent): sha256 %s",
		rd.next, acked, rd.old, rd.fault, w.written(), sum(got))

	// The new primary's own writes, which the old one must not undo.
	b := p.startWriter(rd.next, uint64(200+i), burstOff, 256, block, 0)
	b.wait(t)
	snapshot := p.readExport(rd.next)
	if want, _ := b.expect(got, snapshot, time.Now()); sum(want) != sum(snapshot) {
		t.Fatalf("%s lost writes it acknowledged: %s", rd.next, firstDiff(snapshot, want))
	}
	var stray *stampWriter
	if rd.fault == "cut off" {
		// The old primary still runs and serves: a client goes on writing
		// through it, over the new primary's blocks, until the healed link
		// shows it the newer epoch.
		stray = p.startWriter(rd.old, uint64(300+i), burstOff, window/block, block, 20*time.Millisecond)
		stray.waitAcks(t, 5)
	}
	back := time.Now()
	rd.recover(rd.old)
	if stray != nil {
		stray.waitDone(t, volWait)
		if stray.err == nil {
			t.Errorf("the deposed %s went on acknowledging writes: all %d", rd.old, len(stray.acks))
		}
		t.Logf("%s acknowledged %d writes of its own after the cut, then refused more: %v", rd.old, len(stray.acks), stray.err)
	}
	split := p.rejoin(rd.next, rd.old, back)
	if rd.fault != "SIGKILL" {
		d := p.waitEvent(rd.old, back, "volume_deposed", "")
		t.Logf("%s deposed at epoch %d: %s", rd.old, d.Epoch, d.Message)
	}
	if ns, olds := p.status(rd.next), p.status(rd.old); olds.Role != "Secondary" || olds.Epoch != ns.Epoch {
		t.Errorf("%s after rejoining: %s at epoch %d, want Secondary at %s's epoch %d", rd.old, olds.Role, olds.Epoch, rd.next, ns.Epoch)
	}
	if after := p.readExport(rd.next); sum(after) != sum(snapshot) {
		t.Fatalf("%s's data changed when %s came back (split brain %v): %s", rd.next, rd.old, split, firstDiff(after, snapshot))
	}
	if a, b := p.dataArea(rd.old), p.dataArea(rd.next); sum(a) != sum(b) {
		t.Fatalf("after the resync %s's replica %s differs from %s's %s: %s", rd.old, sum(a), rd.next, sum(b), firstDiff(a, b))
	}
	p.notServing(rd.old)
	t.Logf("%s rejoined as %s's secondary (split brain resolved: %v); both replicas sha256 %s", rd.old, rd.next, split, sum(snapshot))
	return snapshot
}

// TestVolumeResyncMovesDirtyRegions: D bytes written while the peer is
// away, by CLI disconnect and by a network partition, cost at most
// 1.1 × D plus the bitmap's rounding to resync, and leave equal replicas.
func TestVolumeResyncMovesDirtyRegions(t *testing.T) {
	v := newVolBed(t)
	p := v.newPair("data", 7801, 10809)
	p.startClean()
	p.waitInSync("node1", "node2")
	c := p.client("node1")
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	chunks := rand.New(rand.NewPCG(seed, 11)).Perm(volSize >> 20)
	for _, how := range []string{"disconnect", "partition"} {
		// Regions written since the peer's last acknowledged flush are
		// resynced too (its cache may be lost): flush first, so only the
		// writes below count.
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		var since time.Time
		if how == "disconnect" {
			p.mustVol(p.reps["node1"], "disconnect", p.name)
			p.waitStatus("node2", "disconnected", func(s volume.Status) bool { return s.Connection != "Connected" })
		} else if _, err := v.bed.Partition("node1", "node2"); err != nil {
			t.Fatal(err)
		}
		writes, d, dirty := scatteredWrites(&chunks, seed)
		for _, w := range writes {
			// Under the partition the first write waits until node1 has
			// outdated its peer (the link's 5 s timeout).
			if _, err := c.WriteAt(w.data, w.off); err != nil {
				t.Fatalf("write at %d: %v", w.off, err)
			}
		}
		since = time.Now()
		if how == "disconnect" {
			p.mustVol(p.reps["node1"], "connect", p.name)
		} else if _, err := v.bed.Heal(); err != nil {
			t.Fatal(err)
		}
		e := p.waitEvent("node1", since, "volume_resync_finished", "")
		p.waitInSync("node1", "node2")
		moved, _ := e.Attrs["bytes"].(float64)
		rounding := dirty - d
		bound := 1.1*float64(d) + float64(rounding)
		t.Logf("%s: wrote D = %d bytes in %d writes over %d regions; resync moved %.0f bytes (%.2f × D; bound 1.1 × D + %d of rounding = %.0f)",
			how, d, len(writes), dirty/volRegion, moved, moved/float64(d), rounding, bound)
		if moved > bound || int64(moved) < d {
			t.Errorf("%s: the resync moved %.0f bytes for D = %d, want between D and %.0f", how, moved, d, bound)
		}
		a, b := p.dataArea("node1"), p.dataArea("node2")
		if sum(a) != sum(b) {
			t.Fatalf("%s: the replicas differ after the resync: %s", how, firstDiff(a, b))
		}
		for _, w := range writes {
			if !bytes.Equal(b[w.off:w.off+int64(len(w.data))], w.data) {
				t.Fatalf("%s: node2 lacks the write at %d", how, w.off)
			}
		}
	}
	c.Close()
	p.verify("node1")
}

// TestVolumeBadInput: a secondary with the wrong key, size or UUID, and a
// third node holding the key, are each refused with a clear reason on
// both sides; the primary's data never changes and its real peer, back,
// resyncs as before.
func TestVolumeBadInput(t *testing.T) {
	v := newVolBed(t)
	p := v.newPair("data", 7801, 10809)
	p.startClean()
	p.nbdcopyIn("node1", randomBytes(volSize, uint64(time.Now().UnixNano())))
	p.waitInSync("node1", "node2")
	held := sum(p.readExport("node1"))
	unchanged := func(after string) {
		t.Helper()
		if s := p.status("node1"); s.Role != "Primary" {
			t.Errorf("after %s node1 is %s, want still Primary", after, s.Role)
		}
		if got := sum(p.readExport("node1")); got != held {
			t.Fatalf("after %s the primary's data changed: sha256 %s, was %s", after, got, held)
		}
	}

	// The real secondary leaves; misconfigured ones take its place, where
	// node1 dials its peer.
	p.down(p.reps["node2"])
	otherKey := filepath.Join(v.dir, "other.key")
	if out, err := v.run("node2", "keygen", "--out", otherKey); err != nil {
		t.Fatalf("keygen: %v: %s", err, out)
	}
	for _, c := range []struct {
		what  string
		flags []string
		want  string // in the refusal node1 reports
		bad   string // in the one the misconfigured replica reports
	}{
		// The listener's words depend on which side's TLS check fails
		// first: here node1's, and node2 hears only "bad certificate".
		{"another cluster key", []string{"--uuid", p.uuid, "--size", fmt.Sprint(volSize), "--key", otherKey}, "holds another cluster key", "peer identity|bad certificate"},
		{"another size", []string{"--uuid", p.uuid, "--size", fmt.Sprint(volSize / 2)}, "size differs", "size differs"},
		{"another UUID", []string{"--uuid", "0123456789abcdef0123456789abcdef", "--size", fmt.Sprint(volSize)}, "volume ID differs", "volume ID differs"},
	} {
		bad := p.replica("node2", "node2", "node1", "bad-"+strings.ReplaceAll(c.what, " ", "-"))
		p.create(bad, c.flags...)
		since := time.Now()
		p.upReplica(bad)
		e := p.waitEvent("node1", since, "", c.want)
		t.Logf("%s: node1 reports %s: %s", c.what, e.Kind, e.Message)
		e = p.waitEventOf(bad, since, "", c.bad)
		t.Logf("%s: the misconfigured node2 reports %s: %s", c.what, e.Kind, e.Message)
		if s := p.status("node1"); s.Connection == "Connected" {
			t.Errorf("%s: node1 connected to a replica with %s", c.what, c.what)
		}
		p.down(bad)
		unchanged(c.what)
	}

	p.up("node2")
	p.waitInSync("node1", "node2")
	linked := p.status("node2").Link

	// A third node holding the key, claiming node1's name from the
	// witness host, dials node2 while the real node1 is connected.
	third := p.replica("witness", "node1", "node2", "third")
	p.create(third, "--uuid", p.uuid, "--size", fmt.Sprint(volSize), "--assume-clean")
	since := time.Now()
	p.upReplica(third)
	e := p.waitEventOf(third, since, "", "only one connection")
	t.Logf("third connection: %s: %s", e.Kind, e.Message)
	p.waitEvent("node2", since, "", "only one connection")
	p.down(third)
	if s := p.status("node2"); s.Connection != "Connected" || s.Link == nil || linked == nil || s.Link.Since != linked.Since {
		t.Errorf("the third connection disturbed the live session: %+v, was %+v", s.Link, linked)
	}
	unchanged("a third connection")
	p.waitInSync("node1", "node2")
}

// TestVolumeOutdatedPromotion: an async primary that went ahead marks its
// peer Outdated; once the primary is gone, promoting the Outdated replica
// is refused without --force and changes nothing, and allowed with it.
func TestVolumeOutdatedPromotion(t *testing.T) {
	// Small writes: all of them and the outdate frame fit in the sockets'
	// buffers, so node2 gets the frame (TestVolumeAsyncAheadLosesAtMostMaxLag
	// is the case where they do not).
	p, _ := aheadThenKilled(t, 32, block)
	p.waitStatus("node2", "Outdated", func(s volume.Status) bool { return s.Disk == "Outdated" })
	before := sum(p.dataArea("node2"))
	out, err := p.primary("node2", false)
	if err == nil || !strings.Contains(out, "Outdated") || !strings.Contains(out, "force") {
		t.Fatalf("promoting an Outdated replica without --force: %v: %s; want a refusal naming Outdated and --force", err, out)
	}
	t.Logf("refused: %s", strings.TrimSpace(out))
	if s := p.status("node2"); s.Role != "Secondary" || s.Disk != "Outdated" {
		t.Errorf("after the refused promotion node2 is %s, %s; want Secondary, Outdated", s.Role, s.Disk)
	}
	if after := sum(p.dataArea("node2")); after != before {
		t.Errorf("the refused promotion changed node2's data: %s, was %s", after, before)
	}
	if out, err := p.primary("node2", true); err != nil {
		t.Fatalf("promoting the Outdated replica with --force: %v: %s", err, out)
	}
	if got := sum(p.readExport("node2")); got != before {
		t.Errorf("node2's export serves %s, its replica holds %s", got, before)
	}
}

// TestVolumeAsyncAheadLosesAtMostMaxLag: docs/replication.md, async
// mode: "acknowledged writes the peer lacks are at most max_lag; with
// ahead the peer is Outdated while it trails by more, so it cannot be
// promoted without force". Here the link is congested when the primary
// goes ahead, as it is whenever a peer falls behind: a 1 MiB write fills
// the sockets' buffers, the outdate frame waits behind it, and the
// primary acknowledges more writes on its own; then it dies. Its peer
// must not be promotable without --force while it lacks more than
// max-lag of what was acknowledged.
func TestVolumeAsyncAheadLosesAtMostMaxLag(t *testing.T) {
	if os.Getenv("TANDEM_KNOWN_BUGS") == "" {
		t.Skip("a standalone limit (docs/replication.md, README \"Not finished\"): an async primary that goes ahead acknowledges once the peer is outdated by the fencer, and the standalone fencer records that on the primary only, so a peer frozen then left alive by the primary's death is promoted without --force lacking more than max_lag; in a cluster raft is the fencer (TestVolumeGroupAsyncAheadNeverPromotesTheStalePeer); TANDEM_KNOWN_BUGS=1 runs this reproducer")
	}
	const maxLag = 64 << 10
	p, w := aheadThenKilled(t, 4, 1<<20)
	s := p.status("node2")
	t.Logf("node2 after node1 died: disk %s, connection %s", s.Disk, s.Connection)
	out, err := p.primary("node2", false)
	if err != nil {
		t.Logf("refused: %s", strings.TrimSpace(out))
		return
	}
	got := p.readExport("node2")
	var lost int
	for i := range len(w.acks) {
		if !bytes.Equal(got[w.off(i):w.off(i)+int64(w.bs)], w.block(i)) {
			lost += w.bs
		}
	}
	// A write larger than max-lag goes alone (docs/replication.md), so
	// the peer may lack one such write.
	if allowed := max(maxLag, w.bs); lost > allowed {
		t.Errorf("node2 (%s) was promoted without --force lacking %d bytes that node1 acknowledged, at most %d allowed (max-lag %d, writes of %d): "+
			"the async primary went ahead and acknowledged writes before its peer knew it was Outdated", s.Disk, lost, allowed, maxLag, w.bs)
	}
}

// aheadThenKilled runs an async pair (on-lag ahead, max-lag 64 KiB) where
// node2 hangs while node1 writes n blocks of bs bytes and goes ahead;
// then node1 dies and node2 wakes up. The outdate frame waits in node2's
// socket behind the writes that node1 had sent.
func aheadThenKilled(t *testing.T, n, bs int) (*volPair, *stampWriter) {
	t.Helper()
	v := newVolBed(t)
	p := v.newPair("lag", 7802, 10810)
	p.startClean("--mode", "async", "--on-lag", "ahead", "--max-lag", "64K")
	since := time.Now()
	v.bed.Freeze("node2")
	w := p.startWriter("node1", 5, 0, n, bs, 0)
	w.wait(t)
	e := p.waitEvent("node1", since, "volume_ahead", "")
	t.Logf("node1 went ahead (%s) and acknowledged %d writes of %d bytes", e.Message, len(w.acks), bs)
	v.bed.Kill("node1")
	v.bed.Thaw("node2")
	p.waitStatus("node2", "the peer gone", func(s volume.Status) bool { return s.Connection != "Connected" })
	return p, w
}

// aWrite is one write of scatteredWrites.
type aWrite struct {
	off  int64
	data []byte
}

// scatteredWrites plans writes into five 1 MiB chunks (16 bitmap regions
// each) taken from chunks: one whole chunk; 8 whole regions in each of two
// more; 8 writes of 4 KiB, each inside a region of the fourth; 4 of 8 KiB
// across the boundary of two regions of the fifth. It returns them, their
// bytes (D) and the bytes of the regions they dirty (D plus the bitmap's
// rounding).
func scatteredWrites(chunks *[]int, seed uint64) (ws []aWrite, d, dirty int64) {
	next := func() int64 {
		c := (*chunks)[0]
		*chunks = (*chunks)[1:]
		return int64(c) << 20
	}
	add := func(off, n int64) {
		ws = append(ws, aWrite{off, randomBytes(int(n), seed+uint64(off))})
		d += n
	}
	add(next(), 1<<20)
	dirty += 1 << 20
	for _, odd := range []int64{0, 1} {
		c := next()
		for k := range int64(8) {
			add(c+(2*k+odd)*volRegion, volRegion)
		}
		dirty += 8 * volRegion
	}
	c := next()
	for k := range int64(8) {
		add(c+2*k*volRegion+7*512, block)
	}
	dirty += 8 * volRegion
	c = next()
	for k := range int64(4) {
		add(c+(4*k+2)*volRegion-block, 2*block) // regions 4k+1 and 4k+2
	}
	dirty += 8 * volRegion
	return ws, d, dirty
}
