package testbed

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Action is one kind of step of a random fault schedule.
type Action string

// The actions a schedule draws from.
const (
	ActKill        Action = "kill"         // SIGKILL, then the agent restarts
	ActRestart     Action = "restart"      // SIGKILL and restart at once
	ActFreeze      Action = "freeze"       // SIGSTOP, then SIGCONT
	ActCutOff      Action = "cutoff"       // drops to and from the other voters
	ActIsolate     Action = "isolate"      // every link down
	ActPartition   Action = "partition"    // drops between Target and Peer
	ActOneWay      Action = "oneway"       // drops from Target to Peer
	ActLinkDown    Action = "link_down"    // link 1 of Target down
	ActFlap        Action = "flap"         // every link of Target flaps
	ActSlow        Action = "slow"         // tbf on Target's links
	ActKillService Action = "kill_service" // the active node's service dies
	ActSwitchover  Action = "switchover"   // planned move to the other node
)

// Roles a step targets, resolved when it runs: the node running the
// group, the other data node, or the witness.
const (
	RoleActive  = "active"
	RoleStandby = "standby"
	RoleWitness = "witness"
)

// Step is one fault of a schedule.
type Step struct {
	Action Action
	Target string // a role
	Peer   string // a role (partitions)
	// Hold is how long the fault lasts before it is healed.
	Hold time.Duration
	// WithPrevious applies the step while the previous one still holds
	// (both are healed together afterwards).
	WithPrevious bool
}

func (s Step) String() string {
	var b strings.Builder
	if s.WithPrevious {
		b.WriteString("+ ")
	}
	fmt.Fprintf(&b, "%s %s", s.Action, s.Target)
	if s.Peer != "" {
		fmt.Fprintf(&b, "→%s", s.Peer)
	}
	fmt.Fprintf(&b, " for %v", s.Hold)
	return b.String()
}

// weighted actions: failures of the active node come up most.
var scheduleActions = []struct {
	a      Action
	weight int
	roles  []string // possible targets
}{
	{ActKill, 3, []string{RoleActive, RoleActive, RoleStandby, RoleWitness}},
	{ActRestart, 1, []string{RoleActive, RoleStandby}},
	{ActFreeze, 3, []string{RoleActive, RoleActive, RoleStandby, RoleWitness}},
	{ActCutOff, 2, []string{RoleActive, RoleStandby, RoleWitness}},
	{ActIsolate, 2, []string{RoleActive, RoleStandby}},
	{ActPartition, 2, nil},
	{ActOneWay, 2, nil},
	{ActLinkDown, 1, []string{RoleActive, RoleStandby}},
	{ActFlap, 1, []string{RoleActive, RoleStandby}},
	{ActSlow, 1, []string{RoleActive, RoleStandby}},
	{ActKillService, 1, []string{RoleActive}},
	{ActSwitchover, 1, []string{RoleActive}},
}

// Schedule draws a reproducible schedule of n steps from seed: the same
// seed always gives the same steps.
func Schedule(seed uint64, n int) []Step {
	rng := rand.New(rand.NewPCG(seed, 0x74616e64656d)) // "tandem"
	total := 0
	for _, a := range scheduleActions {
		total += a.weight
	}
	roles := []string{RoleActive, RoleStandby, RoleWitness}
	var out []Step
	for i := 0; i < n; i++ {
		pick := rng.IntN(total)
		var s Step
		for _, a := range scheduleActions {
			if pick < a.weight {
				s.Action = a.a
				if a.roles != nil {
					s.Target = a.roles[rng.IntN(len(a.roles))]
				}
				break
			}
			pick -= a.weight
		}
		if s.Target == "" { // a pair
			j := rng.IntN(3)
			k := (j + 1 + rng.IntN(2)) % 3
			s.Target, s.Peer = roles[j], roles[k]
		}
		// From a blip below the node timeout to several lease lengths.
		s.Hold = time.Duration(50+rng.IntN(19)*50) * time.Millisecond
		s.WithPrevious = i > 0 && rng.IntN(4) == 0 && !instant(s.Action) && !instant(out[i-1].Action)
		out = append(out, s)
	}
	return out
}

// instant actions have no lasting fault to overlap with.
func instant(a Action) bool {
	return a == ActRestart || a == ActKillService || a == ActSwitchover
}
