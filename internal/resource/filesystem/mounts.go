package filesystem

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

type mountEntry struct{ source, fstype string }

// mountAt returns what is mounted on dir (the last mount there), from
// this process's mount namespace.
func mountAt(dir string) (mountEntry, bool) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return mountEntry{}, false
	}
	return parseMountInfo(string(b), dir)
}

// parseMountInfo finds dir in a mountinfo table (proc(5)): fields 5 is
// the mount point, after " - " come the fstype and the source. Octal
// escapes (\040 for a space) are decoded.
func parseMountInfo(table, dir string) (mountEntry, bool) {
	var found mountEntry
	ok := false
	for _, line := range strings.Split(table, "\n") {
		pre, post, sep := strings.Cut(line, " - ")
		f := strings.Fields(pre)
		g := strings.Fields(post)
		if !sep || len(f) < 5 || len(g) < 2 {
			continue
		}
		if unescape(f[4]) == dir {
			found, ok = mountEntry{source: unescape(g[1]), fstype: g[0]}, true
		}
	}
	return found, ok
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Holders returns the processes that hold dir or anything under it: as
// working directory, root, an open file or a mapped file.
func Holders(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if holds(pid, dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func holds(pid int, dir string) bool {
	base := filepath.Join("/proc", strconv.Itoa(pid))
	under := func(p string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	for _, l := range []string{"cwd", "root"} {
		if p, err := os.Readlink(filepath.Join(base, l)); err == nil && under(p) {
			return true
		}
	}
	fds, _ := os.ReadDir(filepath.Join(base, "fd"))
	for _, fd := range fds {
		if p, err := os.Readlink(filepath.Join(base, "fd", fd.Name())); err == nil && under(p) {
			return true
		}
	}
	if maps, err := os.ReadFile(filepath.Join(base, "maps")); err == nil {
		for _, line := range strings.Split(string(maps), "\n") {
			if i := strings.Index(line, " /"); i >= 0 && under(strings.TrimSpace(line[i:])) {
				return true
			}
		}
	}
	return false
}
