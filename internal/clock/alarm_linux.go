package clock

import (
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fdAlarm is a timerfd read by its own goroutine, which the poller wakes
// at the expiry. Its read and its setting are raw system calls: the
// runtime's monitor thread, asleep while the agent idles, is woken by
// every system call the runtime is told of, and neither call can block
// (the descriptor is non-blocking).
type fdAlarm struct {
	f     *os.File
	rc    syscall.RawConn
	c     chan time.Time
	done  chan struct{}
	armed time.Time // the deadline set, zero when none
	// The setting's state and function, made once (a closure made per
	// call would be garbage every heartbeat).
	spec  unix.ItimerSpec
	errno syscall.Errno
	setFn func(fd uintptr)
}

func newFDAlarm() (*fdAlarm, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "alarm") // non-blocking: the poller waits on it
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	a := &fdAlarm{f: f, rc: rc, c: make(chan time.Time, 1), done: make(chan struct{})}
	a.setFn = func(fd uintptr) {
		_, _, a.errno = unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, fd, 0, uintptr(unsafe.Pointer(&a.spec)), 0, 0, 0)
	}
	go a.run()
	return a, nil
}

func (a *fdAlarm) run() {
	defer close(a.done)
	var n [8]byte // expirations since the last read
	read := func(fd uintptr) bool {
		for {
			_, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&n[0])), uintptr(len(n)))
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			}
			return true
		}
	}
	for {
		if err := a.rc.Read(read); err != nil {
			return // closed
		}
		select {
		case a.c <- time.Now():
		default:
		}
	}
}

func (a *fdAlarm) C() <-chan time.Time { return a.c }

// Set leaves the timerfd alone when at is the deadline already set and
// still ahead: owners set the same deadline again after each event (the
// heartbeat's round, after every datagram).
func (a *fdAlarm) Set(now, at time.Time) {
	if at.Equal(a.armed) && a.armed.After(now) {
		return
	}
	select { // a tick of the deadline replaced
	case <-a.c:
	default:
	}
	d := max(at.Sub(time.Now()), time.Nanosecond) // zero would disarm it
	a.spec = unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	a.errno = 0
	if err := a.rc.Control(a.setFn); err != nil || a.errno != 0 {
		a.armed = time.Time{}
		return
	}
	a.armed = at
}

func (a *fdAlarm) Close() {
	a.f.Close()
	<-a.done
}
