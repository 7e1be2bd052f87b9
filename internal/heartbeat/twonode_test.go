package heartbeat

import "testing"

// Two voters, no witness (docs/two-node.md rule 1): a holder that loses its
// peer loses its lease, unless it self-grants; self-granting it keeps the
// group with no gap, and when the peer is back both grants carry it on.
func TestTwoNodeSelfGrantedLease(t *testing.T) {
	s := newSim(t, []string{"a", "b"}, 1)
	s.setState(map[string]GroupState{"g": {Holder: "a", Epoch: 1}})
	s.run(ms(500))
	if _, _, ok := s.engines[0].Lease("g", s.now); !ok {
		t.Fatal("a holds no lease with both voters up")
	}
	cut := true
	s.drop = func(from, to, link int) bool { return cut }
	s.run(ms(300))
	if _, _, ok := s.engines[0].Lease("g", s.now); ok {
		t.Fatal("a kept its lease with one of two grants")
	}
	s.changes[0] = nil

	// Self-granted: the lease comes back and stays for as long as the cut.
	s.engines[0].SetTwoNode(true, true)
	s.run(ms(20))
	for range 20 {
		s.run(ms(50))
		if _, _, ok := s.engines[0].Lease("g", s.now); !ok {
			t.Fatalf("self-granted lease lapsed at %v", s.now.Sub(t0))
		}
	}
	// The peer is back: both grants again, with no gap in between.
	cut = false
	s.changes[0] = nil
	s.engines[0].SetTwoNode(false, true)
	for range 20 {
		s.run(ms(25))
		if _, _, ok := s.engines[0].Lease("g", s.now); !ok {
			t.Fatalf("lease lapsed at %v after the peer came back", s.now.Sub(t0))
		}
	}
	if c, ok := s.findChange(0, LeaseLost, ""); ok {
		t.Fatalf("lease lost at %v while going back to two grants", c.At.Sub(t0))
	}
}

// A node that refuses its peer (confirmed off, not re-added) grants it
// nothing and forgets what it promised it: its own claim on the group at
// a new epoch is granted by its voter at once.
func TestTwoNodeRefusedPeerGetsNoGrant(t *testing.T) {
	s := newSim(t, []string{"a", "b"}, 1)
	s.setState(map[string]GroupState{"g": {Holder: "a", Epoch: 1}})
	s.run(ms(500))
	// b fenced a (a's messages are cut; its promise to a is fresh).
	s.drop = func(from, to, link int) bool { return from == 0 || to == 0 }
	s.engines[1].SetTwoNode(true, false)
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
		t.Fatal("b lost its self-granted lease when a came back")
	}
}
