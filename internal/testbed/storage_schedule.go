package testbed

import (
	"math/rand/v2"
	"time"
)

// Actions only storage schedules draw.
const (
	ActRestartBoth     Action = "restart_both"     // both data nodes killed, then started together
	ActReplicationDown Action = "replication_down" // the volume's replication link alone dropped
)

// The pairs a storage schedule's partitions are drawn from: mostly the
// two data nodes, both ways, sometimes a data node and the witness.
var storagePairs = [][2]string{
	{RoleActive, RoleStandby}, {RoleStandby, RoleActive}, {RoleActive, RoleStandby}, {RoleStandby, RoleActive},
	{RoleActive, RoleWitness}, {RoleStandby, RoleWitness}, {RoleWitness, RoleActive},
}

// storageActions are the faults of a volume group's schedules, on the
// data nodes: what can lose, fork or stale a replica.
var storageActions = []weightedAction{
	{ActKill, 3, []string{RoleActive, RoleActive, RoleStandby}, nil},
	{ActFreeze, 3, []string{RoleActive, RoleActive, RoleStandby}, nil},
	{ActCutOff, 2, []string{RoleActive, RoleStandby}, nil},
	{ActIsolate, 1, []string{RoleActive, RoleStandby}, nil},
	{ActPartition, 2, nil, storagePairs},
	{ActOneWay, 2, nil, storagePairs},
	{ActRestart, 1, []string{RoleActive, RoleStandby}, nil},
	{ActRestartBoth, 1, []string{RoleActive}, nil},
	{ActReplicationDown, 2, []string{RoleActive}, nil},
	{ActSwitchover, 1, []string{RoleActive}, nil},
}

// StorageSchedule draws a reproducible schedule of n steps for a volume
// group from seed. Faults hold 50–950 ms (the replication link 0.3–6.3 s:
// past its 5 s timeout the primary outdates its peer and goes on alone),
// one in three overlaps the previous one (a replica left behind by
// one fault meets the next), and after each heal the cluster
// runs undisturbed for 100–1000 ms.
func StorageSchedule(seed uint64, n int) []Step {
	rng := rand.New(rand.NewPCG(seed, 0x766f6c756d65)) // "volume"
	var out []Step
	for i := 0; i < n; i++ {
		s := drawStep(rng, storageActions, nil)
		s.Hold = time.Duration(50+rng.IntN(19)*50) * time.Millisecond
		if s.Action == ActReplicationDown {
			s.Hold = time.Duration(300+rng.IntN(13)*500) * time.Millisecond
		}
		s.WithPrevious = i > 0 && rng.IntN(3) == 0 && overlappable(s.Action) && overlappable(out[i-1].Action)
		s.Gap = time.Duration(100+rng.IntN(10)*100) * time.Millisecond
		out = append(out, s)
	}
	return out
}

// overlappable: a lasting fault another can join (not an instant action,
// nor a restart of the whole pair).
func overlappable(a Action) bool { return !instant(a) && a != ActRestartBoth }
