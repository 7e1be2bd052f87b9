// Package lifecycle owns the life of one group on one node, as a pure state
// machine: what the replicated state says of the group (View), this node's
// lease on it (Lease), the results of resource operations (Done), deaths
// announced by agents (Exited), maintenance and shutdown go in; operations
// to run or cancel, kernel guard changes, lease releases, reports to the
// cluster and notes for the audit log come out (Actions). Time is passed in
// with every call; nothing here sleeps, reads a clock, or does I/O. The
// manager drives one Machine per group and runs what it asks for.
//
// The rules (DESIGN.md "S1 covers the whole group"):
//   - A resource is started only while this node is the group's holder at the
//     view's epoch, no handover is pending, and the lease at that epoch is
//     valid (until its end minus Margin). A start that completes after the
//     lease ended is stopped at once.
//   - When the lease ends (or is about to, Margin before its end) the VIPs
//     are silenced first (kernel guard closed, then stopped), then the other
//     resources in reverse order. In-flight monitors and starts are cancelled.
//   - A planned move (the view names a handover target) and a shutdown stop
//     every resource in reverse order; only when all are stopped is the lease
//     released and the handover reported, so the next holder can start only
//     after this node stopped everything.
//   - A monitor failure restarts the failed resource and every resource
//     after it in place (stop in reverse order, start in order) up to
//     MaxRestarts within FailureTimeout; past that, or on a hard or fatal
//     failure, or a failed start, the node gives the group up at this epoch
//     and reports it, so placement moves it.
//   - The state converges: while the wanted state holds (holder, lease),
//     every resource not last seen running is started, in order; a group that
//     regains its lease at the same epoch is started again, VIP included.
//   - Status says what was last observed: "running" only when every
//     resource was last seen running by its start, probe or monitor.
//
// It imports nothing of ours; internal/manager is its only importer.
package lifecycle

import (
	"fmt"
	"time"
)

// Resource is one resource of the group, as the machine needs to know it.
type Resource struct {
	Name string
	// VIP resources are guarded by the kernel lease: the guard is opened
	// before they start and closed first when the lease is lost.
	VIP             bool
	MonitorInterval time.Duration
	StartTimeout    time.Duration
	StopTimeout     time.Duration
	MonitorTimeout  time.Duration
}

// Config is the static configuration of one group's machine.
type Config struct {
	Node      string // this node
	Group     string
	Resources []Resource
	// MaxRestarts in-place restarts are allowed within FailureTimeout
	// (0: none; FailureTimeout 0: the window never ends).
	MaxRestarts    int
	FailureTimeout time.Duration
	// Margin: the group is fenced this long before the lease ends, so the
	// VIP is gone before another node may take it.
	Margin time.Duration
	// OpGrace is how long past its timeout an operation may take to report
	// before the machine counts it as timed out on its own (an agent that
	// ignores its deadline). Default 2 s.
	OpGrace time.Duration
	// StopRetry is the first pause before a failed stop is tried again; it
	// doubles up to ten times itself. Default 1 s.
	StopRetry time.Duration
	// AdoptWait is how long resources found running at start (left by a
	// predecessor agent) are kept while this node is the holder but has no
	// lease yet, before they are stopped. Default 2 s.
	AdoptWait time.Duration
}

func (c *Config) defaults() {
	if c.OpGrace <= 0 {
		c.OpGrace = 2 * time.Second
	}
	if c.StopRetry <= 0 {
		c.StopRetry = time.Second
	}
	if c.AdoptWait <= 0 {
		c.AdoptWait = 2 * time.Second
	}
}

// View is what the applied replicated state says of the group.
type View struct {
	Known  bool // false until the first state is applied
	Holder string
	Epoch  uint64
	// Handover names the node a planned move goes to: the holder stops the
	// group, releases the lease and reports it handed over.
	Handover string
	// Maintenance: the cluster or this node is in maintenance; nothing is
	// started, stopped or monitored.
	Maintenance bool
}

// Lease is this node's lease on the group: valid at Epoch until Until. The
// zero value is no lease.
type Lease struct {
	Epoch uint64
	Until time.Time
}

// Op is a resource operation.
type Op int

const (
	OpStart Op = iota
	OpStop
	OpMonitor
	// OpProbe is a monitor whose answer decides what runs at all: at start,
	// and when maintenance ends.
	OpProbe
)

func (o Op) String() string {
	return [...]string{"start", "stop", "monitor", "probe"}[o]
}

// Severity of a failed operation (as resource.Severity).
type Severity int

const (
	Soft Severity = iota
	Hard
	Fatal
)

func (s Severity) String() string {
	switch s {
	case Soft:
		return "soft"
	case Hard:
		return "hard"
	case Fatal:
		return "fatal"
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// Outcome is how an operation ended.
type Outcome int

const (
	OK Outcome = iota
	// NotRunning: a monitor or probe found the resource cleanly stopped.
	NotRunning
	Failed
)

// Result is the answer to a Run action.
type Result struct {
	ID       uint64
	Outcome  Outcome
	Severity Severity // for Failed
	Err      string   // for Failed
}

// Action is something the machine asks its driver to do. The concrete types
// are Run, Cancel, OpenGuard, CloseGuard, Release, Report and Note.
type Action interface{ action() }

// Run asks for an operation on resource Res, bounded by Timeout; its Result
// must come back through Done with the same ID.
type Run struct {
	ID      uint64
	Res     int
	Op      Op
	Timeout time.Duration
	// Epoch is the group's epoch the resources run under: a start
	// promotes a volume at it (every write stamped with it, S2).
	Epoch uint64
}

// Cancel asks to cancel the operation ID (its context). Its result is
// ignored, except for a start, whose outcome decides whether a stop follows.
type Cancel struct{ ID uint64 }

// OpenGuard lets the group's VIPs speak until Until (the lease end; the
// driver keeps its own safety margin). It is repeated on every renewal.
type OpenGuard struct{ Until time.Time }

// CloseGuard silences the group's VIPs now.
type CloseGuard struct{}

// Release gives the lease at Epoch back (everything is stopped here).
type Release struct{ Epoch uint64 }

// ReportKind names what a Report tells the cluster.
type ReportKind int

const (
	// ReportFailure: a resource failed (Severity, GaveUp, Reason).
	ReportFailure ReportKind = iota
	// ReportPhase: the group's phase on its holder changed (Phase).
	ReportPhase
	// ReportHandedOver: a planned move's old holder stopped everything and
	// released the lease; the cluster may give the group to the target.
	ReportHandedOver
)

// Report is something to propose to the replicated state.
type Report struct {
	Kind     ReportKind
	Epoch    uint64
	Phase    Phase
	Severity Severity
	GaveUp   bool
	Reason   string
}

// NoteKind names a transition worth an audit event.
type NoteKind int

const (
	NoteResStarted NoteKind = iota
	NoteResStopped
	NoteResFailed
	NoteGroupStarted
	NoteGroupStopped
	NoteLeaseLost
	NoteRestart
	NoteAdopted
)

// Note is a transition for the audit log.
type Note struct {
	Kind     NoteKind
	Res      int // resource index, -1 for the group
	Epoch    uint64
	Op       Op
	Message  string
	Severity Severity
	// For resource start/stop: how long the operation took.
	Took time.Duration
	// For NoteGroupStarted: from holding the view to holding the lease,
	// and from the lease to every resource running.
	LeaseWait, Start time.Duration
}

func (Run) action()        {}
func (Cancel) action()     {}
func (OpenGuard) action()  {}
func (CloseGuard) action() {}
func (Release) action()    {}
func (Report) action()     {}
func (Note) action()       {}

// Phase is the group's state on this node.
type Phase string

const (
	PhaseProbing   Phase = "probing"   // finding out what runs (agent start, after maintenance)
	PhaseStopped   Phase = "stopped"   // nothing runs here
	PhaseStarting  Phase = "starting"  // should run here; not every resource is up yet
	PhaseRunning   Phase = "running"   // every resource was last seen running
	PhaseDegraded  Phase = "degraded"  // should run here; a resource failed and is being recovered
	PhaseStopping  Phase = "stopping"  // stopping (moved, lease lost, handover, shutdown)
	PhaseFailed    Phase = "failed"    // given up here at this epoch, or a stop failed
	PhaseUnmanaged Phase = "unmanaged" // maintenance
)

// Observed is what was last seen of a resource.
type Observed int

const (
	Unknown Observed = iota
	Stopped
	Running
	// Dirty: a start or monitor failed, or a stop failed; it may be partly
	// running and needs a (successful) stop before it counts as stopped.
	Dirty
)

func (o Observed) String() string {
	return [...]string{"unknown", "stopped", "running", "failed"}[o]
}
