package heartbeat

import "testing"

// Two voters, no witness (docs/two-node.md rule 1). A holder whose peer is
// lost keeps its lease without a lapse when it extends alone; without it,
// it loses it. Extending alone does not win a lease at a new epoch.
func TestTwoNodeHolderExtendsAlone(t *testing.T) {
	for _, alone := range []bool{false, true} {
		s := newSim(t, []string{"a", "b"}, 1)
		for _, e := range s.engines {
			e.SetTwoNode(alone, false)
		}
		s.setState(map[string]GroupState{"g": {Holder: "a", Epoch: 1}})
		s.run(ms(500))
		if _, _, ok := s.engines[0].Lease("g", s.now); !ok {
			t.Fatal("a holds no lease with both voters up")
		}
		cut := true
		s.drop = func(from, to, link int) bool { return cut }
		s.run(ms(1000))
		_, lost := s.findChange(0, LeaseLost, "")
		if !alone {
			if !lost {
				t.Fatal("a kept its lease with one grant of two, not extending alone")
			}
			continue
		}
		if lost {
			t.Fatal("the holder's lease lapsed when its peer was lost")
		}
		// A new epoch on b (as if committed before the cut): one grant does
		// not win it.
		s.engines[1].SetState(map[string]GroupState{"g": {Holder: "b", Epoch: 2}}, 2)
		s.run(ms(300))
		if _, _, ok := s.engines[1].Lease("g", s.now); ok {
			t.Fatal("b won a lease at a new epoch with its own grant alone")
		}
		cut = false
		s.run(ms(500))
		if _, ok := s.findChange(0, LeaseLost, ""); ok {
			t.Fatal("a's lease lapsed when the peer came back")
		}
	}
}

// A solo node (its peer confirmed off, or not a voter) wins its leases
// alone, grants its peer nothing and forgets what it promised it: its own
// claim at a new epoch is granted at once.
func TestTwoNodeSoloRefusesThePeer(t *testing.T) {
	s := newSim(t, []string{"a", "b"}, 1)
	s.setState(map[string]GroupState{"g": {Holder: "a", Epoch: 1}})
	s.run(ms(500))
	// b fenced a (a's messages are cut; b's promise to a is fresh).
	s.drop = func(from, to, link int) bool { return from == 0 || to == 0 }
	s.engines[1].SetTwoNode(false, true)
	s.engines[1].SetState(map[string]GroupState{"g": {Holder: "b", Epoch: 2}}, 2)
	s.run(ms(60)) // less than the promise b gave a
	if _, _, ok := s.engines[1].Lease("g", s.now); !ok {
		t.Fatal("b's own voter still bound by its promise to the fenced a")
	}
	// a comes back (rebooted, stale state naming itself): b grants it nothing.
	s.drop = func(from, to, link int) bool { return false }
	s.engines[0].SetState(map[string]GroupState{"g": {Holder: "a", Epoch: 1}}, 1)
	s.run(ms(500))
	if _, _, ok := s.engines[0].Lease("g", s.now); ok {
		t.Fatal("b granted the refused peer a lease")
	}
	if _, _, ok := s.engines[1].Lease("g", s.now); !ok {
		t.Fatal("b lost its lease when a came back")
	}
}
