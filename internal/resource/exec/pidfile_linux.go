package exec

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"tandem/internal/resource/exec/proc"
)

// The pid file holds "PID STARTTIME": the process id and its start time in
// clock ticks since boot (/proc/PID/stat, field 22). A pid alone could
// name another process after a reboot or a wrap-around; the pair cannot.

// adoptPoll is how often an adopted process (not our child: nobody gets
// its exit status) is checked for life.
const adoptPoll = 50 * time.Millisecond

// startTime reads pid's start time, or 0 when it does not run.
func startTime(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	// after the comm: state(3) ppid pgrp session tty tpgid flags minflt
	// cminflt majflt cmajflt utime stime cutime cstime priority nice
	// num_threads itrealvalue starttime(22)
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0
	}
	st, _ := strconv.ParseUint(f[19], 10, 64)
	return st
}

func (a *Agent) writePIDFile(r *run) {
	if a.pidFile == "" {
		return
	}
	err := os.MkdirAll(filepath.Dir(a.pidFile), 0o750)
	if err == nil {
		tmp := a.pidFile + ".tmp"
		err = os.WriteFile(tmp, fmt.Appendf(nil, "%d %d\n", r.pid, startTime(r.pid)), 0o640)
		if err == nil {
			err = os.Rename(tmp, a.pidFile)
		}
	}
	if err != nil {
		a.logger.Warn("cannot record the process in its pid file; a restarted agent will not find it", "err", err)
	}
}

func (a *Agent) removePIDFile() {
	if a.pidFile == "" {
		return
	}
	if err := os.Remove(a.pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.logger.Warn("cannot remove the pid file", "err", err)
	}
}

// adopt returns the process the pid file names if it still runs as the
// same process. What a dead leader left of its process group is killed:
// it can only be ours (the leader's pid is not in use, so no other group
// can have that id).
func (a *Agent) adopt() *run {
	b, err := os.ReadFile(a.pidFile)
	if err != nil {
		return nil
	}
	var pid int
	var st uint64
	if _, err := fmt.Sscan(string(b), &pid, &st); err != nil || pid <= 1 {
		a.logger.Warn("ignoring a malformed pid file", "file", a.pidFile)
		a.removePIDFile()
		return nil
	}
	if st != 0 && startTime(pid) == st {
		r := &run{pid: pid, done: make(chan struct{})}
		r.running.Store(true)
		go a.watchAdopted(r, st)
		return r
	}
	if errors.Is(unix.Kill(pid, 0), unix.ESRCH) {
		if members, _ := proc.Members(pid); len(members) > 0 {
			a.logger.Warn("killing what a dead process of a previous agent left behind", "pgid", pid, "pids", members)
			_ = proc.Signal(pid, syscall.SIGKILL)
		}
	}
	a.removePIDFile()
	return nil
}

// watchAdopted notices when an adopted process ends.
func (a *Agent) watchAdopted(r *run, st uint64) {
	for startTime(r.pid) == st {
		time.Sleep(adoptPoll)
	}
	r.exit = Exit{Resource: a.name, PID: r.pid, Code: -1, Status: "ended (started by a previous agent: exit status unknown)"}
	close(r.done)
	if !r.stopping.Load() {
		a.notify(r)
	}
}
