package fence

import (
	"fmt"
	"time"
)

// Method is how a device confirms that a node is off.
type Method int

const (
	// OffStatus: off exits 0, then status says off. The status is asked
	// separately because an off that "succeeded" on a device that lies or
	// on the wrong plug must not let a takeover start.
	OffStatus Method = iota
	// RebootOnly: reboot exits 0. fence-agents implement reboot as off,
	// wait until status says off, then on, and exit non-zero unless the
	// off was seen; the node is fenced (it lost its memory and its
	// leases), though it comes back.
	RebootOnly
)

// Step is one device of a level as the machine sees it.
type Step struct {
	Device  string
	Plug    string
	Method  Method
	Timeout time.Duration // per action; a hang is a failed attempt at it
	Retries int           // attempts after the first
}

// Topology is how one node is fenced: its levels, tried in order; a level
// confirms only when every one of its devices does.
type Topology struct {
	Node       string
	Levels     [][]Step
	RetryDelay time.Duration // between a failed attempt and the next
}

// Budget bounds how long a whole fence over t can take: every attempt of
// every device of every level, each of at most two actions (off, then
// status) at its timeout, with the delay between attempts.
func (t Topology) Budget() time.Duration {
	var d time.Duration
	for _, level := range t.Levels {
		for _, s := range level {
			d += time.Duration(s.Retries+1) * (2*s.Timeout + t.RetryDelay)
		}
	}
	return d
}

// Run asks the adapter to run Action on Device's Plug; its answer comes
// back as a Result with the same ID. Deadline is when the machine counts
// it as failed whatever the adapter does.
type Run struct {
	ID       uint64
	Level    int
	Device   string
	Plug     string
	Action   Action
	Attempt  int // 1-based attempt of this device in this level
	Deadline time.Time
}

// Result is the adapter's answer to a Run.
type Result struct {
	ID    uint64
	Err   error // nil: the action exited 0 (status: 0 or 2)
	Power Power // for status
}

// Attempt is one finished attempt of a device, for reports and events.
type Attempt struct {
	Level    int
	Device   string
	Action   Action
	Attempt  int
	Started  time.Time
	Duration time.Duration
	OK       bool
	Err      string
}

// Outcome is the machine's final word.
type Outcome struct {
	Confirmed bool
	Level     int    // the level that confirmed (1-based), or 0
	Reason    string // why not, when not
}

// Machine decides one fence of one node over its topology. It does no I/O
// and reads no clock: Start, Step and Tick take now and return what to run.
type Machine struct {
	topo    Topology
	level   int // index into topo.Levels
	dev     int // index into the level
	attempt int // attempts made of the current device
	phase   Action
	pending *Run
	retryAt time.Time // when waiting to retry, zero otherwise
	started time.Time
	nextID  uint64
	done    *Outcome
	history []Attempt
}

// NewMachine returns a machine for t; a topology without a device fails at
// Start.
func NewMachine(t Topology) *Machine { return &Machine{topo: t} }

// Start begins the fence and returns the first run (nil when done at once).
func (m *Machine) Start(now time.Time) *Run {
	for m.level < len(m.topo.Levels) && len(m.topo.Levels[m.level]) == 0 {
		m.level++
	}
	if m.level >= len(m.topo.Levels) {
		m.finish(Outcome{Reason: fmt.Sprintf("no fence device for %s", m.topo.Node)})
		return nil
	}
	return m.begin(now)
}

// Done returns the outcome once the machine has one.
func (m *Machine) Done() (Outcome, bool) {
	if m.done == nil {
		return Outcome{}, false
	}
	return *m.done, true
}

// History returns the finished attempts so far.
func (m *Machine) History() []Attempt { return append([]Attempt(nil), m.history...) }

// Pending returns the run the machine waits for, if any.
func (m *Machine) Pending() *Run { return m.pending }

// NextDeadline is when the machine wants a Tick: the pending run's
// deadline or the end of a retry delay (zero when done).
func (m *Machine) NextDeadline() time.Time {
	switch {
	case m.done != nil:
		return time.Time{}
	case m.pending != nil:
		return m.pending.Deadline
	}
	return m.retryAt
}

func (m *Machine) step() Step { return m.topo.Levels[m.level][m.dev] }

// begin starts a new attempt of the current device.
func (m *Machine) begin(now time.Time) *Run {
	m.attempt++
	m.retryAt = time.Time{}
	if m.step().Method == RebootOnly {
		return m.run(now, Reboot)
	}
	return m.run(now, Off)
}

func (m *Machine) run(now time.Time, a Action) *Run {
	s := m.step()
	m.nextID++
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	m.phase = a
	m.started = now
	m.pending = &Run{ID: m.nextID, Level: m.level + 1, Device: s.Device, Plug: s.Plug,
		Action: a, Attempt: m.attempt, Deadline: now.Add(timeout)}
	r := *m.pending
	return &r
}

// Step feeds the answer to a run. Answers to anything but the pending run
// (late, after its deadline; duplicated) are ignored.
func (m *Machine) Step(now time.Time, r Result) *Run {
	if m.done != nil || m.pending == nil || r.ID != m.pending.ID {
		return nil
	}
	ok, why := true, ""
	switch {
	case r.Err != nil:
		ok, why = false, r.Err.Error()
	case m.phase == Status && r.Power != PowerOff:
		ok, why = false, fmt.Sprintf("status says %s after off", r.Power)
	}
	m.record(now, ok, why)
	if !ok {
		return m.failed(now, why)
	}
	if m.phase == Off {
		return m.run(now, Status)
	}
	return m.deviceConfirmed(now)
}

// Tick moves time: a pending run past its deadline fails; a retry delay
// that ended starts the next attempt.
func (m *Machine) Tick(now time.Time) *Run {
	if m.done != nil {
		return nil
	}
	if m.pending != nil {
		if now.Before(m.pending.Deadline) {
			return nil
		}
		why := fmt.Sprintf("%s %s timed out", m.pending.Device, m.pending.Action)
		m.record(now, false, why)
		return m.failed(now, why)
	}
	if !m.retryAt.IsZero() && !now.Before(m.retryAt) {
		return m.begin(now)
	}
	return nil
}

func (m *Machine) record(now time.Time, ok bool, why string) {
	p := m.pending
	m.history = append(m.history, Attempt{Level: p.Level, Device: p.Device, Action: p.Action,
		Attempt: p.Attempt, Started: m.started, Duration: now.Sub(m.started), OK: ok, Err: why})
	m.pending = nil
}

// failed: retry the device after the delay, or give up the level.
func (m *Machine) failed(now time.Time, why string) *Run {
	if m.attempt <= m.step().Retries {
		if m.topo.RetryDelay <= 0 {
			return m.begin(now)
		}
		m.retryAt = now.Add(m.topo.RetryDelay)
		return nil
	}
	// The level failed; the next level starts from its first device.
	m.level++
	m.dev, m.attempt = 0, 0
	for m.level < len(m.topo.Levels) && len(m.topo.Levels[m.level]) == 0 {
		m.level++
	}
	if m.level >= len(m.topo.Levels) {
		m.finish(Outcome{Reason: fmt.Sprintf("every level failed; last: %s", why)})
		return nil
	}
	return m.begin(now)
}

func (m *Machine) deviceConfirmed(now time.Time) *Run {
	m.dev++
	m.attempt = 0
	if m.dev < len(m.topo.Levels[m.level]) {
		return m.begin(now)
	}
	m.finish(Outcome{Confirmed: true, Level: m.level + 1})
	return nil
}

func (m *Machine) finish(o Outcome) {
	m.done = &o
	m.pending = nil
	m.retryAt = time.Time{}
}
