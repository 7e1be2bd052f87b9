package node

import (
	"fmt"

	"tandem/internal/events"
	"tandem/internal/state"
)

// replicaChanged records in the audit log a change of the cluster's
// record of a volume's replica (an applied OpReplica whose disk state
// differs from before): the replication history an audit report reads.
// Every voter writes it when it applies the change, at the proposal's
// time, so any one node's log has it and copies of several agree.
func (n *Node) replicaChanged(prev, st *state.State, c state.Command) {
	now := st.ReplicaOf(c.Volume, c.Replica)
	if now == nil {
		return
	}
	was := ""
	if prev != nil {
		if p := prev.ReplicaOf(c.Volume, c.Replica); p != nil {
			was = p.Disk
		}
	}
	if was == now.Disk {
		return
	}
	msg := fmt.Sprintf("volume %s: %s's replica is %s", c.Volume, c.Replica, now.Disk)
	if was != "" {
		msg += " (was " + was + ")"
	}
	if c.Reason != "" {
		msg += ": " + c.Reason
	}
	attrs := map[string]any{"volume": c.Volume, "replica": c.Replica, "disk": now.Disk, "by": now.By}
	if was != "" {
		attrs["previous"] = was
	}
	if now.Forced {
		attrs["forced"] = true
	}
	n.publish(events.Event{Time: c.Time, Kind: events.ReplicaState, Subject: c.Volume + "/" + c.Replica, Group: c.Group,
		Epoch: now.Epoch, Actor: c.Actor, Message: msg, Attrs: attrs})
}
