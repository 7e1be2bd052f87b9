package consensus

import (
	"bytes"
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"tandem/internal/state"
)

// Two-node mode's raft steps on tandem's own member (stores on disk, the
// authenticated transport): a cut-off pair cannot commit; the survivor of
// a fence recovers to a sole voter, commits alone, still is after a
// restart, is not deposed by its returning peer, and adds it back; the
// peer then has the survivor's state.
func TestRecoverToSoleVoterAndReadd(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	voters := loopbackVoters(t, "a", "b")
	var cut atomic.Bool
	cfgOf := func(n, dir string) Config {
		return Config{Self: n, Voters: voters, Key: key, Dir: dir, Timeout: 100 * time.Millisecond,
			Cut: func(from, to string) bool { return cut.Load() }}
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	start := func(n, dir string) *Consensus {
		c, err := Start(cfgOf(n, dir))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Shutdown() })
		return c
	}
	a, b := start("a", dirA), start("b", dirB)
	eventually(t, "a leader", func() bool { return a.IsLeader() || b.IsLeader() })
	propose := func(c *Consensus, cmd state.Command, within time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		return c.Propose(ctx, cmd)
	}
	if err := propose(a, state.Command{Op: state.OpPlace, Group: "g", Holder: "a"}, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b applied g", func() bool { return b.State().Groups["g"] != nil })
	if vs, _ := a.Voters(); !slices.Equal(vs, []string{"a", "b"}) || a.SoleVoter() {
		t.Fatalf("voters %v at start", vs)
	}

	// The pair is cut: neither commits with one vote of two.
	cut.Store(true)
	if err := propose(a, state.Command{Op: state.OpPlace, Group: "h", Holder: "a"}, time.Second); err == nil {
		t.Fatal("a committed with one voter of two")
	}

	// b is confirmed off (here: cut for good); a refuses it and recovers.
	a.SetRefused("b", true)
	if err := a.Recover(); err != nil {
		t.Fatal(err)
	}
	if !a.SoleVoter() {
		t.Fatal("not the sole voter after Recover")
	}
	if err := propose(a, state.Command{Op: state.OpPlace, Group: "h2", Holder: "a"}, 20*time.Second); err != nil {
		t.Fatalf("the sole voter cannot commit: %v", err)
	}
	if a.State().Groups["g"] == nil {
		t.Fatal("the recovery lost the committed state")
	}

	// Restarted, it still is the sole voter and commits alone.
	a.Shutdown()
	a = start("a", dirA)
	a.SetRefused("b", true)
	if !a.SoleVoter() {
		t.Fatal("the sole voter forgot it after a restart")
	}
	if err := propose(a, state.Command{Op: state.OpPlace, Group: "h3", Holder: "a"}, 20*time.Second); err != nil {
		t.Fatalf("the restarted sole voter cannot commit: %v", err)
	}

	// b is back: it cannot depose a before it is re-added.
	a.SetRefused("b", false)
	cut.Store(false)
	for range 10 {
		time.Sleep(100 * time.Millisecond) // b's election timeouts, observed
		if !a.IsLeader() {
			t.Fatal("a peer not in the configuration deposed the sole voter")
		}
	}
	if b.State().Groups["h3"] != nil {
		t.Fatal("b learnt a's state before it was re-added")
	}
	eventually(t, "b re-added", func() bool { return a.AddVoter("b", 5*time.Second) == nil })
	eventually(t, "b caught up", func() bool {
		return b.State().Groups["h3"] != nil && b.CaughtUp(0)
	})
	if vs, _ := b.Voters(); !slices.Equal(vs, []string{"a", "b"}) {
		t.Fatalf("b's voters %v after the re-add", vs)
	}
	if err := propose(b, state.Command{Op: state.OpPlace, Group: "k", Holder: "b"}, 20*time.Second); err != nil {
		t.Fatalf("the pair cannot commit after the re-add: %v", err)
	}
}
