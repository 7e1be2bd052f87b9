// Package manager runs what this node should run: one worker per group
// drives that group's lifecycle state machine (internal/lifecycle), runs
// the operations it asks for against the resource agents, each in its own
// goroutine with its timeout, keeps the kernel VIP guard in line with the
// lease, gives leases back, reports to the cluster and writes the audit
// events. The worker's loop never waits for an agent: a slow monitor
// cannot hold up a guard refresh, a lease loss or a shutdown.
//
// It is an adapter: the decisions are lifecycle's. It calls resource
// agents through resource.Agent, the lease through LeaseSource, the kernel
// VIP guard through vipguard.Guard and the cluster through Reporter.
// Imported by internal/node only.
package manager

import (
	"context"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"time"

	"tandem/internal/clock"
	"tandem/internal/events"
	"tandem/internal/lifecycle"
	"tandem/internal/resource"
	"tandem/internal/state"
	"tandem/internal/vipguard"
)

// Resource is one resource of a group as the manager runs it.
type Resource struct {
	Name            string
	Kind            string
	Agent           resource.Agent
	VIP             netip.Addr // valid for vip resources: guarded by the kernel lease
	MonitorInterval time.Duration
	StartTimeout    time.Duration
	StopTimeout     time.Duration
	MonitorTimeout  time.Duration
}

// Group is a group as the manager runs it.
type Group struct {
	Name           string
	Resources      []Resource
	MaxRestarts    int
	FailureTimeout time.Duration
}

// LeaseSource is this node's view of its group leases (heartbeat.Runner).
type LeaseSource interface {
	Lease(group string) (epoch uint64, until time.Time, ok bool)
	Release(group string, epoch uint64)
}

// Reporter proposes commands to the cluster (consensus).
type Reporter interface {
	Propose(ctx context.Context, c state.Command) error
}

// GuardMargin is how much earlier than the lease the kernel VIP guard's
// allowance ends: it covers the time between reading the clock and the
// kernel inserting the element (a netlink round trip, longer when the
// machine is loaded). It costs nothing in failover time: a new holder waits
// for the voters' promises, which end after the old holder's lease.
const GuardMargin = 25 * time.Millisecond

// Config wires a Manager.
type Config struct {
	Node     string
	Groups   []Group
	Lease    LeaseSource
	Guard    vipguard.Guard // nil: no kernel guard (not root)
	Reporter Reporter
	Clock    clock.Clock
	Logger   *slog.Logger
	Events   events.Sink
	// Margin: the group is fenced this long before the lease ends, so the
	// VIP is gone before another node may take it.
	Margin time.Duration
	// OnOp, if set, sees every finished resource operation (start, stop,
	// monitor) with its outcome (ok, not_running, failed, timeout) and how
	// long it took, for metrics; it runs on the operation's goroutine and
	// must not block.
	OnOp func(OpResult)
	// MayStart, if set, gates a start at a new epoch on fencing
	// (internal/fencepolicy): until it says yes for the group at the
	// epoch of the lease, the worker acts as if it had no lease yet. Once
	// yes at an epoch, it is not asked again for that epoch (a group that
	// runs is never stopped by it). Call MayStartChanged when an answer
	// may have changed.
	MayStart func(group string, epoch uint64) bool
}

// OpResult is one finished resource operation.
type OpResult struct {
	Group, Resource, Kind, Op, Outcome string
	Took                               time.Duration
}

// Manager runs the groups of this node.
type Manager struct {
	cfg     Config
	workers []*worker
	byName  map[string]*worker
	wg      sync.WaitGroup
}

// New returns a manager; Run starts it. Each group's machine starts by
// probing its resources (a predecessor agent may have left them running).
func New(cfg Config) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Events == nil {
		cfg.Events = events.SinkFunc(func(events.Event) {})
	}
	m := &Manager{cfg: cfg, byName: map[string]*worker{}}
	for _, g := range cfg.Groups {
		w := newWorker(m, g)
		m.workers = append(m.workers, w)
		m.byName[g.Name] = w
	}
	return m
}

// Run starts one worker per group. They stop when ctx ends, leaving the
// resources as they are (a crash): to stop them, Leave first.
func (m *Manager) Run(ctx context.Context) {
	for _, w := range m.workers {
		m.wg.Add(1)
		go func(w *worker) {
			defer m.wg.Done()
			w.run(ctx)
		}(w)
	}
	if m.cfg.Guard != nil {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.watchGuard(ctx)
		}()
	}
}

// Wait waits for the workers to end after Run's context ended.
func (m *Manager) Wait() { m.wg.Wait() }

// SetState hands the applied cluster state to every worker.
func (m *Manager) SetState(st *state.State) {
	for _, w := range m.workers {
		g := st.Groups[w.g.Name]
		v := lifecycle.View{Known: true, Maintenance: st.Maintenance}
		if n := st.Nodes[m.cfg.Node]; n != nil {
			v.Maintenance = v.Maintenance || n.Maintenance
		}
		var info groupInfo
		if g != nil {
			v.Holder, v.Epoch, v.Handover = g.Holder, g.Epoch, g.Handover
			info = groupInfo{takeover: g.Takeover, reason: g.Reason}
		}
		w.setView(v, info)
	}
}

// LeaseChanged wakes the group's worker (lease acquired, extended or lost);
// it reads the lease afresh.
func (m *Manager) LeaseChanged(group string) {
	if w := m.byName[group]; w != nil {
		w.poke()
	}
}

// MayStartChanged wakes the group's worker to ask Config.MayStart again.
func (m *Manager) MayStartChanged(group string) { m.LeaseChanged(group) }

// Probed reports whether every group has found out what runs here (the
// first probe after start is done).
func (m *Manager) Probed() bool {
	for _, w := range m.workers {
		if !w.probedOnce() {
			return false
		}
	}
	return true
}

// Leave stops this node's part in every group before the agent exits:
// monitors are cancelled at once; each group this node holds is expected
// to be handed over (the caller has told the cluster the node is leaving)
// and is stopped here when the handover starts; a group whose handover
// has not started after handoverWait (no other node can take it) is
// stopped anyway. Leave returns when nothing runs here any more and every
// report (the handovers above all) has reached the cluster, or when ctx
// ends.
func (m *Manager) Leave(ctx context.Context, handoverWait time.Duration) {
	for _, w := range m.workers {
		w.request(func(w *worker) { w.drain = true })
	}
	deadline := m.cfg.Clock.NewTimer(handoverWait)
	defer deadline.Stop()
	tick := m.cfg.Clock.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var quietAt time.Time
	for {
		quiet, reported := true, true
		for _, w := range m.workers {
			quiet = quiet && w.isQuiet()
			reported = reported && w.reports.empty()
		}
		if quiet && quietAt.IsZero() {
			quietAt = m.cfg.Clock.Now()
		}
		// Nothing runs: wait a little for the reports (the handover
		// above all) to commit, not for ever (without a quorum they
		// cannot; the lease runs out then anyway).
		if quiet && (reported || m.cfg.Clock.Since(quietAt) > reportGrace) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C():
			for _, w := range m.workers {
				w.request(func(w *worker) { w.shutdown = true })
			}
		case <-tick.C():
		}
	}
}

// reportGrace is how long a leaving agent that has stopped everything
// waits for its reports to reach the cluster.
const reportGrace = 2 * time.Second

// Status returns the state of every group on this node, by name.
func (m *Manager) Status() []GroupStatus {
	var out []GroupStatus
	for _, w := range m.workers {
		out = append(out, w.status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// GroupStatus is what this node runs of a group, as last observed.
type GroupStatus struct {
	Name      string    `json:"name"`
	Phase     string    `json:"phase"` // lifecycle phases: probing, stopped, starting, running, degraded, stopping, failed, unmanaged
	Epoch     uint64    `json:"epoch,omitempty"`
	Since     time.Time `json:"since"`
	LeaseLeft float64   `json:"lease_left_ms,omitempty"`
	Handover  string    `json:"handover,omitempty"` // a planned move under way, to this node
	Restarts  int       `json:"restarts"`
	LastError string    `json:"last_error,omitempty"`
	// GuardDropped counts the packets to the group's VIPs the kernel guard
	// turned away on this node since the agent started; GuardLate the
	// refreshes the kernel applied too late to trust (the VIP was silenced
	// until the next renewal).
	GuardDropped uint64           `json:"guard_dropped_packets"`
	GuardLate    uint64           `json:"guard_late"`
	Resources    []ResourceStatus `json:"resources"`
}

// ResourceStatus is one resource on this node, as last observed.
type ResourceStatus struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// State is what was last seen: unknown, stopped, running, failed.
	State   string `json:"state"`
	Running bool   `json:"running"`
	// Op is the operation under way, if any.
	Op         string    `json:"op,omitempty"`
	LastSeen   time.Time `json:"last_seen_running,omitempty"`
	LastCheck  time.Time `json:"last_check,omitempty"`
	LastResult string    `json:"last_result,omitempty"`
	LastError  string    `json:"last_error,omitempty"`
}

// Phases of a group on this node.
const (
	PhaseProbing   = string(lifecycle.PhaseProbing)
	PhaseStopped   = string(lifecycle.PhaseStopped)
	PhaseStarting  = string(lifecycle.PhaseStarting)
	PhaseRunning   = string(lifecycle.PhaseRunning)
	PhaseDegraded  = string(lifecycle.PhaseDegraded)
	PhaseStopping  = string(lifecycle.PhaseStopping)
	PhaseFailed    = string(lifecycle.PhaseFailed)
	PhaseUnmanaged = string(lifecycle.PhaseUnmanaged)
)
