package e2e

import (
	"testing"
	"time"

	"tandem/internal/events"
	"tandem/internal/state"
	"tandem/internal/testbed"
)

// Storage seed 20092: the group's last node banned, its other replica
// recorded Outdated, both replicas in sync again after the heal, and the
// group ran nowhere for good: only a holder reports replica states, and
// there was none. node1 goes on alone (its replication link disconnected,
// node2 recorded Outdated, writes node2 lacks), then its VIP's link goes
// down: the monitor sees no carrier, a hard failure bans node1, and node2,
// Outdated, may not take over. After the heal and a reconnect, the resync
// makes node2 current; with no holder, a secondary of the in-sync pair
// records that (state.applyReplica), and the group starts on node2.
func TestStorageGroupComesBackWhenItsLastNodeIsBanned(t *testing.T) {
	r := startStorage(t, 20092)
	vol := func(cmd string) {
		t.Helper()
		args := []string{"volume", "--state-dir", r.c.StateDir("node1"), cmd, storageVolume}
		if out, err := r.bed.Command("node1", r.bed.Binary, args...).CombinedOutput(); err != nil {
			t.Fatalf("tandem %v: %v\n%s", args, err, out)
		}
	}
	vol("disconnect")
	r.waitReplica("witness", "node2", state.DiskOutdated, "node2 recorded Outdated")
	if err := r.reg.WaitAcks(r.ctx, time.Now(), 30, storageWait); err != nil {
		t.Fatal(err)
	}
	// The VIP's link (the heartbeat keeps the other): its monitor sees no
	// carrier, a hard failure.
	since := time.Now()
	if _, err := r.bed.LinkDown("node1", 0); err != nil {
		t.Fatal(err)
	}
	r.waitEvent("node1", since, storageWait, testbed.Kind(events.GroupStopped, storageGroup), "node1 stopping the group after the VIP's failure")
	if _, err := r.bed.LinkUp("node1", 0); err != nil {
		t.Fatal(err)
	}
	// Banned node1, Outdated node2: the group runs nowhere.
	r.sleep(10 * lease)
	v, err := r.c.GroupView(r.ctx, storageGroup)
	if err != nil || v.Running {
		t.Fatalf("with node1 banned and node2 Outdated: %+v %v", v, err)
	}
	if st, err := r.c.Status(r.ctx, "witness"); err != nil || len(st.Groups) == 0 || len(st.Groups[0].Banned) == 0 {
		t.Fatalf("node1 not banned after its VIP's hard failure: %+v %v", st.Groups, err)
	}
	vol("connect")
	r.steady()
	if v, err = r.c.GroupView(r.ctx, storageGroup); err != nil || v.Holder != "node2" {
		t.Fatalf("the group came back on %q, want node2 (node1 is banned): %v", v.Holder, err)
	}
	r.waitConverged()
	r.check()
}
