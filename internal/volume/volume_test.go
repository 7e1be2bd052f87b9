package volume

import (
	"bytes"
	"cmp"
	"math/rand/v2"
	"testing"
	"time"

	"tandem/internal/blockdev"
	"tandem/internal/replication"
	"tandem/internal/replication/link"
	"tandem/internal/volume/meta"
)

// pair is two nodes' replicas of one volume on an in-memory network, real
// goroutines and the wall clock: the engine as the CLI runs it, minus TCP.
type pair struct {
	t      *testing.T
	net    *link.MemNetwork
	fencer *replication.MemFencer
	id     replication.VolumeID
	devs   [2]*blockdev.Mem
	metas  [2]*blockdev.Mem // separate meta devices (pairOptions.metaApart), else nil
	vols   [2]*Volume
	names  [2]string
	mode   replication.Mode
	size   int64                     // of the volume's data
	tune   func(*replication.Config) // nil: the defaults
}

const pairSize = 8 << 20

func newPair(t *testing.T, mode replication.Mode, gen replication.GenIDs, disk replication.DiskState) *pair {
	return newPairWith(t, mode, gen, disk, pairOptions{})
}

// pairOptions changes the pair newPair makes.
type pairOptions struct {
	// size of the volume's data (0: pairSize) and of an activity-log
	// extent (0: 1 MiB); the log holds 4 extents.
	size, extent int64
	tune         func(*replication.Config) // applied to both replicas' configuration
	// metaApart keeps each replica's metadata on a device of its own (a
	// separate meta file): a bitmap write and its flush then make no data
	// durable.
	metaApart bool
}

func newPairWith(t *testing.T, mode replication.Mode, gen replication.GenIDs, disk replication.DiskState, o pairOptions) *pair {
	p := &pair{t: t, net: link.NewMemNetwork(nil), fencer: replication.NewMemFencer(), names: [2]string{"a", "b"}, mode: mode,
		size: cmp.Or(o.size, pairSize), tune: o.tune}
	for i := range 2 {
		p.devs[i] = blockdev.NewMem(p.size + 1<<20)
		var mdev blockdev.Device
		if o.metaApart {
			p.devs[i], p.metas[i] = blockdev.NewMem(p.size), blockdev.NewMem(1<<20)
			mdev = p.metas[i]
		}
		md, err := meta.Create(p.devs[i], meta.CreateOptions{ID: p.id, Node: p.names[i], Peer: p.names[1-i], Meta: mdev,
			DataSize: p.size, ExtentSize: cmp.Or(o.extent, 1<<20), ALExtents: 4, Gen: gen, Disk: disk})
		if err != nil {
			t.Fatal(err)
		}
		p.id = md.ID()
		md.Close()
	}
	for i := range 2 {
		p.open(i)
	}
	t.Cleanup(func() {
		for _, v := range p.vols {
			if v != nil {
				v.Close()
			}
		}
	})
	return p
}

func (p *pair) open(i int) {
	var mdev blockdev.Device
	if p.metas[i] != nil {
		mdev = p.metas[i]
	}
	md, err := meta.Open(p.devs[i], meta.OpenOptions{Meta: mdev})
	if err != nil {
		p.t.Fatal(err)
	}
	var v *Volume
	ep, err := p.net.Endpoint(link.MemConfig{Self: p.names[i], Peer: p.names[1-i], Volume: p.id, Size: uint64(md.DataSize()),
		Epoch: md.State().Epoch, Window: 16, Reconnect: 20 * time.Millisecond, Timeout: time.Second,
		Fenced: link.MessageFenced})
	if err != nil {
		p.t.Fatal(err)
	}
	cfg := replication.Config{Mode: p.mode, FenceRetry: 50 * time.Millisecond}
	if p.tune != nil {
		p.tune(&cfg)
	}
	v, err = Open(Options{Name: "v", Meta: md, Link: ep, Fencer: p.fencer, Replication: cfg})
	if err != nil {
		p.t.Fatal(err)
	}
	p.vols[i] = v
}

// crash stops node i's volume abruptly: its device keeps only what was
// flushed.
func (p *pair) crash(i int) {
	dev := p.devs[i]
	crashed := dev.Crash()
	if p.metas[i] != nil {
		p.metas[i] = p.metas[i].Crash()
	}
	p.vols[i].Close() // the goroutines stop; writes after the crash point are dropped below
	p.vols[i] = nil
	p.devs[i] = crashed
}

func (p *pair) waitFor(what string, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s: a=%+v b=%+v", what, p.brief(0), p.brief(1))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (p *pair) brief(i int) string {
	if p.vols[i] == nil {
		return "down"
	}
	s := p.vols[i].Status()
	return s.Role + "/" + s.Disk + " " + s.Connection + " peer " + s.PeerRole + "/" + s.PeerDisk + " sync " + s.Sync + " oos " + itoa(s.OutOfSync)
}

func itoa(n int64) string { return time.Duration(n).String() }

func (p *pair) connected() bool {
	for _, v := range p.vols {
		if v == nil || v.Status().Connection != "Connected" {
			return false
		}
	}
	return true
}

func (p *pair) inSync() bool {
	if !p.connected() {
		return false
	}
	for _, v := range p.vols {
		s := v.Status()
		if s.Disk != "UpToDate" || s.PeerDisk != "UpToDate" || s.Sync != "" || s.OutOfSync != 0 {
			return false
		}
	}
	return true
}

func (p *pair) promote(i int, epoch replication.Epoch) {
	p.t.Helper()
	p.fencer.SetHolder(p.id, p.names[i], epoch)
	if err := p.vols[i].Promote(epoch, false); err != nil {
		p.t.Fatal(err)
	}
}

// data reads replica i's data area straight from its device.
func (p *pair) data(i int) []byte {
	return p.devs[i].Bytes()[:p.size]
}

func writeRandom(t *testing.T, v *Volume, rng *rand.Rand, n int) {
	t.Helper()
	for range n {
		b := make([]byte, 4096*(1+rng.IntN(16)))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		off := int64(rng.IntN(pairSize/4096-16)) * 4096
		if _, err := v.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
}

func clean() replication.GenIDs { return replication.GenIDs{Current: 0x1234} }

func TestSyncWritesReachTheSecondary(t *testing.T) {
	p := newPair(t, replication.Sync, clean(), replication.UpToDate)
	p.waitFor("connected", p.inSync)
	p.promote(0, 1)
	rng := rand.New(rand.NewPCG(1, 2))
	writeRandom(t, p.vols[0], rng, 200)
	// Acknowledged and flushed in sync mode: durable on b already.
	if !bytes.Equal(p.data(0), p.data(1)) {
		t.Fatal("replicas differ after flushed sync writes")
	}
	if _, err := p.vols[1].WriteAt(make([]byte, 4096), 0); err == nil {
		t.Fatal("the secondary accepted a write")
	}
}

func TestResyncAfterDisconnectMovesOnlyDirtyRegions(t *testing.T) {
	p := newPair(t, replication.Sync, clean(), replication.UpToDate)
	p.waitFor("connected", p.inSync)
	p.promote(0, 1)
	rng := rand.New(rand.NewPCG(3, 4))
	writeRandom(t, p.vols[0], rng, 20)
	p.net.Partition("a", "b")
	p.waitFor("a alone", func() bool { return p.vols[0].Status().Connection != "Connected" })
	// The fencer outdates b, then writes go on alone.
	b := bytes.Repeat([]byte{7}, 64<<10)
	if _, err := p.vols[0].WriteAt(b, 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := p.vols[0].WriteAt(b, 5<<20); err != nil {
		t.Fatal(err)
	}
	if err := p.vols[0].Flush(); err != nil {
		t.Fatal(err)
	}
	if !p.fencer.Outdated(p.id, "b") {
		t.Fatal("a went on alone without outdating b")
	}
	if oos := p.vols[0].Status().OutOfSync; oos != 128<<10 {
		t.Fatalf("out of sync %d bytes, want %d", oos, 128<<10)
	}
	p.net.Heal("a", "b")
	p.waitFor("resynced", p.inSync)
	if !bytes.Equal(p.data(0), p.data(1)) {
		t.Fatal("replicas differ after resync")
	}
	var moved int64
	for _, e := range p.vols[0].Status().Events {
		if e.Kind == "resync_finished" {
			moved, _ = e.Attrs["bytes"].(int64)
		}
	}
	if moved != 128<<10 {
		t.Fatalf("resync moved %d bytes, want %d", moved, 128<<10)
	}
}

func TestPrimaryCrashSecondaryTakesOverWithEveryAckedWrite(t *testing.T) {
	p := newPair(t, replication.Sync, clean(), replication.UpToDate)
	p.waitFor("connected", p.inSync)
	p.promote(0, 1)
	rng := rand.New(rand.NewPCG(5, 6))
	writeRandom(t, p.vols[0], rng, 50)
	// Writes acknowledged but not flushed by the client: sync mode has
	// them on b's disk (not necessarily durable, but b does not crash).
	last := bytes.Repeat([]byte{9}, 8192)
	if _, err := p.vols[0].WriteAt(last, 3<<20); err != nil {
		t.Fatal(err)
	}
	want := append([]byte(nil), p.data(0)...)
	p.crash(0)
	p.waitFor("b sees a gone", func() bool { return p.vols[1].Status().Connection != "Connected" })
	p.promote(1, 2)
	got := make([]byte, pairSize)
	if _, err := p.vols[1].ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the promoted secondary lacks acknowledged writes")
	}
	// b writes alone (a is outdated through the fencer), then a comes
	// back: it crashed as primary of epoch 1, b is primary at 2; a must
	// resync from b.
	writeRandom(t, p.vols[1], rng, 10)
	p.open(0)
	p.waitFor("a resynced from b", p.inSync)
	if !bytes.Equal(p.data(0), p.data(1)) {
		t.Fatal("replicas differ after a's return")
	}
}

func TestInitialFullSync(t *testing.T) {
	p := newPair(t, replication.Sync, replication.GenIDs{}, replication.Inconsistent)
	p.waitFor("connected", p.connected)
	p.fencer.SetHolder(p.id, "a", 1)
	if err := p.vols[0].Promote(1, false); err == nil {
		t.Fatal("an Inconsistent replica was promoted without force")
	}
	if err := p.vols[0].Promote(1, true); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	writeRandom(t, p.vols[0], rng, 30)
	p.waitFor("full sync done", p.inSync)
	if !bytes.Equal(p.data(0), p.data(1)) {
		t.Fatal("replicas differ after the initial sync")
	}
}
