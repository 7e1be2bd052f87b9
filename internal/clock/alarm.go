package clock

import "time"

// An Alarm wakes its owner at a deadline the owner keeps moving (the
// heartbeat's next round, a group's lease margin). Set may be called as
// often as the deadline is recomputed; a tick already under way when Set
// moves the deadline may still arrive, so the owner must only act on what
// is due by its own reading of the clock.
type Alarm interface {
	C() <-chan time.Time
	// Set arms the alarm for at; now is the owner's reading of the clock
	// (at not after now: at once).
	Set(now, at time.Time)
	// Close stops the alarm for good.
	Close()
}

// NewAlarm returns an alarm on clk, not yet set. On the real clock on Linux
// it is a timerfd that the Go runtime's network poller waits on rather
// than a Go timer (alarm_linux.go): the runtime's monitor thread sleeps
// until the earliest Go timer, so a Go timer that is moved back before it
// fires (a lease margin, renewed every heartbeat) wakes that thread at each
// deadline it no longer has, and one that fires wakes two threads where the
// poller's wake-up is one. Elsewhere it is clk's timer.
func NewAlarm(clk Clock) Alarm {
	if _, ok := clk.(Real); ok {
		if a, err := newFDAlarm(); err == nil {
			return a
		}
	}
	return &timerAlarm{t: clk.NewTimer(time.Hour)}
}

// timerAlarm is an Alarm on a Clock's timer.
type timerAlarm struct{ t Timer }

func (a *timerAlarm) C() <-chan time.Time { return a.t.C() }

func (a *timerAlarm) Set(now, at time.Time) {
	a.t.Stop()
	a.t.Reset(at.Sub(now))
}

func (a *timerAlarm) Close() { a.t.Stop() }
