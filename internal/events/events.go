// Package events owns the event vocabulary of tandem and the audit log: every
// state transition (node or link up/down, lease lost, takeover, resource
// start/stop/failure, admin action, RAID health) is an Event published on a
// Bus; the audit log, metrics, API and UI consume it. The audit log is JSON
// lines, its entries linked by a hash chain that Verify checks (chain.go
// says the format). It imports only internal/durable, which rewrites the log
// when it is compacted; any package may import it.
package events

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Kind names what happened. Kinds are stable strings: they are part of the
// audit log format and of `tandem events --kind`.
type Kind string

// Cluster kinds.
const (
	NodeUp         Kind = "node_up"
	NodeDown       Kind = "node_down"
	LinkUp         Kind = "link_up"
	LinkDown       Kind = "link_down"
	LeaseAcquired  Kind = "lease_acquired"
	LeaseLost      Kind = "lease_lost"
	Takeover       Kind = "takeover"
	Placement      Kind = "placement"
	GroupStarted   Kind = "group_started"
	GroupStopped   Kind = "group_stopped"
	ResStart       Kind = "resource_start"
	ResStop        Kind = "resource_stop"
	ResFailure     Kind = "resource_failure"
	ResRestart     Kind = "resource_restart" // restarted in place after a failure
	ResFound       Kind = "resource_found"   // found running by a probe (left by a previous agent)
	Handover       Kind = "handover"         // a planned move: stopped here, lease released
	GuardDrops     Kind = "guard_drops"      // the kernel guard dropped traffic for a VIP this node holds
	ConfigMismatch Kind = "config_mismatch"  // a member runs another configuration than the cluster
	AdminAction    Kind = "admin_action"
	QuorumLost     Kind = "quorum_lost"
	QuorumGained   Kind = "quorum_gained"
	LeaderChanged  Kind = "leader_changed"
	PacketDropped  Kind = "packet_dropped"
	LogCheckpoint  Kind = "log_checkpoint" // the audit log's compaction dropped its oldest entries
	Drill          Kind = "drill"          // a failover drill (tandem drill): its result and times
	ReplicaState   Kind = "replica_state"  // the cluster's record of a volume replica changed (UpToDate, Outdated, …)
)

// RAID health kinds (mirroring mdadm --monitor event names).
const (
	RaidFail             Kind = "Fail"
	RaidDegradedArray    Kind = "DegradedArray"
	RaidSpareActive      Kind = "SpareActive"
	RaidRebuildStarted   Kind = "RebuildStarted"
	RaidRebuildProgress  Kind = "RebuildProgress"
	RaidRebuildFinished  Kind = "RebuildFinished"
	RaidRebuildAborted   Kind = "RebuildAborted"
	RaidChecksumRepaired Kind = "ChecksumRepaired"
	RaidMismatchesFound  Kind = "MismatchesFound"
)

// The fencing kinds (docs/fencing.md).
const (
	FenceRequested Kind = "fence_requested" // a node is to be fenced: who or what asked, and why
	FenceAttempt   Kind = "fence_attempt"   // one action of one fence device: level, action, duration, result
	FenceSucceeded Kind = "fence_succeeded" // the node is confirmed off (docs/fencing.md)
	FenceFailed    Kind = "fence_failed"    // every level failed: the node is not confirmed off

	WatchdogArmed    Kind = "watchdog_armed"    // the agent opened its watchdog (docs/fencing.md, "Watchdog")
	WatchdogExpiring Kind = "watchdog_expiring" // the agent stopped feeding it for good: the machine resets
	WatchdogDisarmed Kind = "watchdog_disarmed" // a planned stop closed it with the magic close
)

// KnownKinds lists every kind tandem writes, cluster kinds first.
func KnownKinds() []Kind {
	return append([]Kind{
		NodeUp, NodeDown, LinkUp, LinkDown, LeaseAcquired, LeaseLost, Takeover, Placement,
		GroupStarted, GroupStopped, ResStart, ResStop, ResFailure, ResRestart, ResFound,
		Handover, GuardDrops, ConfigMismatch, AdminAction, QuorumLost, QuorumGained,
		LeaderChanged, PacketDropped, LogCheckpoint, Drill, ReplicaState,
		FenceRequested, FenceAttempt, FenceSucceeded, FenceFailed,
		WatchdogArmed, WatchdogExpiring, WatchdogDisarmed,
		RaidFail, RaidDegradedArray, RaidSpareActive, RaidRebuildStarted, RaidRebuildProgress,
		RaidRebuildFinished, RaidRebuildAborted, RaidChecksumRepaired, RaidMismatchesFound,
	}, volumeKinds...)
}

// volumeKinds are what a volume replica reports, "volume_" and the
// replication engine's event (replication.EventKind) or "volume_link_"
// and its link's (link.EventKind, but for the epoch, which is not
// reported). They are written by the engine's names, not constants of
// this package; volumecli's tests check the two lists agree.
var volumeKinds = []Kind{
	"volume_connected", "volume_disconnected", "volume_connect_refused", "volume_split_brain",
	"volume_resync_started", "volume_resync_finished", "volume_verify_mismatch", "volume_verify_finished",
	"volume_peer_outdated", "volume_fence_failed", "volume_outdated", "volume_disk_detached",
	"volume_peer_detached", "volume_promoted", "volume_demoted", "volume_deposed", "volume_stale_frame",
	"volume_ahead",
	"volume_link_up", "volume_link_down", "volume_link_switched", "volume_link_refused",
	"volume_link_dial_failed", "volume_link_stale",
}

// ParseKinds reads a comma-separated list of kinds ("takeover,node_down"),
// refusing any that tandem does not write: a misspelt kind would otherwise
// select nothing, which reads as "it never happened".
func ParseKinds(s string) ([]Kind, error) {
	known := KnownKinds()
	var out []Kind
	for _, f := range strings.Split(s, ",") {
		k := Kind(strings.TrimSpace(f))
		if k == "" {
			continue
		}
		if !slices.Contains(known, k) {
			names := make([]string, len(known))
			for i, k := range known {
				names[i] = string(k)
			}
			return nil, fmt.Errorf("events: unknown kind %q (known: %s)", k, strings.Join(names, ", "))
		}
		out = append(out, k)
	}
	return out, nil
}

// Event is one transition. Fields that do not apply stay empty; Attrs holds
// kind-specific details (milliseconds of a takeover, an error text, …).
type Event struct {
	Time    time.Time      `json:"time"`
	Kind    Kind           `json:"kind"`
	Node    string         `json:"node,omitempty"`    // node that reports it
	Subject string         `json:"subject,omitempty"` // node, link, group, resource or array it is about
	Group   string         `json:"group,omitempty"`
	Epoch   uint64         `json:"epoch,omitempty"`
	Actor   string         `json:"actor,omitempty"` // who made an admin action
	Message string         `json:"message,omitempty"`
	Attrs   map[string]any `json:"attrs,omitempty"`
}

// Sink consumes events. Implementations must not block for long.
type Sink interface {
	Publish(Event)
}

// Bus fans an event out to every subscribed sink, in subscription order.
type Bus struct {
	mu    sync.RWMutex
	sinks []Sink
}

// Subscribe adds a sink.
func (b *Bus) Subscribe(s Sink) {
	b.mu.Lock()
	b.sinks = append(b.sinks, s)
	b.mu.Unlock()
}

// Publish delivers e to every sink.
func (b *Bus) Publish(e Event) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, s := range b.sinks {
		s.Publish(e)
	}
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(Event)

func (f SinkFunc) Publish(e Event) { f(e) }

// Recorder is an in-memory sink for tests.
type Recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *Recorder) Publish(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// Events returns a copy of what was recorded.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// OfKind returns the recorded events of kind k.
func (r *Recorder) OfKind(k Kind) []Event {
	var out []Event
	for _, e := range r.Events() {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}
