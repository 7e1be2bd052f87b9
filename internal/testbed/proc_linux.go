package testbed

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"tandem/internal/netutil"
)

// signalAll sends sig to every process in the namespace at path and
// returns how many there were.
func signalAll(path string, sig syscall.Signal) int {
	pids := netutil.ProcessesIn(path)
	for _, p := range pids {
		syscall.Kill(p, sig)
	}
	return len(pids)
}

// cmdline is the NUL-separated command line of pid, with spaces.
func cmdline(pid int) string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

// allExited reports whether every pid has exited completely: gone, or a
// zombie whose threads have all ended (only then are its files closed).
func allExited(pids []int) bool {
	for _, p := range pids {
		if pidAlive(p) {
			return false
		}
		if tasks, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(p), "task")); err == nil && len(tasks) > 1 {
			return false
		}
	}
	return true
}

// deepestFirst orders pids so that every process comes before its parent.
func deepestFirst(pids []int) []int {
	in := map[int]bool{}
	for _, p := range pids {
		in[p] = true
	}
	depth := map[int]int{}
	for _, p := range pids {
		d := 0
		for q := parentOf(p); in[q] && d < len(pids); q = parentOf(q) {
			d++
		}
		depth[p] = d
	}
	out := append([]int(nil), pids...)
	sort.SliceStable(out, func(i, j int) bool { return depth[out[i]] > depth[out[j]] })
	return out
}

// parentOf is pid's parent (0 when unknown).
func parentOf(pid int) int {
	f := statFields(pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// statFields are the fields of /proc/PID/stat after the command name
// (state, ppid, …); nil when pid is gone.
func statFields(pid int) []string {
	return statFieldsAt(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
}

// statFieldsAt is statFields of a stat file (a process's or a thread's).
func statFieldsAt(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the name may hold spaces and parentheses
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// allStopped reports whether every thread of every pid is stopped (or
// gone): a group stop reaches the threads one by one, and a thread of a Go
// service that still runs can answer a client. A thread in uninterruptible
// sleep (D) counts as stopped: it handles the pending SIGSTOP before it
// returns to user space, so it cannot answer anyone. (A PostgreSQL backend
// in fsync on a loop device over nbdfuse, whose nbdfuse was stopped first,
// stays D until the kill; waiting for it made the kill complete 100-250 ms
// late, and the audit then saw the new node's takeover as two holders.)
func allStopped(pids []int) bool {
	for _, p := range pids {
		tasks, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(p), "task"))
		if err != nil {
			continue // gone
		}
		for _, t := range tasks {
			f := statFieldsAt(filepath.Join("/proc", strconv.Itoa(p), "task", t.Name(), "stat"))
			if len(f) == 0 || f[0] == "" {
				continue // gone
			}
			if st := f[0][0]; st != 'T' && st != 't' && st != 'Z' && st != 'X' && st != 'D' {
				return false
			}
		}
	}
	return true
}

// procState is the state letter of pid (0 when it is gone).
func procState(pid int) byte {
	f := statFields(pid)
	if len(f) == 0 || f[0] == "" {
		return 0
	}
	return f[0][0]
}

// pidAlive reports whether pid runs (and is not a zombie).
func pidAlive(pid int) bool {
	st := procState(pid)
	return st != 0 && st != 'Z'
}

// alive reports whether pid runs (exists and is not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	state := s[i+2]
	return state != 'Z' && state != 'X'
}
