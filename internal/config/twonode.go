package config

import (
	"fmt"
	"time"
)

// TwoNode tunes two-node mode: two data nodes and no witness, where a
// takeover from the lost peer waits for a confirmed fence of it
// (docs/two-node.md). The section is optional; the mode is the absence of
// a witness.
type TwoNode struct {
	// FenceDelay is how long the fence race's loser waits after losing its
	// peer before it fences it: the winner's fence must have cut the
	// loser's power by then.
	FenceDelay Duration `yaml:"fence_delay"`
	// Preferred wins the race when both nodes run as many groups (none,
	// or one each); the first node unless set.
	Preferred string `yaml:"preferred"`
}

// Fence delay limits: below the minimum the race is a coin toss on any
// machine (one node timeout of detection skew); above the maximum a dead
// holder's groups wait longer than anyone would.
const (
	MinFenceDelay = 100 * time.Millisecond
	MaxFenceDelay = 60 * time.Second
)

// DefaultTwoNode returns the two_node section's defaults.
func DefaultTwoNode() TwoNode {
	// fence_ipmilan against a BMC on the management network cuts the power
	// within about a second of its start (ipmitool's session and one
	// command); 2 s is twice that plus the detection skew. A faster
	// failover of a dead holder needs a measured, smaller delay
	// (docs/two-node.md "Choosing fence_delay").
	return TwoNode{FenceDelay: Duration(2 * time.Second)}
}

// IsTwoNode reports whether the cluster runs in two-node mode: two data
// nodes and no witness.
func (c *Config) IsTwoNode() bool { return len(c.Nodes) == 2 && c.Witness == nil }

// TwoNodeSettings returns the two_node section with its defaults; the
// preferred node filled in.
func (c *Config) TwoNodeSettings() TwoNode {
	t := DefaultTwoNode()
	if c.TwoNode != nil {
		t = *c.TwoNode
	}
	if t.Preferred == "" && len(c.Nodes) > 0 {
		t.Preferred = c.Nodes[0].Name
	}
	return t
}

func (k *checker) twoNode(c *Config) {
	if !c.IsTwoNode() {
		if c.TwoNode != nil {
			k.addf("two_node", "only for two data nodes without a witness (this cluster has %d data nodes and %s)", len(c.Nodes), witnessWord(c))
		}
		return
	}
	// Without fencing two nodes cannot run alone: a lost peer may be
	// running the groups, and only a confirmed fence says it is not.
	for _, n := range c.Nodes {
		if len(c.FenceLevelsOf(n.Name)) == 0 {
			k.addf("witness", "two data nodes without a witness need a fence device for every data node (two-node mode, docs/two-node.md); none fences %s (fence_devices), or add a witness", n.Name)
		}
	}
	for i, d := range c.FenceDevices {
		if d.Kind == FenceKindWatchdog {
			k.addf(fmt.Sprintf("fence_devices[%d].kind", i), "watchdog cannot fence in two-node mode: a node cut off from its peer keeps its lease there, so it keeps feeding its watchdog and is never reset")
		}
	}
	for i, g := range c.Groups {
		if g.Fence == FenceNever {
			k.addf(fmt.Sprintf("groups[%d].fence", i), "never is not possible in two-node mode: every takeover from the lost peer fences it first")
		}
	}
	if c.TwoNode == nil {
		return
	}
	if d := c.TwoNode.FenceDelay.D(); d < MinFenceDelay || d > MaxFenceDelay {
		k.addf("two_node.fence_delay", "%v is outside %v to %v", d, MinFenceDelay, MaxFenceDelay)
	} else if nt := c.Timing.NodeTimeout.D(); d <= nt {
		k.addf("two_node.fence_delay", "%v is not longer than timing.node_timeout (%v): the two nodes can notice the loss that far apart, and both would fence", d, nt)
	}
	if p := c.TwoNode.Preferred; p != "" {
		k.dataNode(c, "two_node.preferred", p)
	}
}

func witnessWord(c *Config) string {
	if c.Witness != nil {
		return "a witness"
	}
	return "no witness"
}
