package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// The default timing profile. It is chosen to meet two targets at once: a
// failover median ≤ 300 ms from a crash until the VIP answers from the
// standby (detection takes at most NodeTimeout, which leaves 120 ms to
// decide and start), and an idle agent under 1% of a core. Each heartbeat
// round costs every agent a timer wake-up, a send per peer, a receive per
// peer and, on the holder, a kernel lease refresh; on the 2-core VM of
// docs/benchmarks.md 50 ms rounds kept the active node at 1.0% of a core,
// 60 ms rounds bring it to about 0.85% for 30 ms more failover.
const (
	// Three heartbeats fit in a node timeout, so one or two lost packets
	// never declare a node dead.
	DefaultHeartbeatInterval = 60 * time.Millisecond
	// Three missed heartbeats: detection within 180 ms.
	DefaultNodeTimeout = 180 * time.Millisecond
	// Equal to the node timeout, so by the time a dead holder is detected
	// its lease has run out too and a takeover waits only for the drift
	// margin.
	DefaultLease = DefaultNodeTimeout
	// Quartz clocks, even without NTP, differ in rate by far less than
	// 100 ppm; 1 % is a hundredfold margin and costs 1.8 ms on the lease.
	DefaultMaxClockDrift = 0.01
	// Raft leads from the witness, so a data node's death never waits for
	// an election; the raft timeout only matters when the witness (or a
	// leading data node right after start) dies. One second keeps the
	// leader's heartbeats (every timeout/10 to timeout/5) and so the idle
	// agent's CPU low, and a busy machine does not cause leader churn.
	DefaultRaftTimeout = time.Second
)

// DefaultTiming returns the default timing profile.
func DefaultTiming() Timing {
	return Timing{
		HeartbeatInterval: Duration(DefaultHeartbeatInterval),
		NodeTimeout:       Duration(DefaultNodeTimeout),
		Lease:             Duration(DefaultLease),
		MaxClockDrift:     DefaultMaxClockDrift,
		RaftTimeout:       Duration(DefaultRaftTimeout),
	}
}

// Default returns the cluster-wide defaults. Cluster, KeyFile, Nodes,
// Witness and Groups have none: they describe the user's machines.
func Default() Config {
	const stateDir = "/var/lib/tandem" // the FHS place for persistent state
	return Config{
		StateDir: stateDir,
		// One number for UDP heartbeats and TCP raft: one firewall rule
		// per peer covers the whole cluster.
		Port:   7789,
		Timing: DefaultTiming(),
		// A node started with another VIP, command or timing would serve
		// the wrong thing after a failover while status said running:
		// moving a group onto it must wait until the files agree.
		ConfigMismatch: MismatchBlock,
		API: API{
			// /run is cleared at boot, so a stale socket never outlives
			// its agent; the directory's mode guards who may connect.
			Socket: "/run/tandem/tandem.sock",
			// Remote control is opt-in: it needs a token file.
			TCPPort: 0,
			// When TCP is on, listening only on the node's first link
			// address keeps the API off public interfaces by default.
			BindAll: false,
		},
		Notify: DefaultNotify(),
		Events: Events{
			// Everything a node keeps lives under one directory.
			File: filepath.Join(stateDir, "events.jsonl"),
			// Six months is the usual audit horizon and, at a few
			// hundred bytes per event, a few megabytes.
			Retention: Duration(180 * Day),
		},
	}
}

// DefaultGroup returns a group's defaults. Nodes (all data nodes) and Prefer
// (the first of Nodes) depend on the cluster and are filled by ApplyDefaults.
func DefaultGroup() Group {
	return Group{
		// Every move is an outage; moving back on its own doubles it and
		// can flap when the preferred node is sick. The admin chooses when.
		Failback: Failback{Mode: FailbackManual},
		// A node that lost a group by takeover (it died, hung or was cut
		// off) is suspect: a blip of its network or a stall of a busy
		// machine must not turn into a second move, and a node that
		// flaps must not drag the group along. A minute of steady
		// heartbeats is cheap next to two outages.
		FailbackHold: Duration(time.Minute),
		// Failback already says whether a group moves back; stickiness is
		// only an extra threshold for auto and delayed failback (a move
		// happens when the better node's preference score exceeds the
		// current one's by more than it), so it starts at 0.
		Stickiness: 0,
		// A transient crash is cheaper to restart in place than to fail
		// over, but a service that keeps dying moves within a few
		// monitor intervals.
		MaxRestarts: 3,
		// Failures from an old incident should not bar a node for ever;
		// ten minutes is long enough to stop a crash loop from
		// ping-ponging between nodes.
		FailureTimeout: Duration(10 * time.Minute),
		// The lease stops a VIP on a node that cannot renew, but not a
		// process or a mount on a node whose agent is dead: fence when the
		// group holds such a resource and a device is configured.
		Fence: FenceWhenNeeded,
	}
}

// DefaultResource returns the operation timing of a resource of kind ("vip",
// "exec", "ocf", or "" when unknown). The name (kind-index) depends on the
// resource's place in its group and is filled by ApplyDefaults.
func DefaultResource(kind string) Resource {
	r := Resource{
		// Two seconds notices a dead service quickly at the cost of one
		// cheap probe.
		MonitorInterval: Duration(2 * time.Second),
		// Pacemaker's default operation timeout: long enough for most
		// services to start or stop cleanly.
		StartTimeout: Duration(20 * time.Second),
		StopTimeout:  Duration(20 * time.Second),
		// A probe that takes longer than this is a failure in itself.
		MonitorTimeout: Duration(10 * time.Second),
	}
	switch kind {
	case "vip":
		// A netlink query costs nothing, and a lost VIP is the most
		// visible failure there is.
		r.MonitorInterval = Duration(time.Second)
	case "ocf":
		// OCF agents are shell scripts that fork many processes; 10 s is
		// what Pacemaker setups commonly use.
		r.MonitorInterval = Duration(10 * time.Second)
	}
	return r
}

// DefaultVIP returns a vip resource's defaults.
func DefaultVIP() VIP {
	return VIP{
		// Switches and hosts that miss the first announcement (a busy
		// CPU, a port still settling) get four more chances within half
		// a second.
		GARPCount:    5,
		GARPInterval: Duration(100 * time.Millisecond),
	}
}

// DefaultExec returns an exec resource's defaults.
func DefaultExec() Exec {
	// TERM is the conventional request to shut down cleanly; the stop
	// timeout ends in KILL.
	return Exec{StopSignal: "TERM"}
}

// DefaultVolume returns a volume's defaults. Port depends on the volume's
// place in the list and is filled by ApplyDefaults.
func DefaultVolume() Volume {
	return Volume{
		// What users buy a hot-standby pair for is RPO 0: no write the
		// service saw acknowledged is lost in a failover.
		Mode: "sync",
		// Async only: 64 MiB is a few seconds of writes on a busy disk,
		// what a user of async replication accepts to lose.
		MaxLag: 64 << 20,
		// Past max_lag the primary slows to the link's pace rather than
		// let the loss grow without bound.
		OnLag: "throttle",
		// In a cluster the epochs decide a split brain: the replica
		// promoted at the older epoch was deposed, and in sync mode it
		// acknowledged nothing the newer primary lacks (its fencer could
		// not outdate a replica the cluster then promoted), so its own
		// writes since the split are discarded, with an event saying how
		// much. `disconnect` (DRBD's default, and standalone tandem
		// volume's) left a deposed primary killed right after its
		// promotion StandAlone for good, the group running without a
		// copy until someone resolved it (storage seed 30075).
		SplitBrain: "discard-older-primary",
	}
}

// DefaultFilesystem returns a filesystem resource's defaults.
func DefaultFilesystem() Filesystem {
	return Filesystem{
		// A file system taken over from a crashed node replays its
		// journal; the check catches what a journal cannot.
		Fsck: true,
		// A process left in the mount would otherwise hold the group on
		// a node it is leaving; the Filesystem OCF agent kills them too.
		ForceUnmount: Duration(10 * time.Second),
	}
}

// DefaultNBDExport returns an nbd_export resource's defaults.
func DefaultNBDExport() NBDExport {
	return NBDExport{Port: 10809} // IANA's NBD port
}

// DefaultOCF returns an ocf resource's defaults.
func DefaultOCF() OCF {
	// Where Debian's resource-agents package installs.
	return OCF{Root: "/usr/lib/ocf"}
}

// ApplyDefaults fills the defaults that depend on other fields, and fields
// left at a zero value that can never be meant: an empty events file
// (<state_dir>/events.jsonl), a zero lease (= node_timeout), an empty
// failback (manual), a group's empty nodes (all data nodes) and prefer (the
// first of its nodes), a resource's empty name (<kind>-<index>), and a volume's zero port (the
// cluster's port + 1 + its index). It also
// writes stop signals without their "SIG" prefix. Parse
// calls it; code that builds a Config from Default… values calls it before
// Validate.
func (c *Config) ApplyDefaults() {
	if c.Events.File == "" && c.StateDir != "" {
		c.Events.File = filepath.Join(c.StateDir, "events.jsonl")
	}
	if c.Timing.Lease == 0 {
		c.Timing.Lease = c.Timing.NodeTimeout
	}
	for i := range c.Volumes {
		if c.Volumes[i].Port == 0 && c.Port != 0 {
			// Next to the cluster's port, one per volume.
			c.Volumes[i].Port = c.Port + 1 + i
		}
	}
	for gi := range c.Groups {
		g := &c.Groups[gi]
		if g.Failback.Mode == "" {
			g.Failback.Mode = FailbackManual
		}
		if len(g.Nodes) == 0 {
			g.Nodes = c.dataNodeNames()
		}
		if len(g.Prefer) == 0 && len(g.Nodes) > 0 {
			g.Prefer = StringList{g.Nodes[0]}
		}
		for ri := range g.Resources {
			r := &g.Resources[ri]
			if r.Name == "" && r.Kind() != "" {
				r.Name = fmt.Sprintf("%s-%d", strings.ReplaceAll(r.Kind(), "_", "-"), ri)
			}
			if r.Exec != nil {
				// "SIGTERM" and "TERM" mean the same; agents see one form.
				r.Exec.StopSignal = strings.TrimPrefix(r.Exec.StopSignal, "SIG")
			}
		}
	}
}
