package clock

import (
	"sort"
	"sync"
	"time"
)

// Fake is a Clock whose time moves only on Advance. Timers and tickers due at
// or before the new time fire in time order, each seeing Now() equal to its
// own deadline while it fires.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*fakeTimer
	seq     int
}

// NewFake returns a fake clock starting at start.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *Fake) Since(t time.Time) time.Duration { return f.Now().Sub(t) }

func (f *Fake) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{clock: f, ch: make(chan time.Time, 1)}
	f.schedule(t, d)
	return t
}

func (f *Fake) AfterFunc(d time.Duration, fn func()) Timer {
	t := &fakeTimer{clock: f, fn: fn}
	f.schedule(t, d)
	return t
}

func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive ticker interval")
	}
	t := &fakeTimer{clock: f, ch: make(chan time.Time, 1), period: d}
	f.schedule(t, d)
	return fakeTicker{t}
}

// Advance moves time forward by d, firing everything that comes due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	end := f.now.Add(d)
	f.mu.Unlock()
	for {
		f.mu.Lock()
		sort.SliceStable(f.waiters, func(i, j int) bool {
			a, b := f.waiters[i], f.waiters[j]
			if !a.when.Equal(b.when) {
				return a.when.Before(b.when)
			}
			return a.order < b.order
		})
		if len(f.waiters) == 0 || f.waiters[0].when.After(end) {
			f.now = end
			f.mu.Unlock()
			return
		}
		t := f.waiters[0]
		f.waiters = f.waiters[1:]
		f.now = t.when
		t.active = false
		if t.period > 0 {
			t.when = t.when.Add(t.period)
			f.insertLocked(t)
		}
		f.mu.Unlock()
		t.fire()
	}
}

// Pending reports how many timers and tickers are waiting; tests use it to
// wait until a goroutine has armed its timer before advancing.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

func (f *Fake) schedule(t *fakeTimer, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t.when = f.now.Add(d)
	f.insertLocked(t)
}

func (f *Fake) insertLocked(t *fakeTimer) {
	f.seq++
	t.order = f.seq
	t.active = true
	f.waiters = append(f.waiters, t)
}

func (f *Fake) removeLocked(t *fakeTimer) bool {
	for i, w := range f.waiters {
		if w == t {
			f.waiters = append(f.waiters[:i], f.waiters[i+1:]...)
			t.active = false
			return true
		}
	}
	return false
}

type fakeTimer struct {
	clock  *Fake
	ch     chan time.Time
	fn     func()
	when   time.Time
	period time.Duration
	order  int
	active bool
}

func (t *fakeTimer) fire() {
	if t.fn != nil {
		t.fn()
		return
	}
	select {
	case t.ch <- t.when:
	default: // like time.Ticker, drop a tick nobody took
	}
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	return t.clock.removeLocked(t)
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	was := t.clock.removeLocked(t)
	t.when = t.clock.now.Add(d)
	t.clock.insertLocked(t)
	return was
}

type fakeTicker struct{ t *fakeTimer }

func (k fakeTicker) C() <-chan time.Time { return k.t.ch }
func (k fakeTicker) Stop()               { k.t.Stop() }
func (k fakeTicker) Reset(d time.Duration) {
	k.t.clock.mu.Lock()
	k.t.period = d
	k.t.clock.mu.Unlock()
	k.t.Reset(d)
}
