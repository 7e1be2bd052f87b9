package config

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// maxAliasNodes bounds how many nodes YAML aliases and merge keys may add to
// a file. An alias is a pointer to an earlier node, so aliases of aliases
// expand exponentially (the "billion laughs": nine levels of nine aliases is
// 9^9 nodes in a few hundred bytes), and the decoder, which walks what an
// alias points to, would take minutes or hours. A real configuration that
// shares a resource template among dozens of groups adds a few thousand.
const maxAliasNodes = 10_000

// checkAliases refuses a document whose aliases point into themselves (an
// endless loop) or expand it by more than maxAliasNodes nodes. It runs
// before decoding, in time linear in the size of the file.
func checkAliases(file string, root *yaml.Node) Problems {
	c := aliasCheck{size: map[*yaml.Node]int{}, open: map[*yaml.Node]bool{}}
	c.walk(root)
	if c.prob == nil {
		return nil
	}
	c.prob.File = file
	return Problems{*c.prob}
}

type aliasCheck struct {
	size  map[*yaml.Node]int  // expanded size of a node, capped at maxAliasNodes+1
	open  map[*yaml.Node]bool // nodes whose size is being computed
	added int                 // nodes the aliases met so far add
	prob  *Problem
}

// walk visits the nodes written in the file, in order, and adds up what
// each alias among them expands to; the first alias that takes the total
// over the bound is the one reported.
func (c *aliasCheck) walk(n *yaml.Node) {
	if c.prob != nil {
		return
	}
	if n.Kind == yaml.AliasNode {
		c.added = capped(c.added + c.expanded(n))
		if c.prob == nil && c.added > maxAliasNodes {
			c.prob = &Problem{Line: n.Line, Msg: fmt.Sprintf(
				"YAML aliases: with *%s here, aliases and merge keys expand the file by more than %d nodes "+
					"(aliases of aliases multiply); write the shared part out, or alias it fewer times",
				n.Value, maxAliasNodes)}
		}
		return
	}
	c.open[n] = true
	for _, child := range n.Content {
		c.walk(child)
	}
	delete(c.open, n)
}

// expanded returns the number of nodes alias n stands for, following the
// aliases inside its target, each subtree counted once however often it is
// reached.
func (c *aliasCheck) expanded(n *yaml.Node) int {
	for n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return 1
		}
		if c.open[n.Alias] {
			if c.prob == nil {
				c.prob = &Problem{Line: n.Line, Msg: fmt.Sprintf(
					"YAML aliases: *%s refers to a node that contains it (it would repeat for ever)", n.Value)}
			}
			return maxAliasNodes + 1
		}
		n = n.Alias
	}
	if s, ok := c.size[n]; ok {
		return s
	}
	c.open[n] = true
	s := 1
	for _, child := range n.Content {
		s = capped(s + c.expanded(child))
	}
	delete(c.open, n)
	c.size[n] = s
	return s
}

// capped keeps sizes from overflowing: anything over the bound is refused
// anyway.
func capped(n int) int { return min(n, maxAliasNodes+1) }
