package filesystem

import "time"

// Escalation against a busy mount, as the Filesystem OCF agent's
// force_unmount: wait, then SIGTERM the holders, then SIGKILL them.
const (
	// forceKillAfter is how long holders have to end after SIGTERM
	// before SIGKILL: long enough for a process to close its files and
	// exit, short beside a stop timeout (20 s by default). What is still
	// in the mount at this point is a straggler: the group stopped its
	// services before its file system.
	forceKillAfter = 2 * time.Second
	// forceReserve is what a stop keeps of its deadline for the kill,
	// the unmount after it and the detach: the kill comes early when the
	// deadline is nearer than ForceUnmount, rather than the stop failing
	// with the holders alive.
	forceReserve = forceKillAfter + 2*time.Second
	// unmountRetry spaces the unmount attempts on a busy mount.
	unmountRetry = 50 * time.Millisecond
)

type forceStep int

const (
	forceWait forceStep = iota // retry the unmount, kill nothing yet
	forceTerm                  // SIGTERM the holders
	forceKill                  // SIGKILL the holders
)

func (s forceStep) String() string {
	return [...]string{"wait", "SIGTERM", "SIGKILL"}[s]
}

// forcePlan is when a stop that found the mount busy escalates.
type forcePlan struct {
	never      bool // ForceUnmount 0: a busy mount fails the stop
	term, kill time.Time
}

// planForce plans the escalation of a stop that first found the mount
// busy at busy, with the force-unmount timeout force and the stop's
// deadline (zero: none).
func planForce(busy time.Time, force time.Duration, deadline time.Time) forcePlan {
	if force <= 0 {
		return forcePlan{never: true}
	}
	term := busy.Add(force)
	if !deadline.IsZero() {
		if early := deadline.Add(-forceReserve); early.Before(term) {
			term = early
		}
	}
	if term.Before(busy) {
		term = busy
	}
	return forcePlan{term: term, kill: term.Add(forceKillAfter)}
}

// step says what to do about a mount still busy at now.
func (p forcePlan) step(now time.Time) forceStep {
	switch {
	case p.never || now.Before(p.term):
		return forceWait
	case now.Before(p.kill):
		return forceTerm
	}
	return forceKill
}
