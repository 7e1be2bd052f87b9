package placement

import (
	"strings"
	"testing"

	"tandem/internal/config"
	"tandem/internal/state"
)

// A group with a volume never goes to a node whose replica the holder
// reported Outdated or Inconsistent: the takeover waits for the holder
// (or an admin) instead of serving stale data. A replica never reported
// does not hold placement up.
func TestVolumeGroupGoesOnlyToAnUpToDateReplica(t *testing.T) {
	g := group("g", []string{"a"}, manual)
	g.Resources = []config.Resource{{Name: "data", Volume: &config.VolumeRef{Name: "pg"}}}
	groups := []config.Group{g}
	st := func(bDisk string) *state.State {
		s := held("a", 3)
		if bDisk != "" {
			s.Volumes = map[string]*state.Volume{"pg": {Replicas: map[string]*state.Replica{
				"a": {Disk: state.DiskUpToDate, Epoch: 3, By: "a"},
				"b": {Disk: bDisk, Epoch: 3, By: "a"},
			}}}
		}
		return s
	}
	for _, disk := range []string{"", state.DiskUpToDate} {
		in := input(groups, st(disk), "b")
		if c := one(t, Decide(in)); c.Holder != "b" {
			t.Fatalf("b's replica %q: %+v", disk, c)
		}
	}
	for _, disk := range []string{state.DiskOutdated, state.DiskInconsistent} {
		in := input(groups, st(disk), "b")
		if c := Decide(in); len(c) != 0 {
			t.Fatalf("a takeover onto b's %s replica: %+v", disk, c)
		}
		// A planned move off a reachable holder is not made either; the
		// group stays where its data is.
		in = input(groups, st(disk), "a", "b")
		in.State.Node("a").Standby = true
		c := Decide(in)
		if len(c) != 1 || c[0].Holder != "" {
			t.Fatalf("standby of a with b %s: %+v", disk, c)
		}
		if !strings.Contains(c[0].Reason, "no other node is eligible") {
			t.Fatalf("reason %q", c[0].Reason)
		}
		if why := in.whyNot(&groups[0], in.State.Groups["g"], "b"); !strings.Contains(why, "holds an "+disk+" replica of volume pg") {
			t.Fatalf("why not b: %q", why)
		}
	}
	// The holder's own replica does not make it ineligible (it serves
	// from its peer when its disk failed).
	s := st(state.DiskUpToDate)
	s.Volumes["pg"].Replicas["a"].Disk = state.DiskInconsistent
	if c := Decide(input(groups, s, "a", "b")); len(c) != 0 {
		t.Fatalf("moved off a holder whose own disk is Inconsistent: %+v", c)
	}
}
