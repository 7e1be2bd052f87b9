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
	// Gap is how long the cluster runs undisturbed, once steady again
	// after the heal, before the next step (storage schedules).
	Gap time.Duration
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
	if s.Gap > 0 {
		fmt.Fprintf(&b, ", %v quiet", s.Gap)
	}
	return b.String()
}

// weightedAction is one entry of a schedule's table of actions.
type weightedAction struct {
	a      Action
	weight int
	roles  []string // possible targets; nil: a pair (Target and Peer)
	// pairs to draw Target and Peer from; nil: any two distinct roles.
	pairs [][2]string
}

// weighted actions: failures of the active node come up most.
var scheduleActions = []weightedAction{
	{ActKill, 3, []string{RoleActive, RoleActive, RoleStandby, RoleWitness}, nil},
	{ActRestart, 1, []string{RoleActive, RoleStandby}, nil},
	{ActFreeze, 3, []string{RoleActive, RoleActive, RoleStandby, RoleWitness}, nil},
	{ActCutOff, 2, []string{RoleActive, RoleStandby, RoleWitness}, nil},
	{ActIsolate, 2, []string{RoleActive, RoleStandby}, nil},
	{ActPartition, 2, nil, nil},
	{ActOneWay, 2, nil, nil},
	{ActLinkDown, 1, []string{RoleActive, RoleStandby}, nil},
	{ActFlap, 1, []string{RoleActive, RoleStandby}, nil},
	{ActSlow, 1, []string{RoleActive, RoleStandby}, nil},
	{ActKillService, 1, []string{RoleActive}, nil},
	{ActSwitchover, 1, []string{RoleActive}, nil},
}

// Schedule draws a reproducible schedule of n steps from seed: the same
// seed always gives the same steps.
func Schedule(seed uint64, n int) []Step {
	rng := rand.New(rand.NewPCG(seed, 0x74616e64656d)) // "tandem"
	var out []Step
	for i := 0; i < n; i++ {
		s := drawStep(rng, scheduleActions, []string{RoleActive, RoleStandby, RoleWitness})
		// From a blip below the node timeout to several lease lengths.
		s.Hold = time.Duration(50+rng.IntN(19)*50) * time.Millisecond
		s.WithPrevious = i > 0 && rng.IntN(4) == 0 && !instant(s.Action) && !instant(out[i-1].Action)
		out = append(out, s)
	}
	return out
}

// drawStep draws an action from table by weight, and its target (or a
// pair of distinct roles from pairRoles).
func drawStep(rng *rand.Rand, table []weightedAction, pairRoles []string) Step {
	total := 0
	for _, a := range table {
		total += a.weight
	}
	pick := rng.IntN(total)
	var s Step
	var a weightedAction
	for _, a = range table {
		if pick < a.weight {
			break
		}
		pick -= a.weight
	}
	s.Action = a.a
	if a.roles != nil {
		s.Target = a.roles[rng.IntN(len(a.roles))]
	}
	if s.Target == "" && a.pairs != nil {
		p := a.pairs[rng.IntN(len(a.pairs))]
		s.Target, s.Peer = p[0], p[1]
	}
	if s.Target == "" { // a pair
		n := len(pairRoles)
		j := rng.IntN(n)
		k := (j + 1 + rng.IntN(n-1)) % n
		s.Target, s.Peer = pairRoles[j], pairRoles[k]
	}
	return s
}

// instant actions have no lasting fault to overlap with.
func instant(a Action) bool {
	return a == ActRestart || a == ActKillService || a == ActSwitchover
}
