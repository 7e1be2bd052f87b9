package filesystem

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"tandem/internal/clock"
)

// nbdFuse attaches through nbdfuse and a loop device. Everything lives at
// fixed paths under the state directory, so what a previous agent left is
// found without any record: nbdfuse processes serving STATE/fuse/disk
// (/proc), the FUSE mount on STATE/fuse (mountinfo) and loop devices
// backed by STATE/fuse/disk (/sys/block/loop*/loop/backing_file).
type nbdFuse struct {
	uri    string
	dir    string // the state directory
	sys    string // sysfs root
	proc   fs.FS  // /proc
	mounts mountFinder
	run    runner
	clock  clock.Clock
	log    *slog.Logger
	// serverStart, when not 0, is when the NBD server behind uri started
	// (clock ticks since boot): an nbdfuse started before it is connected
	// to an earlier server that is gone, and nbdfuse never reconnects.
	serverStart uint64
}

// Waits of the nbdfuse shutdown. It exits once its FUSE mount is gone,
// after a last flush to the server, which takes seconds when the
// server's disk is busy (measured: up to 3 s beside a disk benchmark).
// By then the file system's unmount has flushed everything it wrote, so
// a signal loses no data; these only bound an nbdfuse that hangs.
const (
	nbdfuseExitWait = 5 * time.Second
	nbdfuseTermWait = 2 * time.Second
)

func (n *nbdFuse) mode() string     { return ModeNBDFuse }
func (n *nbdFuse) fuseDir() string  { return filepath.Join(n.dir, "fuse") }
func (n *nbdFuse) disk() string     { return filepath.Join(n.fuseDir(), "disk") }
func (n *nbdFuse) pidFile() string  { return filepath.Join(n.dir, "nbdfuse.pid") }
func (n *nbdFuse) logFile() string  { return filepath.Join(n.dir, "nbdfuse.log") }
func (n *nbdFuse) processes() []int { return processesRunning(n.proc, "nbdfuse", n.disk()) }

func (n *nbdFuse) attach(ctx context.Context) (string, error) {
	if err := os.MkdirAll(n.fuseDir(), 0o700); err != nil {
		return "", err
	}
	os.Remove(n.pidFile())
	// Its output goes to a file, not a pipe of ours: nbdfuse outlives an
	// agent that crashes, and a write to a pipe nobody reads would kill
	// it (SIGPIPE) under a mounted file system.
	logf, err := os.OpenFile(n.logFile(), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	// -P writes the pid file once the FUSE file serves.
	cmd := exec.Command("nbdfuse", "-P", n.pidFile(), n.disk(), n.uri)
	cmd.Stdout, cmd.Stderr, cmd.Dir = logf, logf, "/"
	detachProcess(cmd)
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return "", fmt.Errorf("nbdfuse: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }() // reaps it whenever it ends
	ended := false
	err = poll(ctx, n.clock, 20*time.Millisecond, func() bool {
		select {
		case <-exited:
			ended = true
			return true
		default:
		}
		b, err := os.ReadFile(n.pidFile())
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0 // written without a newline
	})
	if ended {
		return "", fmt.Errorf("nbdfuse %s exited: %s: %s", n.uri, cmd.ProcessState, n.lastWords())
	}
	if err != nil {
		_ = signalProcess(cmd.Process.Pid, true)
		<-exited
		n.unmountFuse(ctx)
		return "", fmt.Errorf("nbdfuse did not serve %s: %w (%s)", n.uri, err, n.lastWords())
	}
	// direct-io off: the FUSE file takes buffered I/O only.
	args := []string{"--find", "--show", "--direct-io=off", n.disk()}
	out, err := n.run(ctx, "losetup", args...)
	if err != nil {
		n.detach(ctx)
		return "", cmdError(err, out, "losetup", args...)
	}
	return strings.TrimSpace(string(out)), nil
}

// lastWords is the end of nbdfuse's log, for an error.
func (n *nbdFuse) lastWords() string {
	b, _ := os.ReadFile(n.logFile())
	s := strings.TrimSpace(string(b))
	if len(s) > maxQuoted {
		s = "…" + s[len(s)-maxQuoted:]
	}
	if s == "" {
		return "no output"
	}
	return s
}

// loops lists the loop devices backed by the FUSE file.
func (n *nbdFuse) loops() []string {
	ents, _ := os.ReadDir(path.Join(n.sys, "block"))
	var devs []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "loop") && n.backs(e.Name()) {
			devs = append(devs, "/dev/"+e.Name())
		}
	}
	return devs
}

func (n *nbdFuse) fuseMounted(ms []mount) bool {
	_, ok := topAt(ms, n.fuseDir())
	return ok
}

func (n *nbdFuse) inspect(ms []mount) attachment {
	var a attachment
	pids := n.processes()
	for _, pid := range pids {
		a.parts = append(a.parts, "nbdfuse pid "+strconv.Itoa(pid))
		a.source = lastArg(n.proc, pid)
	}
	fuse := n.fuseMounted(ms)
	if fuse {
		a.parts = append(a.parts, "FUSE mount "+n.fuseDir())
	}
	a.devs = n.loops()
	for _, d := range a.devs {
		a.parts = append(a.parts, "loop device "+d)
		if num, ok := blockDevNum(n.sys, d); ok {
			a.nums = append(a.nums, num)
		}
	}
	switch {
	case a.empty():
	case len(pids) == 0:
		a.broken = "nbdfuse is not running"
	case len(pids) > 1:
		a.broken = fmt.Sprintf("%d nbdfuse processes serve one file", len(pids))
	case n.olderThanServer(pids[0]):
		a.broken = fmt.Sprintf("nbdfuse (pid %d) was started by an earlier agent: its NBD server ended with that agent", pids[0])
	case !fuse:
		a.broken = "nbdfuse runs, but its FUSE mount is not in this mount namespace"
	case len(a.devs) == 0:
		a.broken = "no loop device is attached to " + n.disk()
	case len(a.devs) > 1:
		a.broken = "several loop devices are attached to " + n.disk()
	}
	if _, err := os.Stat(n.pidFile()); err == nil && a.empty() {
		a.stale = true
	}
	return a
}

// olderThanServer reports whether nbdfuse pid started before the NBD
// server it must be connected to (unknown: no).
func (n *nbdFuse) olderThanServer(pid int) bool {
	if n.serverStart == 0 {
		return false
	}
	t, ok := startTicks(n.proc, strconv.Itoa(pid))
	return ok && t < n.serverStart
}

func (n *nbdFuse) detach(ctx context.Context) error {
	// The loop devices first: each holds the FUSE file open.
	loops := n.loops()
	for _, d := range loops {
		num, known := blockDevNum(n.sys, d)
		if at := n.mounts.where(d, num, known); len(at) > 0 {
			return fmt.Errorf("%s is still mounted on %s", d, strings.Join(at, ", "))
		}
		if err := clearLoop(d, func() bool { return n.backs(d) }); err != nil {
			return err
		}
	}
	// A loop device is cleared once its last user lets go and its FUSE
	// file is flushed (seconds when the server's disk is busy; measured up
	// to 9 s beside a disk benchmark); one still open (a process reading
	// /dev/loopN) only when closed: wait, keeping nbdfuse alive for it.
	if err := poll(ctx, n.clock, 50*time.Millisecond, func() bool { return len(n.loops()) == 0 }); err != nil {
		return fmt.Errorf("loop device %s still attached to %s (still open?): %w", strings.Join(n.loops(), ", "), n.disk(), err)
	}
	if len(loops) > 0 {
		n.log.Info("loop device detached", "device", strings.Join(loops, ","))
	}
	if err := n.stopNBDFuse(ctx); err != nil {
		return err
	}
	os.Remove(n.pidFile())
	return nil
}

// backs reports whether loop device dev is backed by the FUSE file.
func (n *nbdFuse) backs(dev string) bool {
	b, err := os.ReadFile(path.Join(n.sys, "block", path.Base(dev), "loop", "backing_file"))
	return err == nil && strings.TrimSpace(string(b)) == n.disk()
}

// stopNBDFuse unmounts the FUSE file system, which ends nbdfuse; one that
// does not end is killed, and the mount of a dead one is removed.
func (n *nbdFuse) stopNBDFuse(ctx context.Context) error {
	n.unmountFuse(ctx)
	gone := func() bool { return len(n.processes()) == 0 }
	wait := func(d time.Duration) bool {
		wctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return poll(wctx, n.clock, 20*time.Millisecond, gone) == nil
	}
	signal := func(kill bool) {
		pids := n.processes()
		n.log.Warn("nbdfuse did not end with its mount; signalling it", "pids", pids, "kill", kill)
		for _, pid := range pids {
			_ = signalProcess(pid, kill)
		}
	}
	if !wait(nbdfuseExitWait) {
		signal(false)
		if !wait(nbdfuseTermWait) {
			signal(true)
			if !wait(nbdfuseTermWait) {
				return fmt.Errorf("nbdfuse %v serving %s did not die", n.processes(), n.disk())
			}
		}
	}
	ms, err := readMounts()
	if err != nil {
		return err
	}
	if n.fuseMounted(ms) { // nbdfuse died without unmounting: take it off
		if err := unmountPath(n.fuseDir()); err != nil && !isNotMounted(err) {
			return fmt.Errorf("unmount the FUSE file system on %s: %w", n.fuseDir(), err)
		}
	}
	return nil
}

// unmountFuse asks fusermount3 to unmount the FUSE file system (nbdfuse
// then exits), or does it itself when fusermount3 is missing or fails.
func (n *nbdFuse) unmountFuse(ctx context.Context) {
	ms, err := readMounts()
	if err != nil || !n.fuseMounted(ms) {
		return
	}
	out, err := n.run(ctx, "fusermount3", "-u", n.fuseDir())
	if err == nil {
		return
	}
	if uerr := unmountPath(n.fuseDir()); uerr != nil && !isNotMounted(uerr) {
		n.log.Warn("cannot unmount nbdfuse's FUSE file system", "dir", n.fuseDir(),
			"fusermount3", cmdError(err, out, "fusermount3", "-u", n.fuseDir()), "err", uerr)
	}
}
