package state

import (
	"testing"
	"time"
)

// Only the holder of a volume's group, at the group's epoch, reports its
// replicas: a deposed holder cannot outdate the replica the cluster has
// just promoted (S2), and the newest report of the holder stands.
func TestReplicaReports(t *testing.T) {
	s := New()
	at := time.Unix(100, 0)
	apply := func(c Command) error {
		t.Helper()
		c.Time = at
		return s.Apply(s.Index+1, c)
	}
	must := func(c Command) {
		t.Helper()
		if err := apply(c); err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
	}
	must(Command{Op: OpPlace, Group: "db", Holder: "n1", Epoch: 0})
	rep := func(by string, epoch uint64, replica, disk string) Command {
		return Command{Op: OpReplica, Group: "db", Node: by, Epoch: epoch, Volume: "pg", Replica: replica, Disk: disk}
	}
	if s.ReplicaOf("pg", "n2") != nil {
		t.Fatal("a replica never reported has a state")
	}
	must(rep("n1", 1, "n1", DiskUpToDate))
	must(rep("n1", 1, "n2", DiskInconsistent))
	must(rep("n1", 1, "n2", DiskUpToDate)) // the initial sync finished
	if r := s.ReplicaOf("pg", "n2"); r == nil || r.Disk != DiskUpToDate || r.By != "n1" || r.Epoch != 1 {
		t.Fatalf("n2's replica: %+v", r)
	}
	for _, c := range []Command{
		rep("n2", 1, "n1", DiskOutdated), // not the holder
		rep("n1", 0, "n2", DiskOutdated), // an old epoch
		rep("n1", 2, "n2", DiskOutdated), // a future one
		{Op: OpReplica, Group: "web", Node: "n1", Epoch: 1, Volume: "pg", Replica: "n2", Disk: DiskOutdated}, // no such group
	} {
		if err := apply(c); !IsStaleEpoch(err) {
			t.Errorf("%+v: err %v, want a stale epoch", c, err)
		}
	}
	if err := apply(rep("n1", 1, "n2", "Diskless")); err == nil || IsStaleEpoch(err) {
		t.Errorf("an unknown disk state: err %v", err)
	}
	if err := apply(Command{Op: OpReplica, Group: "db", Node: "n1", Epoch: 1, Replica: "n2", Disk: DiskOutdated}); err == nil {
		t.Error("a report without a volume was applied")
	}
	// The group moves to n2 (n1 died); n1's late report of its own
	// fencing of n2 comes after: refused, n2 stays UpToDate.
	must(Command{Op: OpPlace, Group: "db", Holder: "n2", Epoch: 1})
	if err := apply(rep("n1", 1, "n2", DiskOutdated)); !IsStaleEpoch(err) {
		t.Fatalf("the deposed holder outdated the new one: %v", err)
	}
	must(rep("n2", 2, "n1", DiskOutdated)) // the new holder writes without n1
	if r := s.ReplicaOf("pg", "n1"); r.Disk != DiskOutdated || r.By != "n2" || r.Epoch != 2 {
		t.Fatalf("n1's replica: %+v", r)
	}
	// The state survives a snapshot and a clone.
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	u, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if r := u.Clone().ReplicaOf("pg", "n1"); r == nil || r.Disk != DiskOutdated {
		t.Fatalf("after a snapshot: %+v", r)
	}
	for _, bad := range []string{`{"volumes":{"pg":null}}`, `{"volumes":{"pg":{"replicas":{"n1":null}}}}`, `{"volumes":{"pg":{}}}`} {
		if _, err := Unmarshal([]byte(bad)); err == nil {
			t.Errorf("snapshot %s accepted", bad)
		}
	}
}

// An admin may declare a replica UpToDate (tandem failover --force) at
// the group's current epoch, whoever holds it; the record says it was
// forced until the holder reports the replica itself.
func TestReplicaForcedByAnAdmin(t *testing.T) {
	s := New()
	at := time.Unix(100, 0)
	apply := func(c Command) error { c.Time = at; return s.Apply(s.Index+1, c) }
	if err := apply(Command{Op: OpPlace, Group: "db", Holder: "n1"}); err != nil {
		t.Fatal(err)
	}
	if err := apply(Command{Op: OpReplica, Group: "db", Node: "n1", Epoch: 1, Volume: "pg", Replica: "n2", Disk: DiskOutdated}); err != nil {
		t.Fatal(err)
	}
	if err := apply(Command{Op: OpReplica, Actor: "root", Group: "db", Epoch: 0, Volume: "pg", Replica: "n2", Disk: DiskUpToDate}); !IsStaleEpoch(err) {
		t.Fatalf("a forced report at an old epoch: %v", err)
	}
	if err := apply(Command{Op: OpReplica, Actor: "root", Group: "db", Epoch: 1, Volume: "pg", Replica: "n2", Disk: DiskOutdated}); !IsStaleEpoch(err) {
		t.Fatalf("an admin may only declare a replica UpToDate: %v", err)
	}
	if err := apply(Command{Op: OpReplica, Actor: "root", Group: "db", Epoch: 1, Volume: "pg", Replica: "n2", Disk: DiskUpToDate, Reason: "forced"}); err != nil {
		t.Fatal(err)
	}
	if r := s.ReplicaOf("pg", "n2"); r.Disk != DiskUpToDate || !r.Forced || r.By != "root" {
		t.Fatalf("forced: %+v", r)
	}
	// The holder, n1 until it has handed over, reports its peer Outdated
	// again (its 1 s look, or a link event): refused, or it would undo
	// the forced failover (the move cancelled, or n2 never started).
	if err := apply(Command{Op: OpReplica, Group: "db", Node: "n1", Epoch: 1, Volume: "pg", Replica: "n2", Disk: DiskOutdated}); !IsStaleEpoch(err) {
		t.Fatalf("the holder outdated a replica forced UpToDate at its epoch: %v", err)
	}
	if r := s.ReplicaOf("pg", "n2"); r.Disk != DiskUpToDate || !r.Forced {
		t.Fatalf("after the holder's refused report: %+v", r)
	}
	// Its report of its own replica goes through.
	if err := apply(Command{Op: OpReplica, Group: "db", Node: "n1", Epoch: 1, Volume: "pg", Replica: "n1", Disk: DiskUpToDate}); err != nil {
		t.Fatal(err)
	}
	if err := apply(Command{Op: OpPlace, Group: "db", Holder: "n2", Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	if err := apply(Command{Op: OpReplica, Group: "db", Node: "n2", Epoch: 2, Volume: "pg", Replica: "n2", Disk: DiskUpToDate}); err != nil {
		t.Fatal(err)
	}
	if r := s.ReplicaOf("pg", "n2"); r.Forced || r.By != "n2" {
		t.Fatalf("after the holder's own report: %+v", r)
	}
}

// With no holder, a data node reports its connected, in-sync peer (and
// itself) UpToDate: nobody else could, and the group would run nowhere
// once its last eligible node is banned (storage seed 20092). Only
// UpToDate, and only at the current epoch.
func TestReplicaReportedUpToDateWithNoHolder(t *testing.T) {
	s := New()
	at := time.Unix(100, 0)
	apply := func(c Command) error { c.Time = at; return s.Apply(s.Index+1, c) }
	if err := apply(Command{Op: OpPlace, Group: "db", Holder: "n1"}); err != nil {
		t.Fatal(err)
	}
	if err := apply(Command{Op: OpReplica, Group: "db", Node: "n1", Epoch: 1, Volume: "pg", Replica: "n2", Disk: DiskOutdated}); err != nil {
		t.Fatal(err)
	}
	if err := apply(Command{Op: OpReplica, Group: "db", Node: "n2", Epoch: 1, Volume: "pg", Replica: "n2", Disk: DiskUpToDate}); !IsStaleEpoch(err) {
		t.Fatalf("a non-holder's report while n1 holds the group: %v", err)
	}
	if err := apply(Command{Op: OpPlace, Group: "db", Holder: "", Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	if err := apply(Command{Op: OpReplica, Group: "db", Node: "n1", Epoch: 2, Volume: "pg", Replica: "n1", Disk: DiskOutdated}); !IsStaleEpoch(err) {
		t.Fatalf("a holderless downgrade: %v", err)
	}
	if err := apply(Command{Op: OpReplica, Group: "db", Node: "n1", Epoch: 1, Volume: "pg", Replica: "n2", Disk: DiskUpToDate}); !IsStaleEpoch(err) {
		t.Fatalf("a holderless report at an old epoch: %v", err)
	}
	if err := apply(Command{Op: OpReplica, Group: "db", Node: "n1", Epoch: 2, Volume: "pg", Replica: "n2", Disk: DiskUpToDate}); err != nil {
		t.Fatal(err)
	}
	if r := s.ReplicaOf("pg", "n2"); r.Disk != DiskUpToDate || r.By != "n1" || r.Epoch != 2 {
		t.Fatalf("after the holderless report: %+v", r)
	}
}

// Placed nowhere (both nodes stopping at once), the group's last holder
// may still outdate its peer at its own epoch: it is stopping the group,
// and its file system's last writes wait for that fence (a new user's
// walk: SIGTERM to both nodes left the holder's unmount hung for good).
// Nobody else may, and nothing once the group is placed again.
func TestReplicaOutdatedByTheLastHolderWhileItStops(t *testing.T) {
	s := New()
	at := time.Unix(100, 0)
	apply := func(c Command) error { c.Time = at; return s.Apply(s.Index+1, c) }
	for _, c := range []Command{
		{Op: OpPlace, Group: "db", Holder: "n1"},
		{Op: OpReplica, Group: "db", Node: "n1", Epoch: 1, Volume: "pg", Replica: "n2", Disk: DiskUpToDate},
		{Op: OpPlace, Group: "db", Holder: "", Epoch: 1},
	} {
		if err := apply(c); err != nil {
			t.Fatal(err)
		}
	}
	outdate := func(node, replica string, epoch uint64) error {
		return apply(Command{Op: OpReplica, Group: "db", Node: node, Epoch: epoch, Volume: "pg", Replica: replica, Disk: DiskOutdated})
	}
	if err := outdate("n2", "n1", 1); !IsStaleEpoch(err) {
		t.Fatalf("a node that did not hold the group outdated its peer: %v", err)
	}
	if err := outdate("n1", "n1", 1); !IsStaleEpoch(err) {
		t.Fatalf("the last holder outdated itself: %v", err)
	}
	if err := outdate("n1", "n2", 1); err != nil {
		t.Fatalf("the stopping holder's fence: %v", err)
	}
	if r := s.ReplicaOf("pg", "n2"); r.Disk != DiskOutdated || r.By != "n1" {
		t.Fatalf("after the stopping holder's fence: %+v", r)
	}
	// An admin forces n2 UpToDate while the group runs nowhere (tandem
	// failover --force): the old holder's late fence does not undo it.
	if err := apply(Command{Op: OpReplica, Group: "db", Actor: "admin", Epoch: 2, Volume: "pg", Replica: "n2", Disk: DiskUpToDate}); err != nil {
		t.Fatal(err)
	}
	if err := outdate("n1", "n2", 1); !IsStaleEpoch(err) {
		t.Fatalf("the stopping holder's fence over a record made since: %v", err)
	}
	if err := apply(Command{Op: OpPlace, Group: "db", Holder: "n2", Epoch: 2}); err != nil {
		t.Fatal(err)
	}
	if err := apply(Command{Op: OpPlace, Group: "db", Holder: "", Epoch: 3}); err != nil {
		t.Fatal(err)
	}
	if err := outdate("n1", "n2", 1); !IsStaleEpoch(err) {
		t.Fatalf("the holder of two placements ago outdated its peer: %v", err)
	}
	if g := s.Groups["db"]; g.Left != "n2" {
		t.Fatalf("left by %q, want n2", g.Left)
	}
}
