package filesystem

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"time"
)

// How the export becomes a block device, as Mode reports it.
const (
	// ModeKernelNBD: the kernel's nbd module, connected by nbd-client.
	ModeKernelNBD = "nbd"
	// ModeNBDFuse: nbdfuse shows the export as a file in a FUSE mount,
	// and a loop device makes that file a block device. For kernels
	// without nbd (like the ones tandem's tests run on).
	ModeNBDFuse = "nbdfuse+loop"
)

// attacher makes the export a block device and undoes it. Each finds its
// own work on the host (inspect) from the state directory and the
// kernel's tables, not from memory, so an agent restarted after a crash
// sees what its predecessor attached.
type attacher interface {
	mode() string
	// attach makes the block device and returns its path. A failure
	// leaves nothing attached, or what it leaves is found by inspect.
	attach(ctx context.Context) (string, error)
	// inspect reports what of this resource's attachment exists now.
	inspect(ms []mount) attachment
	// detach undoes all that inspect finds. It refuses while the device
	// is still mounted in any mount namespace, and reports what it could
	// not undo.
	detach(ctx context.Context) error
}

// attachment is what an attacher found of its work.
type attachment struct {
	devs   []string // block devices serving the export (normally one)
	nums   []devNum // their major:minor, where sysfs says
	source string   // the NBD URI attached, when known
	parts  []string // every piece found, for messages
	broken string   // "" when whole and healthy; else what is wrong
	stale  bool     // only bookkeeping of a past attachment is left
}

func (a attachment) empty() bool { return len(a.parts) == 0 }

// holds reports whether m is a file system on one of a's devices.
func (a attachment) holds(m mount) bool {
	for i, d := range a.devs {
		if m.source == d || (i < len(a.nums) && m.dev == a.nums[i]) {
			return true
		}
	}
	return false
}

// host is what the mode choice looks at: files and installed programs.
type host struct {
	exists   func(path string) bool
	lookPath func(name string) (string, error)
}

var realHost = host{
	exists:   func(p string) bool { _, err := os.Stat(p); return err == nil },
	lookPath: exec.LookPath,
}

// debianPackage names the package of each program the agent runs, for
// the error that says it is missing.
var debianPackage = map[string]string{
	"nbd-client": "nbd-client", "nbdfuse": "libnbd-bin", "losetup": "mount",
	"fusermount3": "fuse3", "mount": "mount", "blkid": "util-linux",
	"e2fsck": "e2fsprogs", "mkfs.ext4": "e2fsprogs", "mkfs.xfs": "xfsprogs",
}

// missing returns the programs of names not installed, each with its
// Debian package.
func (h host) missing(names ...string) []string {
	var out []string
	for _, n := range names {
		if _, err := h.lookPath(n); err != nil {
			out = append(out, fmt.Sprintf("%s (Debian package %s)", n, debianPackage[n]))
		}
	}
	return out
}

// chooseMode picks how to attach: the kernel's nbd when the kernel has
// the module (loaded: /sys/module/nbd, or its devices) and nbd-client is
// installed, else nbdfuse and a loop device. note says why a kernel nbd
// was passed over; err says what is missing for either.
func chooseMode(h host) (mode, note string, err error) {
	kernel := h.exists("/sys/module/nbd") || h.exists("/dev/nbd0")
	if kernel {
		m := h.missing("nbd-client")
		if len(m) == 0 {
			return ModeKernelNBD, "", nil
		}
		note = "the kernel has nbd but " + m[0] + " is not installed"
	}
	var lack []string
	lack = append(lack, h.missing("nbdfuse", "losetup")...)
	if !h.exists("/dev/fuse") {
		lack = append(lack, "/dev/fuse (the fuse module)")
	}
	if len(lack) == 0 {
		return ModeNBDFuse, note, nil
	}
	why := "the kernel has no nbd module (no /sys/module/nbd, no /dev/nbd0)"
	if kernel {
		why = note
	}
	return "", note, fmt.Errorf("cannot attach an NBD export: %s, and nbdfuse+loop lacks %s", why, strings.Join(lack, ", "))
}

// runner runs a program to its end and returns its combined output; a
// non-zero exit is an *exec.ExitError. The ctx bounds it.
type runner func(ctx context.Context, name string, args ...string) ([]byte, error)

func execRun(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = "/"
	cmd.WaitDelay = time.Second // a grandchild keeping the output open
	return cmd.CombinedOutput()
}

// cmdError says which command failed, how, and what it printed.
func cmdError(err error, out []byte, name string, args ...string) error {
	msg := strings.TrimSpace(string(out))
	if len(msg) > maxQuoted {
		msg = msg[:maxQuoted] + "…"
	}
	if msg == "" {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
}

// maxQuoted bounds a program's own words in an error (e2fsck's report
// of a damaged file system can run to pages).
const maxQuoted = 2000

// exitCode is the exit status in err (0 for nil, -1 when the program did
// not exit by itself: not found, killed).
func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}

// blockDevNum reads major:minor of block device dev (/dev/NAME) from sysfs.
func blockDevNum(sys, dev string) (devNum, bool) {
	b, err := os.ReadFile(path.Join(sys, "block", path.Base(dev), "dev"))
	if err != nil {
		return devNum{}, false
	}
	return parseDevNum(string(b), 10)
}

// mountFinder finds where a block device is mounted in any mount
// namespace of the host: a device mounted in a namespace that was copied
// from ours (a container started while it was mounted), or that another
// agent's namespace uses, cannot be detached, and the error says where.
type mountFinder struct {
	proc   fs.FS  // /proc
	selfNS string // this process's mount namespace (/proc/self/ns/mnt)
}

// where lists the mounts of dev (by path or number), one mountinfo read
// per namespace: "/srv/pg" in ours, "/srv/pg (mount namespace of pid 12,
// sleep)" in another.
func (f mountFinder) where(dev string, num devNum, known bool) []string {
	ents, _ := fs.ReadDir(f.proc, ".")
	seen := map[string]bool{}
	var at []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ns, err := fs.ReadLink(f.proc, e.Name()+"/ns/mnt")
		if err != nil || seen[ns] {
			continue
		}
		seen[ns] = true
		b, err := fs.ReadFile(f.proc, e.Name()+"/mountinfo")
		if err != nil {
			continue
		}
		for _, m := range parseMountInfo(string(b)) {
			if m.source != dev && !(known && m.dev == num) {
				continue
			}
			if ns == f.selfNS {
				at = append(at, m.point)
			} else {
				at = append(at, fmt.Sprintf("%s (mount namespace of pid %d, %s)", m.point, pid, readComm(f.proc, e.Name())))
			}
		}
	}
	return at
}

// processesRunning lists the live processes whose program is name and
// whose arguments include arg, from a /proc tree.
func processesRunning(proc fs.FS, name, arg string) []int {
	ents, _ := fs.ReadDir(proc, ".")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// comm first: reading a cmdline takes the process's mmap lock,
		// which a process stuck in a hung file system can hold.
		if readComm(proc, e.Name()) != name {
			continue
		}
		b, err := fs.ReadFile(proc, e.Name()+"/cmdline")
		if err != nil || len(b) == 0 { // gone, or a zombie
			continue
		}
		argv := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		if path.Base(argv[0]) != name {
			continue
		}
		for _, a := range argv[1:] {
			if a == arg {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// lastArg returns the last argument of pid's command line (nbdfuse's URI).
func lastArg(proc fs.FS, pid int) string {
	b, _ := fs.ReadFile(proc, strconv.Itoa(pid)+"/cmdline")
	argv := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	return argv[len(argv)-1]
}
