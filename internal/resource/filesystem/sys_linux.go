package filesystem

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// detachProcess makes cmd start in a session of its own: nbdfuse must
// outlive the agent (a restarted agent finds it serving the mount) and
// must not get the signals of the agent's terminal or process group.
func detachProcess(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} }

// unmountPath unmounts the file system at p, never lazily: a lazy
// unmount would leave the file system alive behind a stop that said it
// was gone.
func unmountPath(p string) error { return unix.Unmount(p, 0) }

// isBusy: the mount is in use.
func isBusy(err error) bool { return errors.Is(err, unix.EBUSY) }

// isNotMounted: nothing is mounted there (any more).
func isNotMounted(err error) bool { return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) }

// signalProcess sends SIGTERM, or SIGKILL when kill; a process already
// gone is not an error.
func signalProcess(pid int, kill bool) error {
	sig := unix.SIGTERM
	if kill {
		sig = unix.SIGKILL
	}
	if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	return nil
}

// clearLoop detaches loop device dev if ours still says, with the device
// open, that it is backed by our file. The check and LOOP_CLR_FD go
// through one open file, microseconds apart: on a busy host a loop device
// freed meanwhile is taken by someone else within a second (seen on the
// test machines), and running losetup -d after a check would leave
// milliseconds for that. The kernel clears the device at its last close
// (at once when nothing else has it open).
func clearLoop(dev string, ours func() bool) error {
	f, err := os.OpenFile(dev, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if !ours() {
		return nil
	}
	if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0); err != nil && !errors.Is(err, unix.ENXIO) {
		return fmt.Errorf("LOOP_CLR_FD %s: %w", dev, err)
	}
	return nil
}

// procLinkMount returns the mount ID of what /proc/NAME (a magic link:
// PID/cwd, PID/root, PID/map_files/RANGE) leads to: opened O_PATH it is
// followed without a call into its file system, and the descriptor's
// fdinfo says its mount.
func procLinkMount(name string) (int, bool) {
	fd, err := unix.Open("/proc/"+name, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, false
	}
	defer unix.Close(fd)
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return 0, false
	}
	return parseMntID(b)
}
