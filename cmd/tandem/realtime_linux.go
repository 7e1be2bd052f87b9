package main

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// realtimePriority is the SCHED_RR priority of the agent's threads: above
// every normal process, well below the kernel's own real-time threads (as
// corosync runs). Heartbeats and lease renewals then keep their 50 ms
// rhythm on a loaded machine, so load does not look like a dead node.
const realtimePriority = 10

// goRealtime puts every thread of this process under SCHED_RR, with reset
// on fork so processes the agent starts (services, OCF agents) run with
// normal scheduling. The reset also applies to threads the Go runtime
// creates later, so the agent calls it again from time to time.
func goRealtime() error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	attr := &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_RR, Priority: realtimePriority,
		Flags: unix.SCHED_FLAG_RESET_ON_FORK}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
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
