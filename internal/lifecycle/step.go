package lifecycle

import (
	"time"
)

// step is the reconcile pass that follows every event: it compares what
// should run here with what was last observed and asks for the next
// operations.
func (m *Machine) step(now time.Time) {
	m.expire(now)
	if m.draining {
		m.cancelOps(0, OpMonitor) // whatever else goes on, nothing is monitored any more
	}
	if m.view.Maintenance {
		m.unmanaged = true
		m.setPhase(now, PhaseUnmanaged)
		m.syncGuard(now)
		m.reportPhase()
		return
	}
	if m.unmanaged {
		// Resources may have been changed by hand: find out again.
		m.unmanaged = false
		for i := range m.res {
			if m.res[i].op == nil {
				m.res[i].obs = Unknown
			}
		}
	}
	if m.probe(now) {
		m.setPhase(now, PhaseProbing)
		m.syncGuard(now)
		return
	}
	live := !m.idle()
	want := m.wanted(now)
	if live && m.runEpoch == 0 {
		// Found running (a predecessor agent's, or kept through
		// maintenance): ours if this node holds the group.
		switch {
		case want:
			m.runEpoch = m.view.Epoch
			m.adoptUntil = time.Time{}
		case m.awaitLease(now):
			m.syncGuard(now)
			return
		}
	}
	if want && (!live || m.runEpoch == m.view.Epoch) {
		m.stepRun(now)
	} else {
		m.stepStop(now)
	}
	m.syncGuard(now)
	m.reportPhase()
}

// probe asks about every resource whose state is unknown and reports
// whether any still is.
func (m *Machine) probe(now time.Time) bool {
	unknown := false
	for i := range m.res {
		r := &m.res[i]
		if r.obs != Unknown {
			continue
		}
		unknown = true
		if r.op == nil {
			m.run(now, i, OpProbe, m.cfg.Resources[i].MonitorTimeout)
		}
	}
	if !unknown && m.adoptUntil.IsZero() && !m.idle() && m.runEpoch == 0 {
		m.adoptUntil = now.Add(m.cfg.AdoptWait)
	}
	return unknown
}

// awaitLease: resources were found running on this node, which holds the
// group but has no lease yet (the agent just restarted); keep them for up
// to AdoptWait instead of stopping a service that is about to be ours.
func (m *Machine) awaitLease(now time.Time) bool {
	if m.adoptUntil.IsZero() || !now.Before(m.adoptUntil) || m.stopNoted {
		return false
	}
	if !m.view.Known {
		return true
	}
	return m.holder() && m.view.Handover == "" && !m.shutdown && !(m.failed && m.failedEpoch == m.view.Epoch) &&
		m.lease.Epoch != m.view.Epoch
}

// idle: every resource is stopped and no operation is in flight.
func (m *Machine) idle() bool { return m.Quiet() }

// stepRun: the group should run here.
func (m *Machine) stepRun(now time.Time) {
	m.fencing = false
	m.stopNoted = false
	if m.restartFrom >= 0 {
		m.cancelMonitors(m.restartFrom)
		if !m.stopDown(now, m.restartFrom, false) {
			m.setPhase(now, PhaseDegraded)
			return
		}
		m.restartFrom = -1
	}
	dirty := false
	for i := range m.res {
		r := &m.res[i]
		if r.op != nil && r.op.op != OpMonitor {
			break // its start or stop is under way
		}
		if r.obs == Running {
			continue
		}
		if r.obs == Dirty {
			// Failed and not yet cleaned up (found so by a probe, or
			// its stop failed): stop it before starting it again, and
			// first what runs above it, in reverse order: a service a
			// probe found running on a file system it found broken
			// holds the mount, and the file system's stop under it
			// failed for a minute (a new user's walk).
			dirty = true
			m.cancelMonitors(i + 1)
			m.stopDown(now, i, false)
			break
		}
		if m.idle() {
			m.runEpoch = m.view.Epoch
		}
		m.startOp(now, i)
		break
	}
	if !m.draining {
		for i := range m.res {
			r := &m.res[i]
			if r.obs == Running && r.op == nil && !now.Before(r.nextMonitor) {
				m.run(now, i, OpMonitor, m.cfg.Resources[i].MonitorTimeout)
			}
		}
	}
	switch {
	case m.stopFailing():
		// A resource that cannot be stopped cannot be restarted either,
		// and the group cannot safely go elsewhere (it may still run
		// here): this needs an admin (or, later, fencing).
		m.setPhase(now, PhaseFailed)
	case m.allRunning():
		m.setPhase(now, PhaseRunning)
		if m.startedAt != m.runEpoch {
			m.startedAt = m.runEpoch
			n := Note{Kind: NoteGroupStarted, Res: -1, Epoch: m.runEpoch}
			if !m.leaseSince.IsZero() && !m.viewSince.IsZero() && !m.leaseSince.Before(m.viewSince) {
				n.LeaseWait = m.leaseSince.Sub(m.viewSince)
				n.Start = now.Sub(m.leaseSince)
			}
			m.note(n)
		}
	case dirty || m.anyDirty():
		m.setPhase(now, PhaseDegraded)
	default:
		m.setPhase(now, PhaseStarting)
	}
}

// stepStop: nothing should run here (or it must stop before it can run
// again at a new epoch).
func (m *Machine) stepStop(now time.Time) {
	m.restartFrom = -1
	leaseOK := m.runLeaseOK(now)
	if !m.idle() {
		if !m.stopNoted {
			m.stopWhy = m.stopReason(now)
		}
		if !m.leaseOK(now) && m.holder() && m.view.Handover == "" && !m.shutdown && !m.fencing &&
			!(m.failed && m.failedEpoch == m.view.Epoch) {
			m.fencing = true
			m.note(Note{Kind: NoteLeaseLost, Res: -1, Epoch: m.runEpoch, Message: "lease not renewed; stopping the group, VIP first"})
		}
		m.stopNoted = true
		m.cancelMonitors(0)
		m.cancelStarts()
		m.stopDown(now, 0, !leaseOK)
	}
	if !m.idle() {
		if m.stopFailing() {
			m.setPhase(now, PhaseFailed)
		} else {
			m.setPhase(now, PhaseStopping)
		}
		return
	}
	// Everything is stopped.
	if m.stopNoted {
		m.stopNoted = false
		m.note(Note{Kind: NoteGroupStopped, Res: -1, Epoch: m.runEpoch, Message: m.stopWhy})
		m.stopWhy = ""
	}
	m.runEpoch = 0
	m.fencing = false
	if m.failed && m.failedEpoch == m.view.Epoch && m.holder() {
		m.setPhase(now, PhaseFailed)
	} else {
		m.setPhase(now, PhaseStopped)
	}
	m.syncGuard(now) // closed before the lease is given back
	givingUp := !m.holder() || m.view.Handover != "" || m.shutdown || (m.failed && m.failedEpoch == m.view.Epoch)
	if held := m.lease.Epoch; givingUp && held != 0 && m.released != held {
		m.released = held
		m.out = append(m.out, Release{Epoch: held})
	}
	if m.holder() && m.view.Handover != "" && m.handedOver != m.view.Epoch {
		m.handedOver = m.view.Epoch
		if m.released != m.view.Epoch {
			m.released = m.view.Epoch
			m.out = append(m.out, Release{Epoch: m.view.Epoch})
		}
		m.report(Report{Kind: ReportHandedOver, Epoch: m.view.Epoch})
	}
}

func (m *Machine) stopReason(now time.Time) string {
	switch {
	case m.shutdown:
		return "agent shutting down"
	case !m.view.Known:
		return "no cluster state"
	case m.holder() && m.view.Handover != "":
		return "handing over to " + m.view.Handover
	case !m.holder():
		if m.view.Holder == "" {
			return "group moved to nowhere"
		}
		return "group moved to " + m.view.Holder
	case m.failed && m.failedEpoch == m.view.Epoch:
		return "gave up: " + m.lastErr
	case m.runEpoch != 0 && m.runEpoch != m.view.Epoch:
		return "epoch changed"
	case !m.leaseOK(now):
		return "lease lost"
	}
	return "stopping"
}

// stopDown stops resources from the last down to from, one at a time in
// reverse order; with vipFirst (no valid lease) every VIP is stopped at
// once, ahead of the others. A resource whose stop failed is skipped
// until its retry is due, so the ones before it are still stopped. It
// reports whether everything from `from` on is stopped.
func (m *Machine) stopDown(now time.Time, from int, vipFirst bool) bool {
	if vipFirst {
		for i := from; i < len(m.res); i++ {
			r := &m.res[i]
			if m.cfg.Resources[i].VIP && r.obs != Stopped && r.op == nil && !now.Before(r.stopRetry) {
				m.stopOp(now, i)
			}
		}
	}
	done := true
	for i := len(m.res) - 1; i >= from; i-- {
		r := &m.res[i]
		if r.obs == Stopped && r.op == nil {
			continue
		}
		done = false
		if vipFirst && m.cfg.Resources[i].VIP {
			continue
		}
		if r.op != nil {
			return false // a stop (or a cancelled start) is under way
		}
		if r.obs == Dirty && now.Before(r.stopRetry) {
			continue // retry later; stop the ones before it meanwhile
		}
		m.stopOp(now, i)
		return false
	}
	return done
}

// cancelMonitors cancels monitors and probes in flight on resources from
// `from` on.
func (m *Machine) cancelMonitors(from int) { m.cancelOps(from, OpMonitor, OpProbe) }

// cancelOps cancels and forgets operations of the given kinds in flight on
// resources from `from` on.
func (m *Machine) cancelOps(from int, kinds ...Op) {
	for i := from; i < len(m.res); i++ {
		r := &m.res[i]
		if r.op == nil {
			continue
		}
		for _, k := range kinds {
			if r.op.op == k {
				m.out = append(m.out, Cancel{ID: r.op.id})
				r.op = nil
				break
			}
		}
	}
}

// cancelStarts cancels starts in flight; they stay tracked, since a
// cancelled start may still have started something.
func (m *Machine) cancelStarts() {
	for i := range m.res {
		r := &m.res[i]
		if r.op != nil && r.op.op == OpStart && !r.op.cancelled {
			r.op.cancelled = true
			m.out = append(m.out, Cancel{ID: r.op.id})
		}
	}
}

func (m *Machine) startOp(now time.Time, i int) {
	if m.cfg.Resources[i].VIP {
		m.openGuard()
	}
	m.run(now, i, OpStart, m.cfg.Resources[i].StartTimeout)
}

func (m *Machine) stopOp(now time.Time, i int) {
	// Without a lease the VIP goes silent now, whatever the agent does. A
	// planned stop leaves the guard open until the stop is done: the
	// agent ends its announcements and silences the VIP itself (its Stop
	// revokes first); closing the guard ahead of it cut its gratuitous
	// ARPs short while the lease was still valid.
	if m.cfg.Resources[i].VIP && !m.runLeaseOK(now) {
		m.closeGuard()
	}
	m.run(now, i, OpStop, m.cfg.Resources[i].StopTimeout)
}

func (m *Machine) run(now time.Time, i int, o Op, timeout time.Duration) {
	m.nextID++
	m.res[i].op = &op{id: m.nextID, op: o, issued: now, deadline: now.Add(timeout + m.cfg.OpGrace)}
	m.out = append(m.out, Run{ID: m.nextID, Res: i, Op: o, Timeout: timeout, Epoch: m.runEpoch})
}

// expire ends operations that outlived their timeout by OpGrace without
// an answer: the agent ignored its deadline. A late answer is ignored.
func (m *Machine) expire(now time.Time) {
	for i := range m.res {
		r := &m.res[i]
		if r.op == nil || now.Before(r.op.deadline) {
			continue
		}
		o := *r.op
		r.op = nil
		m.out = append(m.out, Cancel{ID: o.id})
		if o.op == OpStart {
			m.abandoned[o.id] = i
		}
		m.finish(now, i, o, Result{ID: o.id, Outcome: Failed, Severity: Soft,
			Err: o.op.String() + " did not return within its timeout"})
	}
}

// guard: the VIPs may speak while this node holds a valid lease at the
// epoch the group runs at and a VIP is up, starting or stopping.
func (m *Machine) guardWanted(now time.Time) bool {
	if !m.runLeaseOK(now) {
		return false
	}
	for i, rc := range m.cfg.Resources {
		if !rc.VIP {
			continue
		}
		r := &m.res[i]
		if r.obs != Stopped || r.op != nil {
			return true
		}
	}
	return false
}

// syncGuard keeps the kernel guard in line: extended with every renewal
// while wanted, closed as soon as it is not.
func (m *Machine) syncGuard(now time.Time) {
	if !m.hasVIP() {
		return
	}
	if m.guardWanted(now) {
		if !m.guardOpen.Equal(m.lease.Until) {
			m.openGuard()
		}
		return
	}
	if !m.guardOpen.IsZero() || (!m.guardKnown && m.view.Known) {
		m.closeGuard()
	}
}

func (m *Machine) openGuard() {
	m.guardOpen, m.guardKnown = m.lease.Until, true
	m.out = append(m.out, OpenGuard{Until: m.lease.Until})
}

func (m *Machine) closeGuard() {
	if m.guardKnown && m.guardOpen.IsZero() {
		return
	}
	m.guardOpen, m.guardKnown = time.Time{}, true
	m.out = append(m.out, CloseGuard{})
}

func (m *Machine) hasVIP() bool {
	for _, rc := range m.cfg.Resources {
		if rc.VIP {
			return true
		}
	}
	return false
}

// allRunning: every resource was last seen running and none is being
// started or stopped.
func (m *Machine) allRunning() bool {
	for _, r := range m.res {
		if r.obs != Running || (r.op != nil && r.op.op != OpMonitor) {
			return false
		}
	}
	return true
}

func (m *Machine) anyDirty() bool {
	for _, r := range m.res {
		if r.obs == Dirty {
			return true
		}
	}
	return false
}

func (m *Machine) stopFailing() bool {
	for _, r := range m.res {
		if r.stopFails > 0 {
			return true
		}
	}
	return false
}

func (m *Machine) setPhase(now time.Time, p Phase) {
	if m.phase != p {
		m.phase, m.phaseSince = p, now
	}
}

// reportPhase tells the cluster the group's phase on its holder when it
// changes (status reads it from the replicated state).
func (m *Machine) reportPhase() {
	if !m.holder() || m.phase == PhaseProbing {
		return
	}
	if m.reported == m.phase && m.reportedAt == m.view.Epoch {
		return
	}
	m.reported, m.reportedAt = m.phase, m.view.Epoch
	m.report(Report{Kind: ReportPhase, Epoch: m.view.Epoch, Phase: m.phase, Reason: m.lastErr})
}
