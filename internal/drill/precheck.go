// Package drill owns `tandem drill`: a planned (or, with --unplanned, a
// crash) failover of one group to its standby and back, measured, with a
// pre-check that refuses to start unless the standby could really take the
// group over. Precheck is pure (a status in, a plan or the reasons out);
// Run drives a cluster through the Cluster interface (the API client in
// production) with an injected clock. It imports node for the status types
// and events for the audit record; cmd wires it.
package drill

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"tandem/internal/node"
	"tandem/internal/state"
)

// Plan is what a drill will do, decided before anything is changed.
type Plan struct {
	Group string
	From  string // the active node, where the group returns
	To    string // the standby the group is switched to
	// WasPinned is the group's admin pin before the drill: a drill that
	// switches back leaves the pin as it found it.
	WasPinned string
	Volumes   []string // the group's replicated volumes, checked in sync
}

// Check is the outcome of a pre-check: a plan when nothing stands in the
// way, else every reason at once. Warnings do not refuse the drill.
type Check struct {
	Plan     Plan
	Refusals []string
	Warnings []string
}

// OK reports whether the drill may run.
func (c Check) OK() bool { return len(c.Refusals) == 0 }

// Precheck decides from s (the status one agent reports) whether a drill
// of group may run now, switching it to `to` ("" = the group's other data
// node that can take it). Nothing here changes anything: a drill that is
// refused leaves the cluster as it was.
func Precheck(s node.Status, group, to string) Check {
	var c Check
	refuse := func(format string, args ...any) { c.Refusals = append(c.Refusals, fmt.Sprintf(format, args...)) }
	warn := func(format string, args ...any) { c.Warnings = append(c.Warnings, fmt.Sprintf(format, args...)) }

	gs, ok := findGroup(s, group)
	if !ok {
		var names []string
		for _, g := range s.Groups {
			names = append(names, g.Name)
		}
		refuse("no group %q (groups: %s)", group, strings.Join(names, ", "))
		return c
	}
	c.Plan = Plan{Group: group, From: gs.Holder, WasPinned: gs.Pinned}
	if !s.Quorum {
		refuse("no quorum: %s sees no raft leader, so the cluster could not decide a move (or a failover if the drill went wrong)", s.Node)
	}
	if s.Maintenance {
		refuse("the cluster is in maintenance mode: nothing is managed (tandem maintenance off first)")
	}
	switch {
	case gs.Holder == "":
		refuse("group %s runs nowhere: a drill starts from a running group", group)
	case gs.Blocked != "":
		refuse("group %s is blocked (%s): tandem cleanup %s first", group, gs.Blocked, group)
	case gs.Handover != "":
		refuse("group %s is already moving to %s", group, gs.Handover)
	case !gs.Running || gs.Phase != "running":
		refuse("group %s is not running on %s (phase %q%s): a drill starts from a healthy group", group, gs.Holder, gs.Phase, errSuffix(gs.PhaseError))
	}
	if gs.Holder != "" {
		if n, ok := findNode(s, gs.Holder); !ok || !n.Up {
			refuse("the active node %s is not up as %s sees it", gs.Holder, s.Node)
		}
	}
	for n, count := range gs.Failures {
		if n == gs.Holder {
			warn("group %s has %d recent failure(s) on %s", group, count, n)
		}
	}

	cands := candidates(s, gs, to)
	if len(cands) == 0 {
		refuse("group %s has no other data node to switch to", group)
		return c
	}
	var why []string
	for _, cand := range cands {
		if reasons := standbyProblems(s, gs, cand); len(reasons) > 0 {
			why = append(why, reasons...)
			continue
		}
		c.Plan.To = cand
		break
	}
	if c.Plan.To == "" {
		c.Refusals = append(c.Refusals, why...)
		return c
	}
	c.Plan.Volumes = volumesOf(s, group)
	for _, v := range s.Volumes {
		if v.Group != group {
			continue
		}
		c.Refusals = append(c.Refusals, volumeProblems(s, v, gs.Holder, c.Plan.To)...)
	}
	if n, _ := findNode(s, c.Plan.To); !n.Self {
		var down []string
		for _, l := range n.Links {
			if !l.Up {
				down = append(down, fmt.Sprintf("#%d", l.Index))
			}
		}
		if len(down) > 0 {
			warn("heartbeat link(s) %s from %s to %s are down: the pair runs without link redundancy", strings.Join(down, ", "), s.Node, c.Plan.To)
		}
	}
	return c
}

// candidates are the data nodes a drill may switch group to: `to` when
// named, else every other data node, in the status's order.
func candidates(s node.Status, gs node.GroupStatus, to string) []string {
	if to != "" {
		return []string{to}
	}
	var out []string
	for _, n := range s.Nodes {
		if n.Role == "node" && n.Name != gs.Holder {
			out = append(out, n.Name)
		}
	}
	return out
}

// standbyProblems says why cand cannot take group over now.
func standbyProblems(s node.Status, gs node.GroupStatus, cand string) []string {
	n, ok := findNode(s, cand)
	switch {
	case !ok:
		return []string{fmt.Sprintf("%q is not a member of cluster %s", cand, s.Cluster)}
	case n.Role != "node":
		return []string{fmt.Sprintf("%s is the %s: it runs no groups", cand, n.Role)}
	case cand == gs.Holder:
		return []string{fmt.Sprintf("group %s already runs on %s", gs.Name, cand)}
	}
	var out []string
	add := func(format string, args ...any) {
		out = append(out, fmt.Sprintf("standby %s: ", cand)+fmt.Sprintf(format, args...))
	}
	if !n.Up {
		add("down as %s sees it (since %s)", s.Node, n.Since.UTC().Format("2006-01-02 15:04:05Z"))
	}
	if n.Standby {
		add("in standby (tandem unstandby %s first)", cand)
	}
	if n.Maintenance {
		add("in maintenance")
	}
	if n.Leaving {
		add("its agent is shutting down")
	}
	if n.ConfigDiffers {
		add("runs another configuration (%s) than the cluster (%s)", n.Config, s.Config)
	}
	if slices.Contains(gs.Banned, cand) {
		add("banned for group %s after failures (tandem cleanup %s)", gs.Name, gs.Name)
	} else if f := gs.Failures[cand]; f > 0 {
		add("%d recent failure(s) of group %s there (tandem cleanup %s once understood)", f, gs.Name, gs.Name)
	}
	return out
}

// volumeProblems says why volume v is not ready to fail over from
// holder to `to`: the cluster's record of to's replica, and, when the
// status comes from a node that has a replica, the live replication link.
func volumeProblems(s node.Status, v node.VolumeStatus, holder, to string) []string {
	var out []string
	rep, ok := v.Replicas[to]
	switch {
	case !ok:
		out = append(out, fmt.Sprintf("volume %s: %s's replica was never reported in sync", v.Name, to))
	case rep.Disk != state.DiskUpToDate:
		out = append(out, fmt.Sprintf("volume %s: %s's replica is %s (recorded by %s at epoch %d): the standby is not in sync",
			v.Name, to, rep.Disk, rep.By, rep.Epoch))
	}
	l := v.Local
	if l == nil || (s.Node != holder && s.Node != to) {
		return out
	}
	if l.Connection != "Connected" {
		out = append(out, fmt.Sprintf("volume %s: the replication link is %s as %s sees it: the standby is not receiving writes", v.Name, l.Connection, s.Node))
	}
	if l.Sync != "" {
		out = append(out, fmt.Sprintf("volume %s: a resync is under way (%s, %.1f%% done)", v.Name, l.Sync, l.ResyncPct))
	} else if l.OutOfSync > 0 {
		out = append(out, fmt.Sprintf("volume %s: %d bytes are out of sync", v.Name, l.OutOfSync))
	}
	peerDisk := l.PeerDisk
	if s.Node == to {
		peerDisk = l.Disk
	}
	if l.Connection == "Connected" && peerDisk != state.DiskUpToDate {
		out = append(out, fmt.Sprintf("volume %s: %s's disk is %s as %s sees it", v.Name, to, peerDisk, s.Node))
	}
	return out
}

func volumesOf(s node.Status, group string) []string {
	var out []string
	for _, v := range s.Volumes {
		if v.Group == group {
			out = append(out, v.Name)
		}
	}
	sort.Strings(out)
	return out
}

func findGroup(s node.Status, name string) (node.GroupStatus, bool) {
	for _, g := range s.Groups {
		if g.Name == name {
			return g, true
		}
	}
	return node.GroupStatus{}, false
}

func findNode(s node.Status, name string) (node.NodeStatus, bool) {
	for _, n := range s.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return node.NodeStatus{}, false
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return ": " + e
}
