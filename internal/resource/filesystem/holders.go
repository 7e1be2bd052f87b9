package filesystem

import (
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// holder is a process that keeps a mount busy, and one way it does.
type holder struct {
	pid  int
	comm string
	how  string // "cwd", "root", "fd 3", "mmap"
	path string
}

func (h holder) String() string {
	return fmt.Sprintf("%d (%s, %s %s)", h.pid, h.comm, h.how, h.path)
}

// procView is what the holder search reads of /proc: text through fsys,
// and through linkMount the mount ID of what a magic link (PID/cwd,
// PID/root, PID/map_files/RANGE) leads to. On Linux linkMount opens the
// link O_PATH, which follows it without calling into the file system,
// and reads mnt_id from the new descriptor's fdinfo.
type procView struct {
	fsys      fs.FS
	linkMount func(name string) (id int, ok bool)
}

// findHolders lists the processes that hold mount m (by its mount ID),
// one entry per process: a working or root directory on it, an open
// file on it (fdinfo's mnt_id), a mapping of a file on it. Mount IDs are
// unique on the host, so a process of another mount namespace, or one in
// a directory of the same path that m covers, is never taken for a
// holder: what counts is the mount, not the path (a path match killed the
// other test-bed node's postgres, which sat in its own mount of the same
// path). Nothing here stats or opens a file of m, so a hung file system
// cannot hang the search. It is what fuser -m finds, without fuser.
func findHolders(p procView, m mount) []holder {
	ents, err := fs.ReadDir(p.fsys, ".")
	if err != nil {
		return nil
	}
	var hs []holder
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		if h, ok := holds(p, e.Name(), m); ok {
			h.pid = pid
			h.comm = readComm(p.fsys, e.Name())
			hs = append(hs, h)
		}
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].pid < hs[j].pid })
	return hs
}

// holds returns the first way process dir (its /proc directory name)
// holds m.
func holds(p procView, dir string, m mount) (holder, bool) {
	for _, l := range []string{"cwd", "root"} {
		if id, ok := p.linkMount(path.Join(dir, l)); ok && id == m.id {
			target, _ := fs.ReadLink(p.fsys, path.Join(dir, l))
			return holder{how: l, path: target}, true
		}
	}
	fds, _ := fs.ReadDir(p.fsys, path.Join(dir, "fdinfo"))
	for _, fd := range fds {
		info, err := fs.ReadFile(p.fsys, path.Join(dir, "fdinfo", fd.Name()))
		if id, ok := parseMntID(info); err == nil && ok && id == m.id {
			target, _ := fs.ReadLink(p.fsys, path.Join(dir, "fd", fd.Name()))
			return holder{how: "fd " + fd.Name(), path: target}, true
		}
	}
	maps, _ := fs.ReadFile(p.fsys, path.Join(dir, "maps"))
	for _, line := range strings.Split(string(maps), "\n") {
		// start-end perms offset MAJ:MIN inode [path]: a mapping of a file
		// on m's device is m's if its map_files link leads to m.
		f := strings.Fields(line)
		if len(f) < 6 || f[4] == "0" {
			continue
		}
		if d, ok := parseDevNum(f[3], 16); !ok || d != m.dev {
			continue
		}
		if id, ok := p.linkMount(path.Join(dir, "map_files", f[0])); ok && id == m.id {
			return holder{how: "mmap", path: strings.TrimSpace(line[strings.Index(line, f[5]):])}, true
		}
	}
	return holder{}, false
}

// parseMntID reads the mnt_id line of an fdinfo file (Linux 3.15 on).
func parseMntID(info []byte) (int, bool) {
	for _, line := range bytes.Split(info, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("mnt_id:")); ok {
			id, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			return id, err == nil
		}
	}
	return 0, false
}

// readComm returns a process's command name, or "?".
func readComm(proc fs.FS, dir string) string {
	b, err := fs.ReadFile(proc, path.Join(dir, "comm"))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// startTicks reads when process dir (a pid, or "self") started, in clock
// ticks since boot (/proc/PID/stat, field 22); false when it cannot.
func startTicks(proc fs.FS, dir string) (uint64, bool) {
	b, err := fs.ReadFile(proc, path.Join(dir, "stat"))
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields that follow start after its last ')', at field 3.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, false
	}
	t, err := strconv.ParseUint(f[19], 10, 64)
	return t, err == nil
}
