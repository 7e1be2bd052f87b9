// Package manager owns what runs on this node: one worker per group that
// starts the group's resources in order when this node holds the group's
// lease at the current epoch, monitors them, restarts a failed one in place
// up to max_restarts, stops them in reverse order when the group moves
// away, and fences at once (VIP first) when the lease is lost. Every action
// is checked against the lease on the monotonic clock first, so a node that
// wakes from a freeze touches nothing before it knows its lease is gone.
//
// It is an adapter: it runs goroutines and calls resource agents through
// resource.Agent, the lease through LeaseSource, the kernel VIP guard
// through vipguard.Guard and failure reports through Reporter. Imported by
// internal/node only.
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

// Reporter proposes failure commands to the cluster (consensus).
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
}

// Manager runs the groups of this node.
type Manager struct {
	cfg     Config
	workers map[string]*worker
	wg      sync.WaitGroup
}

// New returns a manager; Run starts it.
func New(cfg Config) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Events == nil {
		cfg.Events = events.SinkFunc(func(events.Event) {})
	}
	m := &Manager{cfg: cfg, workers: map[string]*worker{}}
	for _, g := range cfg.Groups {
		w := &worker{m: m, g: g, wake: make(chan struct{}, 1), res: make([]resState, len(g.Resources)),
			log: cfg.Logger.With("group", g.Name)}
		m.workers[g.Name] = w
	}
	return m
}

// Run starts one worker per group; they stop when ctx ends (leaving
// resources as they are: a stopping agent is not a failover).
func (m *Manager) Run(ctx context.Context) {
	for _, w := range m.workers {
		m.wg.Add(1)
		go func(w *worker) {
			defer m.wg.Done()
			w.run(ctx)
		}(w)
	}
}

// Wait waits for the workers to end after Run's context ended.
func (m *Manager) Wait() { m.wg.Wait() }

// StopAll stops every group running here and releases its lease (the agent
// is shutting down). Call it after Wait.
func (m *Manager) StopAll() {
	for _, w := range m.workers {
		if w.anyRunning() {
			w.mu.Lock()
			epoch := w.epoch
			w.mu.Unlock()
			w.stopAll(context.Background(), true, "agent shutting down")
			m.cfg.Lease.Release(w.g.Name, epoch)
		}
	}
}

// SetState hands the applied cluster state to every worker.
func (m *Manager) SetState(st *state.State) {
	now := m.cfg.Clock.Now()
	for name, w := range m.workers {
		g := st.Groups[name]
		v := view{maintenance: st.Maintenance}
		if n := st.Nodes[m.cfg.Node]; n != nil {
			v.maintenance = v.maintenance || n.Maintenance
		}
		if g != nil {
			v.holder, v.epoch, v.takeover = g.Holder, g.Epoch, g.Takeover
		}
		w.setView(v, now)
	}
}

// LeaseChanged wakes the group's worker (lease acquired, extended or lost).
// On loss it fences the group's VIPs at once, from the caller's goroutine,
// whatever the worker is doing.
func (m *Manager) LeaseChanged(group string, lost bool) {
	w := m.workers[group]
	if w == nil {
		return
	}
	if lost {
		w.fenceVIPs("lease lost")
	}
	w.poke()
}

// Status returns the state of every group on this node, by name.
func (m *Manager) Status() []GroupStatus {
	var out []GroupStatus
	for _, w := range m.workers {
		out = append(out, w.status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// GroupStatus is what this node runs of a group.
type GroupStatus struct {
	Name      string           `json:"name"`
	Phase     string           `json:"phase"` // stopped, starting, running, stopping, failed, unmanaged
	Epoch     uint64           `json:"epoch,omitempty"`
	Since     time.Time        `json:"since"`
	LeaseLeft float64          `json:"lease_left_ms,omitempty"`
	Restarts  int              `json:"restarts"`
	LastError string           `json:"last_error,omitempty"`
	Resources []ResourceStatus `json:"resources"`
}

// ResourceStatus is one resource on this node.
type ResourceStatus struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Running   bool   `json:"running"`
	LastError string `json:"last_error,omitempty"`
}

// Phases of a group on this node.
const (
	PhaseStopped   = "stopped"
	PhaseStarting  = "starting"
	PhaseRunning   = "running"
	PhaseStopping  = "stopping"
	PhaseFailed    = "failed"
	PhaseUnmanaged = "unmanaged"
)

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
