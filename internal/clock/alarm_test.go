package clock

import (
	"testing"
	"time"
)

// waitTick returns the alarm's next tick, failing after 5 s.
func waitTick(t *testing.T, a Alarm) time.Time {
	t.Helper()
	select {
	case at := <-a.C():
		return at
	case <-time.After(5 * time.Second):
		t.Fatal("the alarm did not fire")
	}
	return time.Time{}
}

// noTick fails if the alarm fires within d.
func noTick(t *testing.T, a Alarm, d time.Duration) {
	t.Helper()
	select {
	case at := <-a.C():
		t.Fatalf("the alarm fired at %v", at)
	case <-time.After(d):
	}
}

// TestRealAlarmFiresAtTheLastDeadlineSet: on the real clock an alarm
// fires no earlier than its deadline, a deadline moved back before it
// came replaces it, the same deadline set again fires once, and a passed
// deadline set again fires at once.
func TestRealAlarmFiresAtTheLastDeadlineSet(t *testing.T) {
	a := NewAlarm(Real{})
	defer a.Close()

	now := time.Now()
	a.Set(now, now.Add(500*time.Millisecond))
	later := now.Add(800 * time.Millisecond)
	for range 3 {
		a.Set(time.Now(), later) // the runner sets its deadline after every datagram
	}
	if got := waitTick(t, a); got.Before(later) {
		t.Fatalf("fired %v before the deadline moved back to", later.Sub(got))
	}
	noTick(t, a, 100*time.Millisecond)

	a.Set(time.Now(), later) // passed: at once
	waitTick(t, a)

	now = time.Now()
	a.Set(now, now) // at once
	waitTick(t, a)
}

// TestAlarmOnTheFakeClock: on a fake clock the alarm is its timer, moved by
// Advance.
func TestAlarmOnTheFakeClock(t *testing.T) {
	f := NewFake(time.Unix(1000, 0))
	a := NewAlarm(f)
	defer a.Close()
	a.Set(f.Now(), f.Now().Add(time.Second))
	a.Set(f.Now(), f.Now().Add(2*time.Second))
	f.Advance(1500 * time.Millisecond)
	select {
	case <-a.C():
		t.Fatal("fired at the deadline replaced")
	default:
	}
	f.Advance(time.Second)
	select {
	case <-a.C():
	default:
		t.Fatal("did not fire at its deadline")
	}
}

// TestRealAlarmCloseEndsItsGoroutine: Close of a set alarm returns, which
// it does once the alarm's reader is gone.
func TestRealAlarmCloseEndsItsGoroutine(t *testing.T) {
	a := NewAlarm(Real{})
	now := time.Now()
	a.Set(now, now.Add(time.Hour))
	done := make(chan struct{})
	go func() { a.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
}
