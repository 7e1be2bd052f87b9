package testbed

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// netnsInode identifies the network namespace bound at path.
func netnsInode(path string) (string, bool) {
	var st syscall.Stat_t
	if syscall.Stat(path, &st) != nil {
		return "", false
	}
	return "net:[" + strconv.FormatUint(st.Ino, 10) + "]", true
}

// processesIn returns the pids whose network namespace is the one bound at
// path: everything that runs "on" a host of the bed.
func processesIn(path string) []int {
	want, ok := netnsInode(path)
	if !ok {
		return nil
	}
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if l, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "net")); err == nil && l == want {
			out = append(out, pid)
		}
	}
	return out
}

// signalAll sends sig to every process in the namespace at path and
// returns how many there were.
func signalAll(path string, sig syscall.Signal) int {
	pids := processesIn(path)
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

// pidAlive reports whether pid runs (and is not a zombie).
func pidAlive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
