package volume

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"tandem/internal/replication"
)

// Linearizability of the volume as its clients see it, across a
// disconnect and resync, two primary crashes with the secondary taking
// over at a newer epoch, and the crashed node's return and resync: in sync
// mode the whole history is one register per block (no acknowledged write
// is lost, no read sees a write that is later undone); in async mode each
// primary's tenure is, and what a crash loses stays within max_lag.

const linClients = 4

// linRun drives the scenario; between its steps the clients keep going.
// crashed is called after each takeover with the segment that ended and
// what the new primary's blocks held.
func linRun(t *testing.T, p *pair, w *workload, crashed func(seg int, vals []uint64)) {
	p.waitFor("connected", p.inSync)
	p.promote(0, 1)
	w.serve(p.vols[0])
	w.start()
	defer func() {
		select {
		case <-w.stop:
		default: // failed: clients may wait on a suspended volume
			for _, v := range p.vols {
				if v != nil {
					v.Close()
				}
			}
			w.halt()
		}
	}()
	w.waitOps(p, 300)

	// The link drops: a goes on alone (in sync mode once b is
	// outdated), then they resync under load.
	phase := func(what string) { t.Logf("%v: %s", time.Duration(w.h.now()), what) }
	phase("partition")
	p.net.Partition("a", "b")
	p.waitFor("a alone", p.alone(0))
	w.waitOps(p, 200)
	phase("heal")
	p.net.Heal("a", "b")
	p.waitFor("resynced after the partition", p.inSync)
	phase("resynced")
	w.waitOps(p, 200)

	// a crashes; b takes over at epoch 2; a comes back and resyncs.
	// Then the same the other way round.
	for i, epoch := range []replication.Epoch{2, 3} {
		dead, heir := i, 1-i
		phase(fmt.Sprintf("%s crashes (%s, lag %d bytes)", p.names[dead], p.brief(dead), p.vols[dead].Status().LagBytes))
		w.crashed()
		p.crashFrozen(dead, epoch)
		p.takeOver(heir, epoch)
		w.endSegment(p)
		crashed(i, w.readAll(t, p.vols[heir]))
		w.serve(p.vols[heir])
		w.waitOps(p, 300)
		phase(p.names[dead] + " restarts")
		p.restart(dead)
		p.waitFor(p.names[dead]+" resynced from "+p.names[heir], p.inSync)
		phase(p.names[dead] + " resynced")
		w.waitOps(p, 200)
	}
	w.halt()
	for _, err := range w.oddErrors() {
		t.Errorf("a client saw: %v", err)
	}
	w.readAll(t, p.vols[0])
	if err := p.vols[0].Flush(); err != nil {
		t.Fatal(err)
	}
	// Async: the last writes may still be on their way.
	p.waitFor("in sync at the end", func() bool { return p.inSync() && p.vols[0].Status().LagBytes == 0 })
	if !bytes.Equal(p.data(0), p.data(1)) {
		t.Fatal("the replicas differ at the end")
	}
}

// linStats logs what the history holds, to show the runs reach it.
func linStats(t *testing.T, ops []regOp) {
	var writes, reads, unknown int
	for _, op := range ops {
		switch {
		case op.outcome == regUnknown:
			unknown++
		case op.write:
			writes++
		default:
			reads++
		}
	}
	t.Logf("%d acknowledged writes, %d reads, %d operations with unknown outcome", writes, reads, unknown)
}

// surelyLost lists the acknowledged writes of segments up to seg that a
// replica holding vals surely lacks: its block holds nothing, a value no
// write wrote, or a write that returned before the acknowledged one was
// issued.
func surelyLost(ops []regOp, seg int, vals []uint64) []regOp {
	byValue := map[uint64]regOp{}
	for _, op := range ops {
		if op.write {
			byValue[op.value] = op
		}
	}
	var lost []regOp
	for _, op := range ops {
		if !op.write || op.outcome != regOK || op.segment > seg {
			continue
		}
		held, ok := byValue[vals[op.block]]
		if vals[op.block] == 0 || !ok || held.outcome == regOK && held.ret < op.call {
			lost = append(lost, op)
		}
	}
	return lost
}

func TestLinearizableSync(t *testing.T) {
	seed := testSeed(t)
	p := newPair(t, replication.Sync, clean(), replication.UpToDate)
	// Frames spend a while on the wire, so crashes catch writes sent and
	// not yet applied, and acknowledgements not yet back.
	p.net.SetDelay(500 * time.Microsecond)
	h := newHistory()
	w := newWorkload(h, seed, linClients)
	linRun(t, p, w, func(seg int, vals []uint64) {
		ops := h.snapshot()
		if lost := surelyLost(ops, seg, vals); len(lost) > 0 {
			t.Errorf("takeover %d: %d acknowledged writes lost, first %+v", seg+1, len(lost), lost[0])
		}
	})
	ops := h.snapshot()
	linStats(t, ops)
	h.checkLinearizable(t, "sync", h.operations(ops))
}

func TestAsyncLossWithinMaxLag(t *testing.T) {
	const maxLag = 16 << 10
	seed := testSeed(t)
	p := newPairWith(t, replication.Async, clean(), replication.UpToDate, pairOptions{tune: func(c *replication.Config) {
		c.MaxLagBytes, c.MaxLagTime = maxLag, 200*time.Millisecond
	}})
	// The peer's acknowledgements take a while: the lag fills up.
	p.net.SetDelay(2 * time.Millisecond)
	h := newHistory()
	w := newWorkload(h, seed, linClients)
	w.ownBlocks = true
	init := make([]uint64, len(regOffsets))
	var inits [][]uint64 // each segment's first values
	inits = append(inits, init)
	var lostBytes []int
	linRun(t, p, w, func(seg int, vals []uint64) {
		lost := segmentLoss(t, h.snapshot(), seg, inits[seg], vals)
		lostBytes = append(lostBytes, len(lost)*regBlock)
		if len(lost)*regBlock > maxLag {
			t.Errorf("takeover %d lost %d acknowledged bytes, more than max_lag (%d): %+v", seg+1, len(lost)*regBlock, maxLag, lost)
		}
		inits = append(inits, vals)
	})
	t.Logf("acknowledged bytes lost at each takeover: %v (max_lag %d)", lostBytes, maxLag)
	ops := h.snapshot()
	linStats(t, ops)
	// Each primary's tenure is linearizable from what it started with.
	for seg, first := range inits {
		var segOps []regOp
		for _, op := range ops {
			if op.segment == seg {
				segOps = append(segOps, op)
			}
		}
		pops := h.operations(segOps)
		if seg > 0 {
			start := h.segEnd[seg-1]
			for b, v := range first {
				pops = append(pops, porcupine.Operation{ClientId: linClients + 1, Input: regInput{write: true, block: b, value: v},
					Call: start - 2, Output: uint64(0), Return: start - 1})
			}
		}
		h.checkLinearizable(t, "async-tenure-"+string(rune('0'+seg)), pops)
	}
}

// segmentLoss returns the acknowledged writes of segment seg that the
// replica taking over lacks. Each block is written by one client, so its
// writes are in that client's order and the replica must hold a prefix
// of them; and since the secondary applies writes in the order sent, a
// write it holds implies every write acknowledged before that one was
// issued (on any block).
func segmentLoss(t *testing.T, ops []regOp, seg int, init, vals []uint64) []regOp {
	t.Helper()
	writes := make([][]regOp, len(regOffsets))
	for _, op := range ops {
		if op.write && op.segment == seg {
			writes[op.block] = append(writes[op.block], op)
		}
	}
	held := make([]int, len(regOffsets)) // index of the last write held, -1: none
	var lost []regOp
	for b := range writes {
		slices.SortFunc(writes[b], func(x, y regOp) int { return int(x.call - y.call) })
		held[b] = -1
		if vals[b] != init[b] {
			held[b] = slices.IndexFunc(writes[b], func(op regOp) bool { return op.value == vals[b] })
			if held[b] < 0 {
				t.Fatalf("takeover %d: block %d holds %d, which no write of the tenure wrote", seg+1, b, vals[b])
			}
		}
		for _, op := range writes[b][held[b]+1:] {
			if op.outcome == regOK {
				lost = append(lost, op)
			}
		}
	}
	for _, l := range lost {
		for b := range writes {
			for _, op := range writes[b][:held[b]+1] {
				if op.call > l.ret {
					t.Errorf("takeover %d: write order not kept: the new primary holds write %d (block %d, issued at %v) and lacks write %d (block %d), acknowledged before it at %v",
						seg+1, op.value, b, time.Duration(op.call), l.value, l.block, time.Duration(l.ret))
				}
			}
		}
	}
	return lost
}
