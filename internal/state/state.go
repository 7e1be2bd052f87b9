// Package state owns tandem's replicated cluster state — who holds each
// group at which epoch, node standby and maintenance flags, fail counts, the
// disk state of each volume's replicas —
// and the commands that change it. Apply is deterministic and does no I/O:
// the consensus adapter feeds it committed log entries, so every node
// computes the same state. Commands carry their own timestamps (taken by the
// proposer) for that reason. It imports only leaf packages.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
)

// State is the whole replicated state.
type State struct {
	Index       uint64            `json:"index"` // last applied log index
	Groups      map[string]*Group `json:"groups"`
	Nodes       map[string]*Node  `json:"nodes"`
	Maintenance bool              `json:"maintenance"` // cluster-wide: nothing is managed
	// Volumes are what the cluster knows of each replicated volume's
	// replicas, as the holders of the volume's group reported them.
	Volumes map[string]*Volume `json:"volumes,omitempty"`
	// Outcomes are the results of the last keptOutcomes proposals that
	// carried an ID, oldest first (see Apply).
	Outcomes []Outcome `json:"outcomes,omitempty"`
}

// Group is the placement of one group.
type Group struct {
	Holder string `json:"holder"` // "" = runs nowhere
	Epoch  uint64 `json:"epoch"`  // grows on every change of holder (S2)
	// Left is, while the group runs nowhere, who held it at Epoch-1: it
	// may still be stopping the group, and may still outdate its volumes'
	// peers (applyReplica).
	Left   string    `json:"left,omitempty"`
	Since  time.Time `json:"since"`
	Reason string    `json:"reason"`
	// Blocked is set by a fatal failure: the group runs nowhere until
	// `tandem cleanup`.
	Blocked  string              `json:"blocked,omitempty"`
	Failures map[string]*Failure `json:"failures,omitempty"` // by node
	// Takeover describes the last unplanned move, for status and events.
	Takeover *Takeover `json:"takeover,omitempty"`
	// Running is set when the holder reports every resource of the group
	// running at Epoch (Phase "running"); StartedAt is when it first did.
	Running   bool      `json:"running"`
	StartedAt time.Time `json:"started_at,omitempty"`
	// Phase is what the holder last reported of the group at Epoch
	// (lifecycle phases: starting, running, degraded, stopping, failed,
	// stopped, unmanaged), with the last error it saw; "" until it reports.
	Phase      string    `json:"phase,omitempty"`
	PhaseError string    `json:"phase_error,omitempty"`
	PhaseAt    time.Time `json:"phase_at,omitempty"`
	// Handover is a planned move under way: the holder stops the group,
	// releases its lease and reports it handed over, and only then does
	// the group go to Handover (at Epoch+1). HandoverAt is when it was
	// asked, HandoverReason why.
	Handover       string    `json:"handover,omitempty"`
	HandoverAt     time.Time `json:"handover_at,omitempty"`
	HandoverReason string    `json:"handover_reason,omitempty"`
	// Pinned is where an admin failover put the group: placement keeps it
	// there while that node is eligible, whatever the preference, until
	// cleanup.
	Pinned string `json:"pinned,omitempty"`
}

// Failure counts the failures of a group on one node.
type Failure struct {
	Count  int       `json:"count"`
	Last   time.Time `json:"last"`
	Banned bool      `json:"banned"` // the group may not run on this node (until expiry or cleanup)
	Reason string    `json:"reason"`
}

// Takeover is how a group moved after a failure.
type Takeover struct {
	From     string    `json:"from"`
	To       string    `json:"to"`
	At       time.Time `json:"at"`
	DetectMs int64     `json:"detect_ms"`
	DownAt   time.Time `json:"down_at"`
	// Epoch is the epoch the takeover placed the group at: figures of a
	// start at another epoch are not this takeover's.
	Epoch uint64 `json:"epoch,omitempty"`
	// FromEpoch is the epoch at which From held the group; FromStopped is
	// set when From reported everything of the group stopped since
	// (OpReleased): a takeover the group's fence: policy guards starts on
	// that report or on a confirmed fence of From (docs/two-node.md).
	FromEpoch   uint64 `json:"from_epoch,omitempty"`
	FromStopped bool   `json:"from_stopped,omitempty"`
}

// Volume is what the cluster knows of a replicated volume: the disk
// state of each replica, by node. A replica with no entry was never
// reported (a new volume).
type Volume struct {
	Replicas map[string]*Replica `json:"replicas"`
}

// Replica is the disk state of one replica, as the holder of the volume's
// group last reported it.
type Replica struct {
	Disk   string    `json:"disk"`  // one of Disks
	Epoch  uint64    `json:"epoch"` // the group's epoch of the report
	By     string    `json:"by"`    // the holder that reported it
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
	// Forced: an admin declared the replica UpToDate (tandem failover
	// --force) although it may lack writes; its next promotion is forced.
	Forced bool `json:"forced,omitempty"`
}

// Replica disk states, as the replication engine names them.
const (
	DiskUpToDate     = "UpToDate"
	DiskOutdated     = "Outdated"
	DiskInconsistent = "Inconsistent"
)

// Disks are the disk states a replica report may carry.
var Disks = []string{DiskUpToDate, DiskOutdated, DiskInconsistent}

// ReplicaOf returns node's replica of volume, or nil when never reported.
func (s *State) ReplicaOf(volume, node string) *Replica {
	if v := s.Volumes[volume]; v != nil {
		return v.Replicas[node]
	}
	return nil
}

// Node is the per-node admin state.
type Node struct {
	Standby     bool `json:"standby"`
	Maintenance bool `json:"maintenance"`
	// Leaving: the node's agent is shutting down and hands its groups
	// over; it runs nothing new until its agent starts again.
	Leaving bool `json:"leaving,omitempty"`
	// Config is the digest of the configuration the member's agent runs
	// (config.Digest), as it announced it.
	Config string `json:"config,omitempty"`
	// Boot is the newest boot number (the agent's life) of the node's
	// own commands applied: see Command.Boot.
	Boot uint32 `json:"boot,omitempty"`
}

// New returns an empty state.
func New() *State {
	return &State{Groups: map[string]*Group{}, Nodes: map[string]*Node{}}
}

// Op names a command.
type Op string

const (
	OpPlace       Op = "place"       // set a group's holder (epoch+1)
	OpStandby     Op = "standby"     // node standby on/off
	OpMaintenance Op = "maintenance" // cluster or node maintenance on/off
	OpFailure     Op = "failure"     // a resource of a group failed on a node
	OpCleanup     Op = "cleanup"     // forget a group's failures
	OpStarted     Op = "started"     // the holder started the group at an epoch (before phase reports)
	OpNoop        Op = "noop"        // advances followers' commit index
	OpHandover    Op = "handover"    // ask the holder to hand a group over to Holder (planned move)
	OpHandedOver  Op = "handed_over" // the holder stopped everything: the group goes to the handover target
	OpPhase       Op = "phase"       // the holder's phase of the group changed
	OpLeaving     Op = "leaving"     // a node's agent is shutting down (On) or back (off)
	OpConfig      Op = "config"      // a member announces the digest of its configuration
	OpReplica     Op = "replica"     // the holder of a volume's group reports a replica's disk state
	OpReleased    Op = "released"    // a takeover's old holder reports the group stopped on it
)

// Command is one change, as proposed and logged.
type Command struct {
	Op Op `json:"op"`
	// ID names the proposal: a retry of one whose outcome the proposer
	// never heard carries the same ID, and Apply answers it with the first
	// application's result. Empty in entries logged before IDs existed.
	ID     string    `json:"id,omitempty"`
	Time   time.Time `json:"time"` // proposer's clock
	Actor  string    `json:"actor,omitempty"`
	Group  string    `json:"group,omitempty"`
	Node   string    `json:"node,omitempty"`
	Holder string    `json:"holder,omitempty"`
	// Epoch: for place, the epoch the proposer saw (the command applies only
	// if it is still current); for failure, the epoch the failure happened at.
	Epoch  uint64 `json:"epoch,omitempty"`
	On     bool   `json:"on,omitempty"`
	Reason string `json:"reason,omitempty"`
	// failure
	Severity string `json:"severity,omitempty"` // soft, hard, fatal
	GaveUp   bool   `json:"gave_up,omitempty"`  // restarts in place exhausted
	// place after a failure
	Takeover *Takeover `json:"takeover,omitempty"`
	// phase
	Phase string `json:"phase,omitempty"`
	// config
	Digest string `json:"digest,omitempty"`
	// replica: Node (the group's holder, at Epoch) reports that
	// Replica's copy of Volume is Disk.
	Volume  string `json:"volume,omitempty"`
	Replica string `json:"replica,omitempty"`
	Disk    string `json:"disk,omitempty"`
	// Boot is the proposing agent's boot number (it grows with each
	// start of the agent) when Node is the proposer itself. A command of
	// an earlier life applied after one of a later life is refused as
	// stale: a killed agent's last report, still in its kernel's socket
	// and sent once a partition healed, arrived seconds after its
	// restarted agent had started the group again at the same epoch, and
	// recorded the group stopped (storage seed 43161). 0: not checked.
	Boot uint32 `json:"boot,omitempty"`
}

// Encode serializes a command for the log.
func (c Command) Encode() []byte {
	b, err := json.Marshal(c)
	if err != nil {
		panic(err) // plain struct; cannot fail
	}
	return b
}

// DecodeCommand parses a logged command.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("state: bad command: %w", err)
	}
	return c, nil
}

// ErrStaleEpoch is returned when a place command was computed from an
// epoch that is no longer current (someone else moved the group first).
var ErrStaleEpoch = errors.New("state: stale epoch")

// IsStaleEpoch reports whether err is ErrStaleEpoch.
func IsStaleEpoch(err error) bool { return errors.Is(err, ErrStaleEpoch) }

// Group returns the group's state, creating it (holder "", epoch 0).
func (s *State) Group(name string) *Group {
	g := s.Groups[name]
	if g == nil {
		g = &Group{}
		s.Groups[name] = g
	}
	return g
}

// Node returns the node's admin state, creating it.
func (s *State) Node(name string) *Node {
	n := s.Nodes[name]
	if n == nil {
		n = &Node{}
		s.Nodes[name] = n
	}
	return n
}

// Apply applies c at log index. A rejected command (stale epoch) changes
// nothing but the index. So does a repeat, a command whose ID was applied
// before (a retry after a leader change or a lost answer, which had
// committed after all): it returns the first application's result.
func (s *State) Apply(index uint64, c Command) error {
	s.Index = index
	if o, ok := s.Outcome(c.ID); ok {
		return o.Err()
	}
	var err error
	if n := s.lifeOf(c); n != nil && c.Boot < n.Boot {
		err = fmt.Errorf("%w: %s of %s from an earlier life of its agent (boot %d, now %d)", ErrStaleEpoch, c.Op, c.Node, c.Boot, n.Boot)
	} else {
		if n != nil {
			n.Boot = c.Boot
		}
		err = s.apply(c)
	}
	s.record(index, c.ID, err)
	return err
}

// lifeOf is the node whose life c's boot number is checked against; nil
// when c carries none.
func (s *State) lifeOf(c Command) *Node {
	if c.Boot == 0 || c.Node == "" {
		return nil
	}
	return s.Node(c.Node)
}

func (s *State) apply(c Command) error {
	switch c.Op {
	case OpPlace:
		g := s.Group(c.Group)
		if c.Epoch != g.Epoch {
			return fmt.Errorf("%w: group %s is at epoch %d, command computed at %d", ErrStaleEpoch, c.Group, g.Epoch, c.Epoch)
		}
		if c.Takeover != nil {
			t := *c.Takeover
			t.FromEpoch, t.FromStopped = g.Epoch, false
			g.moveTo(c.Holder, c.Time, c.Reason)
			t.Epoch = g.Epoch
			g.Takeover = &t
		} else {
			g.moveTo(c.Holder, c.Time, c.Reason)
		}
		if c.Actor != "" { // an admin failover pins the group
			g.Pinned = c.Holder
		}
	case OpHandover:
		g := s.Group(c.Group)
		if c.Epoch != g.Epoch || g.Holder == "" {
			return fmt.Errorf("%w: handover of group %s computed at epoch %d, now %d", ErrStaleEpoch, c.Group, c.Epoch, g.Epoch)
		}
		if c.Holder == g.Holder {
			return fmt.Errorf("state: handover of group %s to its own holder %s", c.Group, c.Holder)
		}
		if c.Holder != g.Handover {
			g.HandoverAt = c.Time
		}
		g.Handover, g.HandoverReason = c.Holder, c.Reason
		if c.Holder == "" {
			g.HandoverAt, g.HandoverReason = time.Time{}, ""
		}
		if c.Actor != "" && c.Holder != "" {
			g.Pinned = c.Holder
		}
	case OpHandedOver:
		g := s.Group(c.Group)
		if c.Epoch != g.Epoch || c.Node != g.Holder || g.Handover == "" {
			return fmt.Errorf("%w: group %s handed over at epoch %d by %s, now %d at %s", ErrStaleEpoch, c.Group, c.Epoch, c.Node, g.Epoch, g.Holder)
		}
		g.moveTo(g.Handover, c.Time, g.HandoverReason)
	case OpStarted:
		g := s.Group(c.Group)
		if c.Epoch != g.Epoch || c.Node != g.Holder {
			return fmt.Errorf("%w: group %s started at epoch %d, now %d", ErrStaleEpoch, c.Group, c.Epoch, g.Epoch)
		}
		g.Running = true
		g.StartedAt = c.Time
	case OpPhase:
		g := s.Group(c.Group)
		if c.Epoch != g.Epoch || c.Node != g.Holder {
			return fmt.Errorf("%w: group %s phase at epoch %d by %s, now %d at %s", ErrStaleEpoch, c.Group, c.Epoch, c.Node, g.Epoch, g.Holder)
		}
		g.Phase, g.PhaseError, g.PhaseAt = c.Phase, c.Reason, c.Time
		// Unmanaged (maintenance): nothing is looked at, so what was last
		// known stands, qualified by the phase.
		if c.Phase != "unmanaged" {
			g.Running = c.Phase == "running"
		}
		if g.Running && g.StartedAt.IsZero() {
			g.StartedAt = c.Time
		}
	case OpLeaving:
		s.Node(c.Node).Leaving = c.On
	case OpConfig:
		s.Node(c.Node).Config = c.Digest
	case OpStandby:
		s.Node(c.Node).Standby = c.On
	case OpMaintenance:
		if c.Node == "" {
			s.Maintenance = c.On
		} else {
			s.Node(c.Node).Maintenance = c.On
		}
	case OpFailure:
		g := s.Group(c.Group)
		if c.Epoch != g.Epoch {
			return fmt.Errorf("%w: failure of group %s reported at epoch %d, now %d", ErrStaleEpoch, c.Group, c.Epoch, g.Epoch)
		}
		if g.Failures == nil {
			g.Failures = map[string]*Failure{}
		}
		f := g.Failures[c.Node]
		if f == nil {
			f = &Failure{}
			g.Failures[c.Node] = f
		}
		f.Count++
		f.Last = c.Time
		f.Reason = c.Reason
		if c.GaveUp || c.Severity == "hard" || c.Severity == "fatal" {
			f.Banned = true
			if c.Node == g.Holder {
				g.Running = false
			}
		}
		if c.Severity == "fatal" {
			g.Blocked = c.Reason
		}
	case OpCleanup:
		g := s.Group(c.Group)
		g.Failures = nil
		g.Blocked = ""
		g.Pinned = ""
	case OpReplica:
		return s.applyReplica(c)
	case OpReleased:
		// Node says nothing of the group runs on it any more (it stopped
		// at its lease's end, or a restart's probe found nothing). It
		// counts for the takeover from Node at Epoch only: a report about
		// another holding says nothing of this one.
		g := s.Group(c.Group)
		t := g.Takeover
		if t == nil || t.Epoch != g.Epoch || t.From != c.Node || t.FromEpoch != c.Epoch {
			return fmt.Errorf("%w: group %s released by %s at epoch %d: no takeover from it at that epoch", ErrStaleEpoch, c.Group, c.Node, c.Epoch)
		}
		t.FromStopped = true
	case OpNoop:
	default:
		return fmt.Errorf("state: unknown op %q", c.Op)
	}
	return nil
}

// applyReplica records a replica's disk state. Only the holder of the
// volume's group at its current epoch may report (S2): a deposed holder's
// late report, such as a frozen primary outdating the replica the cluster
// has just promoted, is refused as stale. One holder's reports are
// proposed in order, so the newest is the truth. An admin (Actor set) may
// declare a replica UpToDate at the group's current epoch whoever holds
// it: tandem failover --force, which accepts losing what it lacks.
func (s *State) applyReplica(c Command) error {
	switch {
	case c.Volume == "" || c.Replica == "":
		return fmt.Errorf("state: replica report without a volume or replica")
	case !slices.Contains(Disks, c.Disk):
		return fmt.Errorf("state: replica report: disk %q is not one of %s", c.Disk, strings.Join(Disks, ", "))
	}
	g := s.Groups[c.Group]
	admin := c.Actor != "" && c.Disk == DiskUpToDate && g != nil && c.Epoch == g.Epoch
	// With no holder nobody writes, and nobody else could report: a data
	// node whose replica and connected peer are both UpToDate and in sync
	// (so said their handshake or a finished resync) may say so, or a
	// replica outdated before the group stopped would stay recorded
	// stale with its data current, and the group run nowhere once its
	// last node is banned (storage seed 20092). Only UpToDate: nothing
	// but the holder may outdate.
	holderless := c.Actor == "" && c.Node != "" && c.Disk == DiskUpToDate && g != nil && g.Holder == "" && c.Epoch == g.Epoch
	// Placed nowhere, the group's last holder is still stopping it: a
	// sync primary that loses its peer then (both nodes stopped at once)
	// must outdate it to write what its file system flushes on unmount,
	// or its I/O stays suspended and its agent never exits. Nobody has
	// held the group since, so the peer cannot have newer data; once the
	// group is placed again the epoch has moved on and this is refused.
	stopping := c.Actor == "" && g != nil && g.Holder == "" && g.Left != "" && c.Node == g.Left &&
		c.Epoch+1 == g.Epoch && c.Replica != c.Node && c.Disk != DiskUpToDate
	if old := s.ReplicaOf(c.Volume, c.Replica); stopping && old != nil && old.Epoch >= g.Epoch {
		// Recorded since the group stopped running (an admin's forced
		// UpToDate, a holderless report): newer than the old holder's word.
		stopping = false
	}
	if !admin && !holderless && !stopping && (g == nil || c.Epoch != g.Epoch || c.Node != g.Holder || g.Holder == "") {
		holder, epoch := "", uint64(0)
		if g != nil {
			holder, epoch = g.Holder, g.Epoch
		}
		return fmt.Errorf("%w: volume %s: replica of %s reported %s by %s at epoch %d, group %s is at epoch %d on %q",
			ErrStaleEpoch, c.Volume, c.Replica, c.Disk, c.Node, c.Epoch, c.Group, epoch, holder)
	}
	// A replica an admin forced UpToDate at this epoch stays so against
	// the holder's reports of it: the admin accepted losing what it
	// lacks, and the holder, still the holder until it has handed over,
	// would otherwise outdate it again on its next look and undo the
	// forced failover (the move cancelled, or the target never started).
	// Refused, the holder cannot fence its peer, so it acknowledges no
	// write the forced replica lacks. Its report of itself, an UpToDate
	// report, and anything at a later epoch go through.
	if old := s.ReplicaOf(c.Volume, c.Replica); old != nil && old.Forced && old.Epoch == c.Epoch &&
		!admin && c.Replica != c.Node && c.Disk != DiskUpToDate {
		return fmt.Errorf("%w: volume %s: replica of %s reported %s by %s at epoch %d, but %s forced it UpToDate at that epoch (tandem failover --force)",
			ErrStaleEpoch, c.Volume, c.Replica, c.Disk, c.Node, c.Epoch, old.By)
	}
	if s.Volumes == nil {
		s.Volumes = map[string]*Volume{}
	}
	v := s.Volumes[c.Volume]
	if v == nil {
		v = &Volume{Replicas: map[string]*Replica{}}
		s.Volumes[c.Volume] = v
	}
	r := &Replica{Disk: c.Disk, Epoch: c.Epoch, By: c.Node, At: c.Time, Reason: c.Reason}
	if admin {
		r.By, r.Forced = c.Actor, true // until its holder reports it
	}
	v.Replicas[c.Replica] = r
	return nil
}

// Clone returns a deep copy (for readers outside the apply goroutine).
// Outcomes hold nothing mutable, so a copy of the slice is a deep one and
// spares the JSON round trip its thousand entries.
func (s *State) Clone() *State {
	rest := *s
	rest.Outcomes = nil
	b, err := json.Marshal(&rest)
	if err != nil {
		panic(err)
	}
	c := New()
	if err := json.Unmarshal(b, c); err != nil {
		panic(err)
	}
	c.Outcomes = slices.Clone(s.Outcomes)
	if c.Groups == nil {
		c.Groups = map[string]*Group{}
	}
	if c.Nodes == nil {
		c.Nodes = map[string]*Node{}
	}
	return c
}

// Marshal and Unmarshal are the snapshot format.
func (s *State) Marshal() ([]byte, error) { return json.Marshal(s) }

// Unmarshal restores a snapshot.
func Unmarshal(b []byte) (*State, error) {
	s := New()
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("state: bad snapshot: %w", err)
	}
	if s.Groups == nil {
		s.Groups = map[string]*Group{}
	}
	if s.Nodes == nil {
		s.Nodes = map[string]*Node{}
	}
	if err := s.checkEntries(); err != nil {
		return nil, fmt.Errorf("state: bad snapshot: %w", err)
	}
	return s, nil
}

// checkEntries refuses null entries, which JSON decodes as nil pointers:
// Apply never makes one, and every reader of the state (the agent, the
// placement, the API) reads an entry's fields without looking.
func (s *State) checkEntries() error {
	for _, name := range s.GroupNames() {
		g := s.Groups[name]
		if g == nil {
			return fmt.Errorf("group %q is null", name)
		}
		for node, f := range g.Failures {
			if f == nil {
				return fmt.Errorf("group %q: failures of node %q are null", name, node)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Nodes)) {
		if s.Nodes[name] == nil {
			return fmt.Errorf("node %q is null", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Volumes)) {
		v := s.Volumes[name]
		if v == nil || v.Replicas == nil {
			return fmt.Errorf("volume %q is null", name)
		}
		for node, r := range v.Replicas {
			if r == nil {
				return fmt.Errorf("volume %q: replica of node %q is null", name, node)
			}
		}
	}
	return nil
}

// moveTo gives the group to holder at the next epoch (S2): whatever the
// old holder reported no longer holds, and no handover is pending.
func (g *Group) moveTo(holder string, at time.Time, reason string) {
	g.Epoch++
	g.Left = ""
	if holder == "" {
		g.Left = g.Holder
	}
	g.Holder = holder
	g.Since = at
	g.Reason = reason
	g.Running = false
	g.StartedAt = time.Time{}
	g.Phase, g.PhaseError, g.PhaseAt = "", "", time.Time{}
	g.Handover, g.HandoverAt, g.HandoverReason = "", time.Time{}, ""
}

// ActiveFailure reports whether f still counts at now: it has not expired
// after failureTimeout (0 = never expires).
func (f *Failure) ActiveFailure(now time.Time, failureTimeout time.Duration) bool {
	return f != nil && (failureTimeout <= 0 || now.Sub(f.Last) < failureTimeout)
}

// ClusterConfig is the configuration digest a majority of voters
// announced ("" when no digest has a majority yet).
func (s *State) ClusterConfig(voters []string) string {
	count := map[string]int{}
	for _, v := range voters {
		if n := s.Nodes[v]; n != nil && n.Config != "" {
			count[n.Config]++
		}
	}
	for d, c := range count {
		if c > len(voters)/2 {
			return d
		}
	}
	return ""
}

// ConfigDiffers reports whether member n announced a configuration other
// than the cluster's.
func (s *State) ConfigDiffers(n string, voters []string) bool {
	ref := s.ClusterConfig(voters)
	node := s.Nodes[n]
	return ref != "" && node != nil && node.Config != "" && node.Config != ref
}

// GroupNames returns the group names in order.
func (s *State) GroupNames() []string {
	names := make([]string, 0, len(s.Groups))
	for n := range s.Groups {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
