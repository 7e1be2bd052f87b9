package testbed

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"tandem/internal/netutil"
)

// The hosts' block storage: a filesystem resource attaches its volume
// through nbdfuse (a FUSE file) and a loop device, and mounts it in the
// agent's private mount namespace. When the namespace dies (a killed node,
// a closing bed) the mounts go with it, but the loop device stays bound to
// the FUSE file, and the FUSE connection and the file system above it stay
// too: a request nobody will answer then hangs whoever touches them —
// `sync`, `echo 3 > drop_caches`, `losetup -a`, a jbd2 thread — for the
// whole machine. So the bed releases its own storage itself.
//
// What is the bed's is recognised while the namespace still lives: a loop
// device whose backing file (sysfs, read without any I/O) lies under the
// bed's directory, a FUSE mount on a path under it (its connection is
// /sys/fs/fuse/connections/MINOR of the mount's device), and a mount of
// one of those loop devices. Once the namespace is gone the backing file
// reads as its path inside the dead FUSE mount ("/disk"), which names no
// bed, so Kill records what the host holds before it kills it.

// storage is what a host holds: loop devices with their backing files,
// FUSE connection numbers, and mounts to take off, by the pid whose mount
// namespace has them.
type storage struct {
	loops  map[string]string // /dev/loopN → backing file
	conns  map[int]bool
	mounts map[int][]string // pid → mount points, deepest first
}

// storageOf finds the bed's storage seen from this process's mount
// namespace and those of pids.
func (b *Bed) storageOf(pids []int) storage {
	s := storage{loops: map[string]string{}, conns: map[int]bool{}, mounts: map[int][]string{}}
	under := func(p string) bool { return strings.HasPrefix(p, b.Dir+"/") }
	ents, _ := os.ReadDir("/sys/block")
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "loop") {
			continue
		}
		if back := loopBacking(e.Name()); under(back) {
			s.loops["/dev/"+e.Name()] = back
		}
	}
	seen := map[string]bool{}
	for _, pid := range append([]int{os.Getpid()}, pids...) {
		ns, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/mnt")
		if err != nil || seen[ns] {
			continue
		}
		seen[ns] = true
		for _, m := range readMountinfo(pid) {
			_, loop := s.loops[m.source]
			fuse := strings.HasPrefix(m.fstype, "fuse") && under(m.point)
			if fuse {
				if minor, ok := strings.CutPrefix(m.dev, "0:"); ok {
					if n, err := strconv.Atoi(minor); err == nil {
						s.conns[n] = true
					}
				}
			}
			if (fuse || loop) && pid != os.Getpid() {
				s.mounts[pid] = append(s.mounts[pid], m.point)
			} else if fuse || loop {
				s.mounts[0] = append(s.mounts[0], m.point)
			}
		}
	}
	for pid := range s.mounts {
		slices.SortFunc(s.mounts[pid], func(a, b string) int { return len(b) - len(a) })
	}
	return s
}

// loopBacking is loop device name's backing file, "" when unbound.
func loopBacking(name string) string {
	b, err := os.ReadFile(filepath.Join("/sys/block", name, "loop", "backing_file"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

type mountLine struct{ dev, point, fstype, source string }

// readMountinfo parses /proc/PID/mountinfo. Its \ooo escapes are left
// as they are: the bed's paths have no space, tab or backslash.
func readMountinfo(pid int) []mountLine {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []mountLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if len(fields) < 5 || sep < 0 || sep+2 >= len(fields) {
			continue
		}
		out = append(out, mountLine{dev: fields[2], point: fields[4], fstype: fields[sep+1], source: fields[sep+2]})
	}
	return out
}

// noteStorage records what host h holds before it is killed, for Close.
func (b *Bed) noteStorage(pids []int) {
	s := b.storageOf(pids)
	if len(s.loops) == 0 && len(s.conns) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.loops == nil {
		b.loops, b.conns = map[string]string{}, map[int]bool{}
	}
	for d, back := range s.loops {
		b.loops[d] = back
	}
	for n := range s.conns {
		b.conns[n] = true
	}
}

// killedFUSE is a FUSE mount of the bed in a host's mount namespace,
// with the loop devices backed by a file in it.
type killedFUSE struct {
	point string
	conn  int
	loops map[string]string // /dev/loopN → backing file
}

// hostStorage lists the bed's FUSE mounts in the mount namespaces of pids
// (one host's processes; never the test's own namespace), each with the
// loop devices backed by a file in it: the host's own, which Kill
// releases once the host is dead.
func (b *Bed) hostStorage(pids []int) []killedFUSE {
	var out []killedFUSE
	self, _ := os.Readlink("/proc/self/ns/mnt")
	seen := map[string]bool{self: true}
	for _, pid := range pids {
		ns, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/mnt")
		if err != nil || seen[ns] {
			continue
		}
		seen[ns] = true
		for _, m := range readMountinfo(pid) {
			minor, ok := strings.CutPrefix(m.dev, "0:")
			n, err := strconv.Atoi(minor)
			if !ok || err != nil || !strings.HasPrefix(m.fstype, "fuse") || !strings.HasPrefix(m.point, b.Dir+"/") {
				continue
			}
			out = append(out, killedFUSE{point: m.point, conn: n, loops: map[string]string{}})
		}
	}
	if len(out) == 0 {
		return nil
	}
	ents, _ := os.ReadDir("/sys/block")
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "loop") {
			continue
		}
		back := loopBacking(e.Name())
		for _, f := range out {
			if strings.HasPrefix(back, f.point+"/") {
				f.loops["/dev/"+e.Name()] = back
			}
		}
	}
	return out
}

// releaseKilled is the kill path's cleanup, run once every process of the
// killed host is gone (and with them its mount namespace and mounts): a
// machine that crashes takes its loop devices and FUSE connections with
// it; the bed's kernel keeps them, bound to a FUSE file nobody serves.
// It aborts the connection of each FUSE mount whose file a loop device
// still holds (only then is the number surely still that file system's:
// a number freed is reused by the next FUSE mount, perhaps the other
// node's), and detaches those loop devices (a device still open, by a
// file system being taken off, is cleared at its last close). What it
// leaves, Close finishes.
func releaseKilled(mounts []killedFUSE) {
	for _, m := range mounts {
		held := false
		for d, back := range m.loops {
			held = held || stillOurs(d, back)
		}
		if !held {
			continue
		}
		ensureFusectl()
		os.WriteFile(filepath.Join(fusectlDir, strconv.Itoa(m.conn), "abort"), []byte("1"), 0)
		for d, back := range m.loops {
			if !stillOurs(d, back) {
				continue
			}
			clearLoop(d)
		}
	}
}

// stillOurs reports whether loop device dev, recorded bound to back, still
// is: bound to back, or to back's path inside its FUSE mount once that
// mount's namespace is gone ("/disk" for ".../fuse/disk").
func stillOurs(dev, back string) bool {
	now := loopBacking(filepath.Base(dev))
	return now != "" && (now == back || strings.HasPrefix(now, "/") && strings.HasSuffix(back, now))
}

// releaseStorage is Close's first step, before any process dies: it
// aborts the bed's FUSE connections (every request on them fails at once
// instead of waiting forever), takes the bed's mounts off lazily in their
// namespaces, and clears what Kill recorded. detachLoops finishes the job
// once the processes are gone.
func (b *Bed) releaseStorage() {
	s := b.current()
	b.mu.Lock()
	b.storage = s
	b.mu.Unlock()
	if len(s.conns) > 0 {
		ensureFusectl()
	}
	for n := range s.conns {
		os.WriteFile(filepath.Join(fusectlDir, strconv.Itoa(n), "abort"), []byte("1"), 0)
	}
	for pid, points := range s.mounts {
		for _, p := range points {
			if pid == 0 {
				unix.Unmount(p, unix.MNT_DETACH)
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			exec.CommandContext(ctx, "nsenter", "--mount=/proc/"+strconv.Itoa(pid)+"/ns/mnt", "--", "umount", "-l", p).Run()
			cancel()
		}
	}
}

// detachLoops clears the loop devices releaseStorage found, once nothing
// holds them (LOOP_CLR_FD on a device still open only marks it to clear
// on its last close: retried for a while).
func (b *Bed) detachLoops() []string {
	b.mu.Lock()
	loops := b.storage.loops
	b.mu.Unlock()
	var left []string
	for d, back := range loops {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if !stillOurs(d, back) {
				break
			}
			clearLoop(d)
			if time.Now().After(deadline) {
				left = append(left, d+" ("+back+")")
				break
			}
		}
	}
	return left
}

// clearLoop detaches loop device dev (LOOP_CLR_FD; on a device still
// open it only marks it to clear at its last close).
func clearLoop(dev string) {
	if f, err := os.OpenFile(dev, os.O_RDONLY, 0); err == nil {
		unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
		f.Close()
	}
}

const fusectlDir = "/sys/fs/fuse/connections"

// ensureFusectl mounts the fusectl file system where it is not yet.
func ensureFusectl() {
	for _, m := range readMountinfo(os.Getpid()) {
		if m.fstype == "fusectl" {
			return
		}
	}
	unix.Mount("fusectl", fusectlDir, "fusectl", 0, "")
}

// BedStorage lists what the bed holds now: its loop devices (with their
// backing files) and FUSE connection numbers, plus those recorded when a
// host was killed that still exist. For a test of Close.
func (b *Bed) BedStorage() (loops map[string]string, conns []int) {
	s := b.current()
	for n := range s.conns {
		conns = append(conns, n)
	}
	slices.Sort(conns)
	return s.loops, conns
}

// current is the bed's storage now: what its hosts' namespaces show, and
// what Kill recorded that still exists.
func (b *Bed) current() storage {
	var pids []int
	if b.lab != nil {
		for _, h := range b.lab.Hosts {
			pids = append(pids, netutil.ProcessesIn(h.Path())...)
		}
	}
	s := b.storageOf(pids)
	b.mu.Lock()
	defer b.mu.Unlock()
	recordedLive := false
	for d, back := range b.loops {
		if stillOurs(d, back) {
			s.loops[d] = back
			recordedLive = true
		}
	}
	// A recorded connection can be reused by another FUSE mount once its
	// file system is gone; while a recorded loop device still holds its
	// FUSE file, that file system (and so its number) lives.
	if recordedLive {
		for n := range b.conns {
			s.conns[n] = true
		}
	}
	return s
}
