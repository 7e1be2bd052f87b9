package replication

import (
	"testing"
)

// pair returns a model pair, a primary at epoch 1, connected and in sync,
// with no random faults: scenario tests script every step.
func pair(t *testing.T, mode Mode) *sim {
	s := newSim(t, 1, mode)
	s.faults = false
	if err := s.nodes[0].m.Promote(s.now, 1, true); err != nil {
		t.Fatal(err)
	}
	s.epoch, s.holderEpoch = 1, 1
	s.drain()
	s.heal()
	return s
}

// settle delivers every frame and completes every local operation, in
// order, until nothing is left.
func (s *sim) settle() {
	for n := 0; n < 100000; n++ {
		switch {
		case len(s.wire[0]) > 0:
			s.deliver(0)
		case len(s.wire[1]) > 0:
			s.deliver(1)
		case s.nodes[0].m != nil && len(s.nodes[0].inflight) > 0:
			s.complete(0, 0)
		case s.nodes[1].m != nil && len(s.nodes[1].inflight) > 0:
			s.complete(1, 0)
		default:
			return
		}
	}
	s.fail("does not settle")
}

func (s *sim) write(off int64, blocks int) uint64 {
	s.nextReq++
	id := s.nextReq
	data := make([]byte, blocks*simBlock)
	for b := 0; b < blocks; b++ {
		data[b*simBlock] = byte(id)
		data[b*simBlock+1] = byte(id >> 8)
		s.blockWrites[int(off/simBlock)+b] = append(s.blockWrites[int(off/simBlock)+b], id)
	}
	s.writes[id] = &simWrite{id: id, off: off, blocks: blocks}
	p := s.primary()
	s.reqs[id] = p
	s.nodes[p].m.Submit(s.now, Request{ID: id, Op: OpWrite, Off: off, Data: data})
	s.drain()
	return id
}

func TestPromoteAfterCut(t *testing.T) {
	s := pair(t, Async)
	s.write(0, 1)
	s.settle()
	s.linkDown("cut")
	s.promote(1)
	if s.nodes[1].m.role != Primary {
		t.Fatalf("not promoted: %v", s.nodes[1].m)
	}
}
