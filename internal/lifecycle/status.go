package lifecycle

import "time"

// Status is what the machine last observed of the group on this node.
type Status struct {
	Phase     Phase
	Since     time.Time
	Epoch     uint64 // the epoch resources run (or last ran) at; 0 when idle
	Handover  string // a planned move under way, to this node
	Draining  bool
	Restarts  int // in-place restarts within the failure window
	LastError string
	// GuardOpen: the kernel guard lets the group's VIPs speak (this node
	// holds the lease and a VIP is up).
	GuardOpen bool
	Resources []ResourceStatus
}

// ResourceStatus is one resource's last observation.
type ResourceStatus struct {
	Name     string
	State    Observed
	Op       string    // operation in flight, "" if none
	LastSeen time.Time // last time a start, probe or monitor found it running
	// LastCheck and LastResult: the last monitor or probe and what it said.
	LastCheck  time.Time
	LastResult string
	LastError  string
}

// Status returns the current observations.
func (m *Machine) Status() Status {
	s := Status{Phase: m.phase, Since: m.phaseSince, Epoch: m.runEpoch, Draining: m.draining,
		Restarts: len(m.restarts), LastError: m.lastErr, GuardOpen: !m.guardOpen.IsZero()}
	if m.holder() {
		s.Handover = m.view.Handover
	}
	for i, r := range m.res {
		rs := ResourceStatus{Name: m.cfg.Resources[i].Name, State: r.obs, LastSeen: r.lastSeen,
			LastCheck: r.lastCheck, LastResult: r.lastResult, LastError: r.lastErr}
		if r.op != nil {
			rs.Op = r.op.op.String()
		}
		s.Resources = append(s.Resources, rs)
	}
	return s
}
