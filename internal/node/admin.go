package node

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"tandem/internal/config"
	"tandem/internal/events"
	"tandem/internal/heartbeat"
	"tandem/internal/manager"
	"tandem/internal/placement"
	"tandem/internal/state"
	"tandem/internal/volume"
)

// Failover moves group to node to (or to the best other eligible node when
// to is ""), as a planned switchover: the holder stops the group and
// releases its lease, the target starts it at once. The group is pinned to
// its new node until `tandem cleanup`.
func (n *Node) Failover(ctx context.Context, group, to, actor string) (string, error) {
	// This node's copy of the state may lag the leader's by a commit; a
	// stale epoch is retried with the newer state.
	for attempt := 0; ; attempt++ {
		got, err := n.failover(ctx, group, to, actor)
		if !state.IsStaleEpoch(err) || attempt == 4 || ctx.Err() != nil {
			return got, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (n *Node) failover(ctx context.Context, group, to, actor string) (string, error) {
	g, ok := n.cfg.GroupByName(group)
	if !ok {
		return "", fmt.Errorf("%w: no group %q (groups: %v)", ErrNotFound, group, groupNames(n))
	}
	st := n.State()
	gs := st.Group(group)
	if to == "" {
		var why []string
		for _, c := range g.Nodes {
			if c == gs.Holder {
				continue
			}
			err := n.eligibleTarget(st, g, c)
			if err == nil {
				to = c
				break
			}
			why = append(why, strings.TrimPrefix(err.Error(), ErrConflict.Error()+": "))
		}
		if to == "" {
			return "", fmt.Errorf("%w: no other node can run %s now: %s", ErrConflict, group, strings.Join(why, "; "))
		}
	}
	if !slices.Contains(g.Nodes, to) {
		return "", fmt.Errorf("%w: %q is not one of group %s's nodes %v", ErrInvalid, to, group, g.Nodes)
	}
	if to == gs.Holder {
		return to, fmt.Errorf("%w: %s already runs on %s", ErrConflict, group, to)
	}
	if err := n.eligibleTarget(st, g, to); err != nil {
		return "", err
	}
	// A holder that can be reached stops the group first and hands it
	// over (no overlap); one that cannot is taken over from, as after a
	// failure (its lease must end first).
	op := state.OpPlace
	if hi := n.voterIndex(gs.Holder); hi >= 0 && n.hb.Reachable(hi) {
		op = state.OpHandover
	}
	err := n.cons.Propose(ctx, state.Command{Op: op, Time: time.Now(), Actor: actor, Group: group,
		Holder: to, Epoch: gs.Epoch, Reason: "admin failover by " + actor})
	if err != nil {
		return "", err
	}
	n.publish(events.Event{Kind: events.AdminAction, Subject: group, Group: group, Actor: actor,
		Message: fmt.Sprintf("failover %s to %s", group, to)})
	return to, nil
}

// ForceFailover moves group to `to` although to's replica of a volume of
// the group is not UpToDate: it records the replica UpToDate on the
// admin's word (its promotion is then forced) and fails over. It returns
// what is lost, one line per volume. Without stale replicas it is a plain
// Failover.
func (n *Node) ForceFailover(ctx context.Context, group, to, actor string) ([]string, error) {
	g, ok := n.cfg.GroupByName(group)
	if !ok {
		return nil, fmt.Errorf("%w: no group %q (groups: %v)", ErrNotFound, group, groupNames(n))
	}
	if to == "" {
		return nil, fmt.Errorf("%w: a forced failover names its target (--to NODE)", ErrInvalid)
	}
	if !slices.Contains(g.Nodes, to) {
		return nil, fmt.Errorf("%w: %q is not one of group %s's nodes %v", ErrInvalid, to, group, g.Nodes)
	}
	st := n.State()
	gs := st.Group(group)
	if to == gs.Holder {
		return nil, fmt.Errorf("%w: %s already runs on %s", ErrConflict, group, to)
	}
	// Everything else must allow the move before a replica is forced:
	// a forced record with no move after it would leave the holder
	// unable to fence its peer, its I/O suspended.
	if err := n.eligibleNode(st, g, to); err != nil {
		return nil, err
	}
	var lost []string
	for _, r := range g.Resources {
		if r.Volume == nil {
			continue
		}
		rep := st.ReplicaOf(r.Volume.Name, to)
		if rep == nil || rep.Disk == state.DiskUpToDate {
			continue
		}
		other := "the other replica, when it connects, is a split brain to resolve (tandem volume resolve)"
		if v := n.cfg.VolumeByName(r.Volume.Name); v != nil && v.SplitBrain == "discard-older-primary" {
			other = "the other replica, when it connects, is resynced from " + to + " and its writes since the split are discarded (split_brain: discard-older-primary)"
		}
		lost = append(lost, fmt.Sprintf("volume %s: %s's replica is %s (recorded by %s at epoch %d, %s): the writes it lacks are lost; %s",
			r.Volume.Name, to, rep.Disk, rep.By, rep.Epoch, rep.At.Format(time.RFC3339), other))
		err := n.cons.Propose(ctx, state.Command{Op: state.OpReplica, Time: time.Now(), Actor: actor, Group: group, Epoch: gs.Epoch,
			Volume: r.Volume.Name, Replica: to, Disk: state.DiskUpToDate, Reason: "forced by " + actor + " (tandem failover --force)"})
		if err != nil {
			return lost, err
		}
	}
	if len(lost) > 0 {
		n.publish(events.Event{Kind: events.AdminAction, Subject: group, Group: group, Actor: actor,
			Message: fmt.Sprintf("forced failover of %s to %s: %s", group, to, strings.Join(lost, "; "))})
	}
	_, err := n.Failover(ctx, group, to, actor)
	return lost, err
}

// eligibleNode is eligibleTarget but for the replicas of g's volumes,
// which a forced failover overrides.
func (n *Node) eligibleNode(st *state.State, g config.Group, to string) error {
	idx := n.voterIndex(to)
	if idx < 0 || n.cfg.IsWitness(to) {
		return fmt.Errorf("%w: %q is not a data node", ErrInvalid, to)
	}
	if !n.hb.Reachable(idx) {
		return fmt.Errorf("%w: %s is unreachable", ErrConflict, to)
	}
	if ns := st.Nodes[to]; ns != nil && (ns.Standby || ns.Maintenance || ns.Leaving) {
		return fmt.Errorf("%w: %s is in standby or maintenance, or shutting down", ErrConflict, to)
	}
	if n.cfg.ConfigMismatch == config.MismatchBlock && st.ConfigDiffers(to, n.voterNames()) {
		return fmt.Errorf("%w: %s runs another configuration (%s) than the cluster (%s); make the files agree (config_mismatch: block)",
			ErrConflict, to, st.Nodes[to].Config, st.ClusterConfig(n.voterNames()))
	}
	// Placement would not start the group on a banned node: the holder
	// would hand it over to nobody (storage seed 5013).
	if why := placement.BannedWhy(&g, st.Group(g.Name), to, time.Now()); why != "" {
		return fmt.Errorf("%w: %s %s for group %s; `tandem cleanup %s` clears it", ErrConflict, to, why, g.Name, g.Name)
	}
	return nil
}

// eligibleTarget says why `to` cannot take group g over now, or nil.
func (n *Node) eligibleTarget(st *state.State, g config.Group, to string) error {
	if err := n.eligibleNode(st, g, to); err != nil {
		return err
	}
	for _, r := range g.Resources {
		if r.Volume == nil {
			continue
		}
		if rep := st.ReplicaOf(r.Volume.Name, to); rep != nil && rep.Disk != state.DiskUpToDate {
			return fmt.Errorf("%w: %s holds an %s replica of volume %s (reported by %s at epoch %d, %s): it lacks writes the group acknowledged; wait until it is resynced (tandem status; a link disconnected by hand needs tandem volume connect), or force it with --force, losing what it lacks",
				ErrConflict, to, rep.Disk, r.Volume.Name, rep.By, rep.Epoch, rep.At.Format(time.RFC3339))
		}
	}
	return nil
}

func (n *Node) voterIndex(name string) int {
	for i, v := range n.voters {
		if v.Name == name {
			return i
		}
	}
	return -1
}

func groupNames(n *Node) []string {
	var out []string
	for _, g := range n.cfg.Groups {
		out = append(out, g.Name)
	}
	return out
}

// Standby puts a data node in standby (everything moves off it) or back.
func (n *Node) Standby(ctx context.Context, node string, on bool, actor string) error {
	if i := n.voterIndex(node); i < 0 || n.cfg.IsWitness(node) {
		return fmt.Errorf("%w: no data node %q", ErrNotFound, node)
	}
	if err := n.cons.Propose(ctx, state.Command{Op: state.OpStandby, Time: time.Now(), Actor: actor, Node: node, On: on}); err != nil {
		return err
	}
	n.publish(events.Event{Kind: events.AdminAction, Subject: node, Actor: actor, Message: fmt.Sprintf("standby %s %s", node, onOff(on))})
	return nil
}

// Maintenance turns maintenance on or off for the cluster (node "") or one
// node: resources are left as they are and nothing is managed.
func (n *Node) Maintenance(ctx context.Context, node string, on bool, actor string) error {
	if node != "" {
		if i := n.voterIndex(node); i < 0 || n.cfg.IsWitness(node) {
			return fmt.Errorf("%w: no data node %q", ErrNotFound, node)
		}
	}
	if err := n.cons.Propose(ctx, state.Command{Op: state.OpMaintenance, Time: time.Now(), Actor: actor, Node: node, On: on}); err != nil {
		return err
	}
	scope := "cluster"
	if node != "" {
		scope = node
	}
	n.publish(events.Event{Kind: events.AdminAction, Subject: scope, Actor: actor, Message: fmt.Sprintf("maintenance %s %s", scope, onOff(on))})
	return nil
}

// Cleanup forgets a group's failures, bans, fatal block and pin.
func (n *Node) Cleanup(ctx context.Context, group, actor string) error {
	if _, ok := n.cfg.GroupByName(group); !ok {
		return fmt.Errorf("%w: no group %q (groups: %v)", ErrNotFound, group, groupNames(n))
	}
	if err := n.cons.Propose(ctx, state.Command{Op: state.OpCleanup, Time: time.Now(), Actor: actor, Group: group}); err != nil {
		return err
	}
	n.publish(events.Event{Kind: events.AdminAction, Subject: group, Group: group, Actor: actor, Message: "cleanup " + group})
	return nil
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// Status is what `tandem status` shows.
type Status struct {
	Cluster     string                `json:"cluster"`
	Node        string                `json:"node"`
	Role        string                `json:"role"` // node or witness
	Leader      string                `json:"leader"`
	Quorum      bool                  `json:"quorum"`
	Maintenance bool                  `json:"maintenance"`
	Uptime      float64               `json:"uptime_s"`
	Nodes       []NodeStatus          `json:"nodes"`
	Groups      []GroupStatus         `json:"groups"`
	Drops       map[string]uint64     `json:"dropped_datagrams,omitempty"`
	Raft        map[string]string     `json:"raft,omitempty"`
	Local       []manager.GroupStatus `json:"local,omitempty"`
	// Volumes are the configured volumes: the cluster's record of both
	// replicas and, on a node that holds one, its engine's status.
	Volumes []VolumeStatus `json:"volumes,omitempty"`
	// Config is the configuration digest a majority of voters run.
	Config string `json:"config,omitempty"`
	// FenceDevices are the configured fence devices and their last
	// monitor from this node (data nodes).
	FenceDevices []FenceDeviceStatus `json:"fence_devices,omitempty"`
}

// VolumeStatus is one replicated volume.
type VolumeStatus struct {
	Name  string `json:"name"`
	Group string `json:"group"`
	// Replicas is the cluster's record of each replica's disk state, by
	// node ("" when never reported).
	Replicas map[string]state.Replica `json:"replicas"`
	// Local is this node's replica as its engine sees it (nil on a node
	// without one).
	Local *volume.Status `json:"local,omitempty"`
	// Attach is how this node's filesystem resource attaches the volume
	// as a block device: "nbd" (the kernel's nbd and nbd-client),
	// "nbdfuse+loop", or "none" when it can do neither (its start says
	// why); "" without a filesystem resource on the volume here.
	Attach string `json:"attach,omitempty"`
}

// NodeStatus is one voter as this node sees it.
type NodeStatus struct {
	Name        string `json:"name"`
	Role        string `json:"role"`
	Up          bool   `json:"up"`
	Self        bool   `json:"self,omitempty"`
	Standby     bool   `json:"standby,omitempty"`
	Maintenance bool   `json:"maintenance,omitempty"`
	Leaving     bool   `json:"leaving,omitempty"`
	// Config is the digest of the configuration the member runs;
	// ConfigDiffers: it is not the one a majority of voters run.
	Config        string                 `json:"config,omitempty"`
	ConfigDiffers bool                   `json:"config_differs,omitempty"`
	Since         time.Time              `json:"since"`
	Links         []heartbeat.LinkStatus `json:"links,omitempty"`
}

// GroupStatus is one group cluster-wide.
type GroupStatus struct {
	Name    string `json:"name"`
	Holder  string `json:"holder"`
	Epoch   uint64 `json:"epoch"`
	Running bool   `json:"running"`
	// Phase is what the holder last reported (starting, running,
	// degraded, stopping, failed, …), PhaseError its last error.
	Phase      string    `json:"phase,omitempty"`
	PhaseError string    `json:"phase_error,omitempty"`
	PhaseAt    time.Time `json:"phase_at,omitempty"`
	// Handover: a planned move to this node is under way.
	Handover  string          `json:"handover,omitempty"`
	Since     time.Time       `json:"since"`
	StartedAt time.Time       `json:"started_at,omitempty"`
	Reason    string          `json:"reason,omitempty"`
	Blocked   string          `json:"blocked,omitempty"`
	Pinned    string          `json:"pinned,omitempty"`
	Failures  map[string]int  `json:"failures,omitempty"`
	Banned    []string        `json:"banned,omitempty"`
	Takeover  *state.Takeover `json:"last_takeover,omitempty"`
	// Waiting says why this node, the holder, has not started the group
	// (a fence it waits for); "" on other nodes.
	Waiting string `json:"waiting,omitempty"`
}

// Status returns the cluster as this node sees it.
func (n *Node) Status() Status {
	s := n.status()
	s.Raft = n.cons.Stats()
	return s
}

// status is Status without raft's statistics (a map of formatted strings
// no metric reads): what the metrics collector asks for on every scrape.
func (n *Node) status() Status {
	st := n.State()
	hs := n.hb.Status()
	s := Status{Cluster: n.cfg.Cluster, Node: n.self, Role: n.role(n.self), Leader: n.cons.Leader(),
		Maintenance: st.Maintenance, Uptime: time.Since(n.started).Seconds(), Drops: n.hb.Drops()}
	s.Quorum = s.Leader != ""
	s.Config = st.ClusterConfig(n.voterNames())
	s.FenceDevices = n.fenceMon.status()
	peers := map[string]heartbeat.PeerStatus{}
	for _, p := range hs.Peers {
		peers[p.Name] = p
	}
	for _, v := range n.voters {
		ns := NodeStatus{Name: v.Name, Role: n.role(v.Name), Self: v.Name == n.self}
		if ns.Self {
			ns.Up, ns.Since = true, n.started
		} else if p, ok := peers[v.Name]; ok {
			ns.Up, ns.Since, ns.Links = p.Up, p.Since, p.Links
		}
		if a := st.Nodes[v.Name]; a != nil {
			ns.Standby, ns.Maintenance, ns.Leaving = a.Standby, a.Maintenance, a.Leaving
			ns.Config, ns.ConfigDiffers = a.Config, st.ConfigDiffers(v.Name, n.voterNames())
		}
		s.Nodes = append(s.Nodes, ns)
	}
	for _, g := range n.cfg.Groups {
		gs := st.Group(g.Name)
		out := GroupStatus{Name: g.Name, Holder: gs.Holder, Epoch: gs.Epoch, Running: gs.Running, Since: gs.Since,
			Phase: gs.Phase, PhaseError: gs.PhaseError, PhaseAt: gs.PhaseAt, Handover: gs.Handover,
			StartedAt: gs.StartedAt, Reason: gs.Reason, Blocked: gs.Blocked, Pinned: gs.Pinned, Takeover: gs.Takeover}
		if n.fence != nil && gs.Holder == n.self && !gs.Running {
			out.Waiting = n.fence.waitingFor(g.Name)
		}
		for node, f := range gs.Failures {
			if f.ActiveFailure(time.Now(), g.FailureTimeout.D()) {
				if out.Failures == nil {
					out.Failures = map[string]int{}
				}
				out.Failures[node] = f.Count
				if f.Banned {
					out.Banned = append(out.Banned, node)
				}
			}
		}
		s.Groups = append(s.Groups, out)
	}
	if n.mgr != nil {
		s.Local = n.mgr.Status()
	}
	for _, cv := range n.cfg.Volumes {
		vs := VolumeStatus{Name: cv.Name, Group: volumeGroup(n.cfg, cv.Name), Replicas: map[string]state.Replica{}}
		for _, r := range cv.Replicas {
			if rec := st.ReplicaOf(cv.Name, r.Node); rec != nil {
				vs.Replicas[r.Node] = *rec
			}
		}
		if v := n.volumes[cv.Name]; v != nil {
			local := v.rep.Status()
			vs.Local = &local
			if m := v.attach.Load(); m != nil {
				vs.Attach = cmp.Or(*m, "none")
			}
		}
		s.Volumes = append(s.Volumes, vs)
	}
	return s
}

func (n *Node) role(name string) string {
	if n.cfg.IsWitness(name) {
		return "witness"
	}
	return "node"
}

// ScanEvents reads this node's audit log, filtered, with the lines that
// are not entries.
func (n *Node) ScanEvents(f events.Filter) (events.Result, error) {
	return events.ScanFile(n.AuditFile(), f)
}
