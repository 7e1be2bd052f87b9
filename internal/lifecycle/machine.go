package lifecycle

import (
	"time"
)

// op is an operation in flight on a resource.
type op struct {
	id       uint64
	op       Op
	issued   time.Time
	deadline time.Time // issued + timeout + grace: counted as timed out after
	// cancelled: the machine no longer wants the result. A cancelled start
	// stays tracked (its outcome decides whether a stop follows); other
	// cancelled operations are forgotten at once.
	cancelled bool
}

type resState struct {
	obs         Observed
	op          *op
	nextMonitor time.Time
	lastSeen    time.Time // last start, probe or monitor that found it running
	lastCheck   time.Time // last monitor or probe, whatever it found
	lastResult  string    // "ok", "not running" or the error
	lastErr     string
	// stop failures: how many in a row, and when to try again
	stopFails int
	stopRetry time.Time
}

// Machine is one group's lifecycle on one node. It is not safe for
// concurrent use; the driver serializes calls.
type Machine struct {
	cfg   Config
	view  View
	lease Lease
	res   []resState

	draining, shutdown bool
	// runEpoch is the epoch the resources were last started (or adopted)
	// at; 0 when nothing was started since everything last stopped.
	runEpoch uint64
	// failedEpoch: this node gave the group up at that epoch (failed is
	// false when it never did).
	failed      bool
	failedEpoch uint64
	// restartFrom >= 0: resources from there on are being restarted in
	// place (stopped in reverse order, then started again).
	restartFrom int
	restarts    []time.Time
	// fencing: the lease was lost while resources ran; the stop that
	// follows takes the VIPs first.
	fencing bool
	// guardOpen is the lease end the guard was last opened to (zero:
	// closed).
	guardOpen time.Time
	// guardKnown: the guard was set by this machine at least once (at
	// start it holds whatever a predecessor agent left).
	guardKnown bool
	// released is the epoch whose lease was given back; handedOver the
	// epoch whose handover was reported.
	released, handedOver uint64
	// adoptUntil: resources found running by the first probe are kept
	// until then while the lease is awaited.
	adoptUntil time.Time
	unmanaged  bool

	phase      Phase
	phaseSince time.Time
	reported   Phase  // last phase reported to the cluster
	reportedAt uint64 // ... at this epoch
	startedAt  uint64 // epoch whose group start was noted
	stopNoted  bool   // the current stop was noted
	stopWhy    string
	lastErr    string

	// for the group-started note
	viewSince, leaseSince time.Time

	// abandoned starts: expired without an answer; a late answer may
	// still mean the resource runs.
	abandoned map[uint64]int

	nextID uint64
	out    []Action
}

// New returns a machine created at now. It probes every resource first:
// a predecessor agent may have left them running.
func New(cfg Config, now time.Time) *Machine {
	cfg.defaults()
	m := &Machine{cfg: cfg, res: make([]resState, len(cfg.Resources)), restartFrom: -1,
		phase: PhaseProbing, phaseSince: now, abandoned: map[uint64]int{}}
	m.step(now)
	return m
}

// Actions returns and clears what the machine asks to be done, in order.
func (m *Machine) Actions() []Action {
	a := m.out
	m.out = nil
	return a
}

// SetView installs what the replicated state says of the group.
func (m *Machine) SetView(now time.Time, v View) {
	if v.Holder == m.cfg.Node && (m.view.Holder != v.Holder || m.view.Epoch != v.Epoch || !m.view.Known) {
		m.viewSince = now
	}
	m.view = v
	m.step(now)
}

// SetLease installs this node's lease on the group (zero: none).
func (m *Machine) SetLease(now time.Time, l Lease) {
	if l.Epoch != m.lease.Epoch || m.lease.Until.IsZero() {
		if !l.Until.IsZero() && now.Before(l.Until) {
			m.leaseSince = now
		}
	}
	m.lease = l
	m.step(now)
}

// Tick lets time pass: lease ends, monitors and retries come due.
func (m *Machine) Tick(now time.Time) { m.step(now) }

// Exited: resource i's agent saw it end on its own; monitor it now.
func (m *Machine) Exited(now time.Time, i int) {
	if i >= 0 && i < len(m.res) && m.res[i].obs == Running {
		m.res[i].nextMonitor = now
	}
	m.step(now)
}

// Drain: the agent is about to shut down and has asked the cluster to move
// the group away. Monitors are cancelled and nothing is restarted; the
// group keeps running until the handover (or Shutdown) stops it.
func (m *Machine) Drain(now time.Time) {
	m.draining = true
	m.step(now)
}

// Shutdown: stop everything now and give the lease back.
func (m *Machine) Shutdown(now time.Time) {
	m.draining, m.shutdown = true, true
	m.step(now)
}

// Quiet reports whether nothing runs here and no operation is in flight
// (a shutting-down agent may exit).
func (m *Machine) Quiet() bool {
	for _, r := range m.res {
		if r.obs != Stopped || r.op != nil {
			return false
		}
	}
	return true
}

// Done delivers the result of a Run.
func (m *Machine) Done(now time.Time, res Result) {
	if i, ok := m.abandoned[res.ID]; ok {
		// A start given up on has answered after all: whatever it said,
		// something may run now that was counted as stopped.
		delete(m.abandoned, res.ID)
		if r := &m.res[i]; r.op == nil && r.obs == Stopped {
			r.obs = Dirty
		}
	}
	for i := range m.res {
		r := &m.res[i]
		if r.op != nil && r.op.id == res.ID {
			o := *r.op
			r.op = nil
			m.finish(now, i, o, res)
			break
		}
	}
	m.step(now)
}

// finish records how operation o on resource i ended.
func (m *Machine) finish(now time.Time, i int, o op, res Result) {
	r := &m.res[i]
	rc := m.cfg.Resources[i]
	switch o.op {
	case OpStart:
		if res.Outcome == OK {
			r.obs = Running
			r.lastSeen = now
			r.lastErr = ""
			r.stopFails, r.stopRetry = 0, time.Time{}
			r.nextMonitor = now.Add(rc.MonitorInterval)
			m.note(Note{Kind: NoteResStarted, Res: i, Epoch: m.runEpoch, Took: now.Sub(o.issued)})
			return
		}
		r.obs = Dirty // it may have half started: it needs a stop
		if o.cancelled {
			return // we gave up on it; not a failure of the resource
		}
		r.lastErr = "start: " + res.Err
		m.lastErr = rc.Name + ": " + r.lastErr
		m.note(Note{Kind: NoteResFailed, Res: i, Epoch: m.runEpoch, Op: OpStart, Message: r.lastErr, Severity: res.Severity})
		// A resource that does not start on this node is not restarted
		// here: the group goes elsewhere (as Pacemaker's
		// start-failure-is-fatal).
		m.giveUp(res.Severity, true, rc.Name+": "+r.lastErr)
	case OpStop:
		if res.Outcome == OK || res.Outcome == NotRunning {
			r.obs = Stopped
			r.stopFails, r.stopRetry = 0, time.Time{}
			r.lastErr = ""
			m.note(Note{Kind: NoteResStopped, Res: i, Epoch: m.runEpoch, Message: m.stopWhy, Took: now.Sub(o.issued)})
			return
		}
		r.obs = Dirty
		r.stopFails++
		backoff := m.cfg.StopRetry << min(r.stopFails-1, 3)
		r.stopRetry = now.Add(backoff)
		r.lastErr = "stop: " + res.Err
		m.lastErr = rc.Name + ": " + r.lastErr
		m.note(Note{Kind: NoteResFailed, Res: i, Epoch: m.runEpoch, Op: OpStop, Message: r.lastErr + "; retrying in " + backoff.String()})
	case OpProbe, OpMonitor:
		if o.op == OpProbe {
			// a fresh look: an old failed stop no longer counts
			r.stopFails, r.stopRetry = 0, time.Time{}
		}
		r.lastCheck = now
		r.nextMonitor = now.Add(rc.MonitorInterval)
		switch res.Outcome {
		case OK:
			r.lastResult = "ok"
			if o.op == OpProbe && r.obs != Running {
				m.note(Note{Kind: NoteAdopted, Res: i, Epoch: m.view.Epoch, Message: "found running"})
			}
			r.obs = Running
			r.lastSeen = now
			return
		case NotRunning:
			r.lastResult = "not running"
			if o.op == OpProbe {
				r.obs = Stopped
				return
			}
		default:
			r.lastResult = res.Err
			if o.op == OpProbe {
				r.obs = Dirty
				r.lastErr = "probe: " + res.Err
				return
			}
		}
		// A monitor found the resource down or failing.
		r.obs = Dirty
		sev := res.Severity
		msg := res.Err
		if res.Outcome == NotRunning {
			sev, msg = Soft, "not running"
		}
		r.lastErr = "monitor: " + msg
		m.lastErr = rc.Name + ": " + r.lastErr
		m.note(Note{Kind: NoteResFailed, Res: i, Epoch: m.runEpoch, Op: OpMonitor, Message: r.lastErr, Severity: sev})
		if !m.wanted(now) {
			return // it is being stopped anyway
		}
		if sev == Soft && !m.draining && m.restartBudget(now) {
			if m.restartFrom < 0 || i < m.restartFrom {
				m.restartFrom = i
			}
			m.note(Note{Kind: NoteRestart, Res: i, Epoch: m.runEpoch, Message: "restarting in place: " + msg})
			m.report(Report{Kind: ReportFailure, Epoch: m.runEpoch, Severity: Soft, Reason: rc.Name + ": " + msg})
			return
		}
		m.giveUp(sev, sev == Soft, rc.Name+": "+msg)
	}
}

// giveUp stops the group here at the current epoch and asks the cluster
// to move it.
func (m *Machine) giveUp(sev Severity, gaveUp bool, reason string) {
	if m.failed && m.failedEpoch == m.view.Epoch {
		return
	}
	m.failed, m.failedEpoch = true, m.view.Epoch
	m.restartFrom = -1
	m.report(Report{Kind: ReportFailure, Epoch: m.view.Epoch, Severity: sev, GaveUp: gaveUp, Reason: reason})
}

// restartBudget records a restart and reports whether it is within
// MaxRestarts for the FailureTimeout window.
func (m *Machine) restartBudget(now time.Time) bool {
	kept := m.restarts[:0]
	for _, t := range m.restarts {
		if m.cfg.FailureTimeout <= 0 || now.Sub(t) < m.cfg.FailureTimeout {
			kept = append(kept, t)
		}
	}
	m.restarts = kept
	if len(m.restarts) >= m.cfg.MaxRestarts {
		return false
	}
	m.restarts = append(m.restarts, now)
	return true
}

func (m *Machine) note(n Note)     { m.out = append(m.out, n) }
func (m *Machine) report(r Report) { m.out = append(m.out, r) }

// leaseOK: the lease is valid at the view's epoch with Margin to spare.
func (m *Machine) leaseOK(now time.Time) bool { return m.leaseValid(now, m.view.Epoch) }

// leaseValid: the lease is valid at epoch with Margin to spare. While it
// is, no other node can hold the group (the voters vouch for one holder at
// a time), whatever the view says by now.
func (m *Machine) leaseValid(now time.Time, epoch uint64) bool {
	return epoch != 0 && m.lease.Epoch == epoch && now.Before(m.lease.Until.Add(-m.cfg.Margin))
}

// runLeaseOK: the lease at the epoch the resources run at is still valid
// (a move away may stop them in order, VIP last).
func (m *Machine) runLeaseOK(now time.Time) bool {
	e := m.runEpoch
	if e == 0 && m.holder() {
		e = m.view.Epoch
	}
	return m.leaseValid(now, e)
}

func (m *Machine) holder() bool { return m.view.Known && m.view.Holder == m.cfg.Node }

// wanted: the group should run here now.
func (m *Machine) wanted(now time.Time) bool {
	return m.holder() && m.view.Handover == "" && !m.shutdown && !m.view.Maintenance &&
		!(m.failed && m.failedEpoch == m.view.Epoch) && m.leaseOK(now)
}

// NextDeadline is when Tick must be called next, if nothing else happens
// first (zero: no deadline).
func (m *Machine) NextDeadline(now time.Time) time.Time {
	var next time.Time
	// Only what lies ahead: whatever is due now was acted on by the
	// last step, or waits for an operation to finish.
	at := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for i := range m.res {
		r := &m.res[i]
		if r.op != nil {
			at(r.op.deadline)
		}
		if r.op == nil {
			at(r.stopRetry)
		}
		if m.unmanaged {
			continue
		}
		if r.obs == Running && r.op == nil && m.monitoring(now) {
			at(r.nextMonitor)
		}
	}
	if !m.unmanaged && m.lease.Epoch != 0 && !m.lease.Until.IsZero() {
		at(m.lease.Until.Add(-m.cfg.Margin))
	}
	at(m.adoptUntil)
	return next
}

// monitoring: monitors run now (the group is wanted and not draining).
func (m *Machine) monitoring(now time.Time) bool {
	return m.wanted(now) && !m.draining
}
