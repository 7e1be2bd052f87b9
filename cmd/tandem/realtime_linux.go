package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// realtimePriority is the SCHED_RR priority of the agent's threads: above
// every normal process, well below the kernel's own real-time threads (as
// corosync runs). Heartbeats and lease renewals then keep their rhythm on
// a loaded machine, so load does not look like a dead node.
const realtimePriority = 10

// goRealtime puts every thread of this process but the runtime's system
// monitor under SCHED_RR, with reset on fork so processes the agent starts
// (services, OCF agents) run with normal scheduling. The reset also applies
// to threads the Go runtime creates later, so the agent calls it again from
// time to time.
//
// The system monitor (sysmon) polls with sleeps of 20 µs and more whenever
// the process wakes; a real-time thread gets no timer slack, so under
// SCHED_RR those sleeps are exact and every one is a context switch: on the
// 2-core VM of docs/benchmarks.md that alone cost 0.4–0.5% of a core, half
// the idle budget. sysmon only preempts long-running goroutines and takes
// back processors stuck in system calls; normal scheduling serves it.
func goRealtime() error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	skip := sysmonThread()
	attr := &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_RR, Priority: realtimePriority,
		Flags: unix.SCHED_FLAG_RESET_ON_FORK}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil || tid == skip {
			continue
		}
		if cur, err := unix.SchedGetAttr(tid, 0); err == nil && cur.Policy == unix.SCHED_RR {
			continue
		}
		if err := unix.SchedSetAttr(tid, attr, 0); err != nil {
			return fmt.Errorf("real-time scheduling for thread %d: %w", tid, err)
		}
	}
	return nil
}

// sysmonSlack is the timer slack given to the runtime's system monitor.
const sysmonSlack = time.Millisecond

// quietSysmon lets the kernel batch the system monitor's wake-ups: each
// system call the agent makes wakes sysmon, which then polls in sleeps of
// 20 µs for as long as the process is busy. With a slack of a millisecond
// those polls mostly merge: on the VM of docs/benchmarks.md its context
// switches fell from about 190 to 60 a second. What sysmon does — preempt
// a goroutine running for 10 ms, take back a processor stuck in a system
// call — tolerates a millisecond more.
func quietSysmon() error {
	tid := sysmonThread()
	if tid == 0 {
		return errors.New("cannot find the runtime's system monitor thread")
	}
	return os.WriteFile(fmt.Sprintf("/proc/%d/timerslack_ns", tid), []byte(strconv.FormatInt(sysmonSlack.Nanoseconds(), 10)), 0)
}

// sysmonThread is the thread id of the Go runtime's system monitor, or 0
// when it cannot be told. runtime.main starts sysmon before anything else,
// so it is the process's second thread: the one whose id follows the
// process id most closely in the kernel's cyclic id allocation (a thread id
// that wrapped past pid_max counts as later).
var sysmonThread = sync.OnceValue(func() int {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0
	}
	pidMax := 1 << 22
	if b, err := os.ReadFile("/proc/sys/kernel/pid_max"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			pidMax = n
		}
	}
	pid := os.Getpid()
	best, bestDist := 0, pidMax
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil || tid == pid {
			continue
		}
		if d := ((tid-pid)%pidMax + pidMax) % pidMax; d < bestDist {
			best, bestDist = tid, d
		}
	}
	return best
})
