package node

import (
	"fmt"
	"slices"

	"tandem/internal/events"
)

// DrillResults are the results a drill record may carry.
var DrillResults = []string{"pass", "fail", "refused"}

// RecordDrill appends a drill record (kind drill) to this node's audit
// log, and so to every sink of its events: `tandem drill` reports each
// drill it ran, or was refused, here.
func (n *Node) RecordDrill(group, result, message string, attrs map[string]any, actor string) error {
	if _, ok := n.cfg.GroupByName(group); !ok {
		return fmt.Errorf("%w: no group %q (groups: %v)", ErrNotFound, group, groupNames(n))
	}
	if !slices.Contains(DrillResults, result) {
		return fmt.Errorf("%w: drill result %q is none of %v", ErrInvalid, result, DrillResults)
	}
	if attrs == nil {
		attrs = map[string]any{}
	}
	attrs["result"] = result
	n.publish(events.Event{Kind: events.Drill, Subject: group, Group: group, Actor: actor, Message: message, Attrs: attrs})
	return nil
}

// CrashForDrill prepares an unplanned failover drill of group: this node
// must be running it. It records why in the audit log (before, since a
// killed agent records nothing) and returns the kill, a SIGKILL of this
// agent that the caller runs once it has answered the request: the
// agent dies as in a crash (services left running, the lease left to
// lapse, the kernel guard silencing the VIP), and the standby takes over.
func (n *Node) CrashForDrill(group, actor string) (func(), error) {
	if _, ok := n.cfg.GroupByName(group); !ok {
		return nil, fmt.Errorf("%w: no group %q (groups: %v)", ErrNotFound, group, groupNames(n))
	}
	gs := n.State().Group(group)
	if gs.Holder != n.self || !gs.Running {
		return nil, fmt.Errorf("%w: %s does not run group %s (holder %q): an unplanned drill kills the active node's agent", ErrConflict, n.self, group, gs.Holder)
	}
	n.publish(events.Event{Kind: events.AdminAction, Subject: group, Group: group, Actor: actor,
		Message: fmt.Sprintf("unplanned failover drill of %s: this agent is killed (SIGKILL) on request of %s", group, actor)})
	return killSelf, nil
}
