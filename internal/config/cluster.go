package config

import (
	"fmt"
	"net/netip"
	"slices"
)

// Small, pure questions the rest of tandem asks of a validated Config.

// Voters returns the raft voters: the data nodes in order, then the witness.
func (c *Config) Voters() []Node {
	v := make([]Node, 0, len(c.Nodes)+1)
	v = append(v, c.Nodes...)
	if c.Witness != nil {
		v = append(v, *c.Witness)
	}
	return v
}

// NodeByName returns the data node or witness called name.
func (c *Config) NodeByName(name string) (Node, bool) {
	for _, n := range c.Voters() {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// IsWitness reports whether name is the witness.
func (c *Config) IsWitness(name string) bool {
	return c.Witness != nil && c.Witness.Name == name
}

// LinkAddrs returns n's link addresses in preference order, with the
// cluster port where a link has none.
func (c *Config) LinkAddrs(n Node) ([]netip.AddrPort, error) {
	out := make([]netip.AddrPort, 0, len(n.Links))
	for i, l := range n.Links {
		ap, err := ParseLink(l, c.Port)
		if err != nil {
			return nil, fmt.Errorf("config: node %s: links[%d]: %w", n.Name, i, err)
		}
		out = append(out, ap)
	}
	return out, nil
}

// GroupByName returns the group called name.
func (c *Config) GroupByName(name string) (Group, bool) {
	for _, g := range c.Groups {
		if g.Name == name {
			return g, true
		}
	}
	return Group{}, false
}

// Summary describes the cluster's shape in a few words, e.g.
// "2 nodes, witness arbiter, 1 group".
func (c *Config) Summary() string {
	w := "no witness"
	if c.IsTwoNode() {
		w = "no witness: two-node mode, fenced"
	}
	if c.Witness != nil {
		w = "witness " + c.Witness.Name
	}
	return fmt.Sprintf("%s, %s, %s", plural(len(c.Nodes), "node"), w, plural(len(c.Groups), "group"))
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// dataNodeNames returns the data nodes' names in order, each once.
func (c *Config) dataNodeNames() StringList {
	var names StringList
	for _, n := range c.Nodes {
		if !slices.Contains(names, n.Name) {
			names = append(names, n.Name)
		}
	}
	return names
}
