package demo

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// killTree SIGKILLs pid and every process descended from it (the agent and
// the services it started in their own process groups): a node crash.
func killTree(pid int) error {
	pids := []int{pid}
	parent := parents()
	for i := 0; i < len(pids); i++ {
		for child, p := range parent {
			if p == pids[i] {
				pids = append(pids, child)
			}
		}
	}
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGKILL)
	}
	return nil
}

// parents maps every running pid to its parent.
func parents() map[int]int {
	out := map[int]int{}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			out[pid] = ppid
		}
	}
	return out
}

// childAttrs makes a child die with the demo (and, with group, lead its
// own process group so it can be killed as a whole).
func childAttrs(group bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: group, Pdeathsig: syscall.SIGKILL}
}
