package netutil

import (
	"os"
	"path/filepath"
	"strconv"
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

// ProcessesIn returns the pids whose network namespace is the one bound at
// path: everything that runs "on" a namespace host.
func ProcessesIn(path string) []int {
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
