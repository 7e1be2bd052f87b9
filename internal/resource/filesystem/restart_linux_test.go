package filesystem

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/internal/resource"
)

// helperEnv carries the config of TestHelperStartAndExit.
const helperEnv = "TANDEM_FILESYSTEM_HELPER"

// TestHelperStartAndExit is not a test of its own: the restart test runs
// it in a process of its own, as a previous agent that starts the
// resource and ends without stopping it, as a crashed agent does.
func TestHelperStartAndExit(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("the restart test's helper process")
	}
	var cfg Config
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	a, err := New(cfg, nil)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err = a.Start(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	os.Exit(0) // no Stop, no cleanup: what it started is left running
}

// startInAnotherProcess starts the resource from a process that then
// exits.
func startInAnotherProcess(t *testing.T, cfg Config) {
	t.Helper()
	spec, _ := json.Marshal(cfg)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperStartAndExit$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(spec))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the previous agent: %v\n%s", err, out)
	}
}

// An agent restarted after a crash finds what its predecessor left from
// its state directory: it stops it; it keeps a whole mount (same loop
// device, no remount); it replaces an attachment whose nbdfuse died under
// the mount, and the synced files are there.
func TestAgentRestartedFindsItsLeftovers(t *testing.T) {
	needRoot(t, "mkfs.ext4", "e2fsck")
	v := newVolume(t, 64<<20, "ext4")
	cfg := testConfig(t, v, "ext4")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// 1. Left running by a dead agent, stopped by the next one.
	startInAnotherProcess(t, cfg)
	a := newAgent(t, cfg)
	if err := a.Monitor(ctx); err != nil {
		t.Fatalf("monitor of the mount a previous agent left: %v", err)
	}
	if err := a.Stop(ctx); err != nil {
		t.Fatalf("stop of what a previous agent left: %v", err)
	}
	assertNothingLeft(t, a)

	// 2. Left running, kept by the next one's start.
	startInAnotherProcess(t, cfg)
	ms, _ := readMounts()
	before, _ := topAt(ms, cfg.Mount)
	a = newAgent(t, cfg)
	if err := a.Start(ctx); err != nil {
		t.Fatalf("start over a previous agent's mount: %v", err)
	}
	ms, _ = readMounts()
	if after, _ := topAt(ms, cfg.Mount); after != before {
		t.Fatalf("the start replaced the whole mount %+v with %+v", before, after)
	}
	if err := a.Monitor(ctx); err != nil {
		t.Fatal(err)
	}
	sums := writeFiles(t, cfg.Mount, 2)

	// 3. nbdfuse dies under the mount (killed; its output went to a
	// file, so the previous agent's exit did not kill it by SIGPIPE).
	fuse := a.attachers[0].(*nbdFuse)
	pids := fuse.processes()
	if len(pids) != 1 {
		t.Fatalf("nbdfuse processes: %v", pids)
	}
	syscall.Kill(pids[0], syscall.SIGKILL)
	waitFor(t, func() bool { return len(fuse.processes()) == 0 })
	err := a.Monitor(ctx)
	if err == nil || resource.IsNotRunning(err) || !strings.Contains(err.Error(), "nbdfuse is not running") {
		t.Fatalf("monitor with nbdfuse dead: %v", err)
	}
	t.Logf("monitor with nbdfuse dead: %v", err)
	b := newAgent(t, cfg)
	t0 := time.Now()
	if err := b.Start(ctx); err != nil {
		t.Fatalf("start over a dead nbdfuse: %v", err)
	}
	t.Logf("start over a dead nbdfuse: %v", time.Since(t0))
	if err := b.Monitor(ctx); err != nil {
		t.Fatal(err)
	}
	checkFiles(t, cfg.Mount, sums)
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, b)
}

// When the export is served by the agent's own process (the cluster's
// volume replica), an nbdfuse a crashed agent left is connected to a
// server that died with it: the next agent's monitor says so, and its
// start replaces the attachment instead of keeping a mount on which
// every read of data fails (a new user's walk: 50 s of I/O errors under
// a "running" status).
func TestAgentReplacesAnAttachmentToAServerThatDiedWithItsAgent(t *testing.T) {
	needRoot(t, "mkfs.ext4", "e2fsck")
	v := newVolume(t, 64<<20, "ext4")
	cfg := testConfig(t, v, "ext4")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := newAgent(t, cfg)
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	sums := writeFiles(t, cfg.Mount, 3)
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	startInAnotherProcess(t, cfg)
	old := a.attachers[0].(*nbdFuse).processes()
	b, err := New(cfg, testLogger(t), ServedByThisProcess())
	if err != nil {
		t.Fatal(err)
	}
	// The server here is the test's own, older than the helper process:
	// stand for an agent started after the helper ended, as a restarted
	// one is.
	fuse := b.attachers[0].(*nbdFuse)
	if self, ok := startTicks(b.procFS, "self"); !ok || fuse.serverStart != self {
		t.Fatalf("the server's start is %d, want this process's (%d, %v)", fuse.serverStart, self, ok)
	}
	fuse.serverStart = uptimeTicks(t)
	err = b.Monitor(ctx)
	if err == nil || resource.IsNotRunning(err) || !strings.Contains(err.Error(), "started by an earlier agent") {
		t.Fatalf("monitor of an nbdfuse older than the server's process: %v", err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatalf("start over it: %v", err)
	}
	now := b.attachers[0].(*nbdFuse).processes()
	if len(now) != 1 || len(old) != 1 || now[0] == old[0] {
		t.Fatalf("nbdfuse before %v, after %v: want it replaced", old, now)
	}
	if err := b.Monitor(ctx); err != nil {
		t.Fatal(err)
	}
	checkFiles(t, cfg.Mount, sums)
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, b)
}

// uptimeTicks is now in clock ticks since boot (USER_HZ, 100).
func uptimeTicks(t *testing.T) uint64 {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	var up float64
	if _, err := fmt.Sscan(string(b), &up); err != nil {
		t.Fatal(err)
	}
	return uint64(up*100) + 1
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
	}
}

// A mount point holding another file system is a hard failure of the
// start, which attaches nothing; the stop leaves that file system alone.
func TestAgentMountPointInUse(t *testing.T) {
	needRoot(t, "mkfs.ext4", "e2fsck")
	v := newVolume(t, 64<<20, "ext4")
	cfg := testConfig(t, v, "ext4")
	os.MkdirAll(cfg.Mount, 0o755)
	sh(t, "mount", "-t", "tmpfs", "tandem-test", cfg.Mount)
	t.Cleanup(func() { exec.Command("umount", cfg.Mount).Run() })
	a := newAgent(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := a.Start(ctx)
	if err == nil || resource.SeverityOf(err) != resource.Hard || !strings.Contains(err.Error(), "in use: tandem-test (tmpfs)") {
		t.Fatalf("start on a mount point in use: %v, want a hard failure naming it", err)
	}
	t.Logf("start on a mount point in use: %v", err)
	if err := a.Monitor(ctx); !resource.IsNotRunning(err) {
		t.Errorf("monitor: %v, want not running", err)
	}
	if err := a.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
	ms, _ := readMounts()
	if m, ok := topAt(ms, cfg.Mount); !ok || m.fstype != "tmpfs" {
		t.Errorf("the stop took the tmpfs that was not its own: %+v %v", m, ok)
	}
	fuse := a.attachers[0].(*nbdFuse)
	if len(fuse.loops()) > 0 || len(fuse.processes()) > 0 {
		t.Errorf("attached: loops %v nbdfuse %v", fuse.loops(), fuse.processes())
	}
}

// A file system e2fsck -p cannot repair is not mounted: a hard failure
// quoting e2fsck, and nothing left attached.
func TestAgentFsckFailure(t *testing.T) {
	needRoot(t, "mkfs.ext4", "e2fsck", "debugfs")
	v := newVolume(t, 64<<20, "ext4")
	// Clear the root directory's inode and mark the file system as having
	// errors, as the kernel does when it meets one: e2fsck -p checks a
	// file system marked clean no further.
	sh(t, "debugfs", "-w", "-R", "clri <2>", v.path)
	sh(t, "debugfs", "-w", "-R", "ssv state 2", v.path)
	cfg := testConfig(t, v, "ext4")
	a := newAgent(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := a.Start(ctx)
	if err == nil || resource.SeverityOf(err) != resource.Hard || !strings.Contains(err.Error(), "e2fsck -p") ||
		!strings.Contains(err.Error(), "exit status 4") || !strings.Contains(err.Error(), "MANUALLY") {
		t.Fatalf("start on a broken file system: %v, want a hard failure with e2fsck's words", err)
	}
	t.Logf("start on a broken file system: %v", err)
	assertNothingLeft(t, a)
}

// With force_unmount 0 a busy mount fails the stop, which says who holds
// it and leaves the resource running; once the holder is gone the stop
// succeeds.
func TestAgentStopNeverPretends(t *testing.T) {
	needRoot(t, "mkfs.ext4", "e2fsck")
	v := newVolume(t, 64<<20, "ext4")
	cfg := testConfig(t, v, "ext4")
	cfg.ForceUnmount = 0
	a := newAgent(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cmd, done := startHolder(t, cfg.Mount, "sleep", "600")
	sctx, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err := a.Stop(sctx)
	scancel()
	if err == nil || !strings.Contains(err.Error(), strconv.Itoa(cmd.Process.Pid)+" (sleep, cwd "+cfg.Mount+")") ||
		!strings.Contains(err.Error(), "force_unmount is 0") {
		t.Fatalf("stop of a busy mount without force: %v, want a failure naming the holder", err)
	}
	t.Logf("stop of a busy mount without force: %v", err)
	if err := a.Monitor(ctx); err != nil {
		t.Errorf("monitor after the failed stop: %v, want still running", err)
	}
	cmd.Process.Kill()
	<-done
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, a)
}
