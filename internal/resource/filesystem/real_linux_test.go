package filesystem

// The agent for real: an export served by our own NBD server in this
// process, attached with nbdfuse and a loop device (this kernel has no
// nbd module), ext4 and xfs, mounted in this mount namespace under a
// temporary directory. Each test needs root and skips, naming the Debian
// package, when a program is missing; CI installs them all:
//   apt-get install libnbd-bin fuse3 mount e2fsprogs xfsprogs util-linux

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tandem/internal/blockdev"
	"tandem/internal/nbd"
	"tandem/internal/resource"
)

func needRoot(t *testing.T, programs ...string) {
	t.Helper()
	if os.Getenv(helperEnv) != "" {
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (loop devices, FUSE, mount)")
	}
	programs = append(programs, "nbdfuse", "fusermount3", "losetup", "mount", "umount")
	if m := realHost.missing(programs...); len(m) > 0 {
		t.Skipf("skipping: not installed: %s", strings.Join(m, ", "))
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("skipping: no /dev/fuse (the fuse module)")
	}
	if mode, _, err := chooseMode(realHost); err != nil || mode != ModeNBDFuse {
		t.Skipf("skipping: the attach mode here is %q (%v); these tests drive nbdfuse+loop", mode, err)
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// volume is a backing file served over NBD on a unix socket.
type volume struct {
	path, uri string
}

// newVolume makes a sparse backing file of size bytes, runs mkfs on it
// when mkfs is set ("" leaves it blank), and serves it until the test
// ends.
func newVolume(t *testing.T, size int64, mkfs string) *volume {
	t.Helper()
	dir, err := os.MkdirTemp("", "fsv") // a unix socket path stays short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	v := &volume{path: filepath.Join(dir, "backing.img")}
	f, err := os.Create(v.path)
	if err == nil {
		err = errors.Join(f.Truncate(size), f.Close())
	}
	if err != nil {
		t.Fatal(err)
	}
	switch mkfs {
	case "ext4":
		sh(t, "mkfs.ext4", "-q", "-F", v.path)
	case "xfs":
		sh(t, "mkfs.xfs", "-q", v.path)
	}
	dev, err := blockdev.OpenFile(v.path, false)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := nbd.NewServer(slog.New(slog.DiscardHandler), nbd.Export{Name: "vol", Device: dev, MultiConn: true})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-served
		dev.Close()
	})
	v.uri = "nbd+unix:///vol?socket=" + sock
	return v
}

// testConfig is a resource on v with its mount point and state under a
// temporary directory.
func testConfig(t *testing.T, v *volume, fstype string) Config {
	dir := t.TempDir()
	return Config{Source: v.uri, Mount: filepath.Join(dir, "mnt"), FSType: fstype, Options: "noatime",
		Fsck: true, ForceUnmount: 300 * time.Millisecond, StateDir: filepath.Join(dir, "state")}
}

func newAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	a, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if a.Mode() != ModeNBDFuse {
		t.Fatalf("mode %q, want %q on a kernel without nbd", a.Mode(), ModeNBDFuse)
	}
	t.Cleanup(func() { cleanUp(t, a) })
	return a
}

// cleanUp stops the agent, and if that fails takes down by force what is
// left, so a failing test leaves nothing mounted or attached.
func cleanUp(t *testing.T, a *Agent) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Stop(ctx); err == nil {
		return
	} else {
		t.Errorf("cleanup: stop: %v", err)
	}
	fuse := a.attachers[0].(*nbdFuse)
	exec.Command("umount", "-l", a.cfg.Mount).Run()
	for _, d := range fuse.loops() {
		clearLoop(d, func() bool { return fuse.backs(d) })
	}
	for _, pid := range fuse.processes() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	exec.Command("umount", "-l", fuse.fuseDir()).Run()
}

// assertNothingLeft checks that no mount, loop device, FUSE mount or
// nbdfuse of the resource is left.
func assertNothingLeft(t *testing.T, a *Agent) {
	t.Helper()
	ms, err := readMounts()
	if err != nil {
		t.Fatal(err)
	}
	fuse := a.attachers[0].(*nbdFuse)
	for _, m := range ms {
		if within(m.point, a.cfg.Mount) || m.point == fuse.fuseDir() {
			t.Errorf("still mounted: %+v", m)
		}
	}
	if l := fuse.loops(); len(l) > 0 {
		t.Errorf("loop devices still attached: %v", l)
	}
	if p := fuse.processes(); len(p) > 0 {
		t.Errorf("nbdfuse still runs: %v", p)
	}
	if err := a.Monitor(context.Background()); !resource.IsNotRunning(err) {
		t.Errorf("monitor of a stopped resource: %v, want not running", err)
	}
}

// files writes n files of different sizes under dir and returns their
// digests by name.
func writeFiles(t *testing.T, dir string, seed int) map[string][32]byte {
	t.Helper()
	sums := map[string][32]byte{}
	for i, n := range []int{0, 1, 4096, 100_000, 3 << 20} {
		unit := []byte(fmt.Sprintf("%d:%d;", seed, i))
		data := bytes.Repeat(unit, n/len(unit)+1)[:n]
		name := fmt.Sprintf("f%d-%d", seed, i)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		sums[name] = sha256.Sum256(data)
	}
	syncFS(t, dir)
	return sums
}

// syncFS makes what was written under dir durable (syncfs(2)): a sync(2)
// of every file system of the host would wait for any other one that
// hangs (seen here: a FUSE-backed ext4 of another test, deadlocked).
func syncFS(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
}

func checkFiles(t *testing.T, dir string, sums map[string][32]byte) {
	t.Helper()
	for name, want := range sums {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || sha256.Sum256(b) != want {
			t.Errorf("%s: %d bytes, %v: not as written", name, len(b), err)
		}
	}
}

// startHolder starts a process that holds the mount; its end is reported on
// the returned channel.
func startHolder(t *testing.T, dir string, name string, args ...string) (*exec.Cmd, <-chan error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd, done
}

// watchUnmount reports how long from now until nothing is mounted at
// point (polling the mount table), or a minute.
func watchUnmount(point string) <-chan time.Duration {
	c := make(chan time.Duration, 1)
	t0 := time.Now()
	go func() {
		for time.Since(t0) < time.Minute {
			ms, _ := readMounts()
			if _, ok := topAt(ms, point); !ok {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		c <- time.Since(t0)
	}()
	return c
}

func killedBy(t *testing.T, what string, cmd *exec.Cmd, done <-chan error, sig syscall.Signal) {
	t.Helper()
	select {
	case <-done:
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != sig {
			t.Errorf("%s ended with %v, want killed by %v", what, cmd.ProcessState, sig)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("%s still runs after the stop", what)
	}
}

// The whole life of the resource on ext4 and xfs: start (twice), files,
// monitor; a stop with processes in the mount kills them (one ignores
// SIGTERM and needs SIGKILL) and leaves nothing; a second stop; a start
// finds the files; an unmount behind the agent's back is a failure, and
// the next start repairs it.
func TestAgentLifecycle(t *testing.T) {
	for _, c := range []struct {
		fstype string
		size   int64
		mkfs   bool // the agent makes the file system (else the test does)
	}{
		{"ext4", 64 << 20, false},
		{"xfs", 320 << 20, true}, // mkfs.xfs makes nothing under 300 MB
	} {
		t.Run(c.fstype, func(t *testing.T) {
			needRoot(t, "mkfs."+c.fstype, "e2fsck", "blkid")
			pre := c.fstype
			if c.mkfs {
				pre = ""
			}
			v := newVolume(t, c.size, pre)
			cfg := testConfig(t, v, c.fstype)
			cfg.Mkfs = c.mkfs
			a := newAgent(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			if err := a.Monitor(ctx); !resource.IsNotRunning(err) {
				t.Fatalf("monitor before start: %v", err)
			}
			t0 := time.Now()
			if err := a.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Logf("start: %v", time.Since(t0))
			if err := a.Start(ctx); err != nil {
				t.Fatalf("a second start: %v", err)
			}
			if err := a.Monitor(ctx); err != nil {
				t.Fatalf("monitor: %v", err)
			}
			ms, _ := readMounts()
			if m, ok := topAt(ms, cfg.Mount); !ok || m.fstype != c.fstype || !strings.HasPrefix(m.source, "/dev/loop") {
				t.Fatalf("mounted: %+v %v", m, ok)
			}
			sums := writeFiles(t, cfg.Mount, 1)

			// Three holders: a working directory, an open file, and a
			// process that ignores SIGTERM (SIG_IGN survives exec).
			os.Mkdir(filepath.Join(cfg.Mount, "d"), 0o755)
			cwd, cwdDone := startHolder(t, filepath.Join(cfg.Mount, "d"), "sleep", "600")
			tail, tailDone := startHolder(t, "/", "tail", "-f", filepath.Join(cfg.Mount, "f1-2"))
			stubborn, stubbornDone := startHolder(t, cfg.Mount, "sh", "-c", `trap "" TERM; exec sleep 600`)
			time.Sleep(100 * time.Millisecond) // tail has opened its file
			t0 = time.Now()
			unmounted := watchUnmount(cfg.Mount)
			if err := a.Stop(ctx); err != nil {
				t.Fatalf("stop with holders: %v", err)
			}
			took, gone := time.Since(t0), <-unmounted
			t.Logf("stop with holders: unmounted after %v, stopped after %v", gone, took)
			// The unmount within force_unmount + the SIGTERM grace (and
			// slack for a loaded machine); the detach after it waits for
			// flushes to the server's disk, which vary with its load.
			if limit := cfg.ForceUnmount + forceKillAfter + 1500*time.Millisecond; gone > limit {
				t.Errorf("unmounted after %v, over %v", gone, limit)
			}
			killedBy(t, "sleep with its cwd in the mount", cwd, cwdDone, syscall.SIGTERM)
			killedBy(t, "tail -f of a file in the mount", tail, tailDone, syscall.SIGTERM)
			killedBy(t, "a holder ignoring SIGTERM", stubborn, stubbornDone, syscall.SIGKILL)
			assertNothingLeft(t, a)
			if err := a.Stop(ctx); err != nil {
				t.Fatalf("a second stop: %v", err)
			}

			if err := a.Start(ctx); err != nil {
				t.Fatalf("start after stop: %v", err)
			}
			checkFiles(t, cfg.Mount, sums)
			if err := a.Monitor(ctx); err != nil {
				t.Fatalf("monitor: %v", err)
			}

			sh(t, "umount", cfg.Mount)
			err := a.Monitor(ctx)
			if err == nil || resource.IsNotRunning(err) || !strings.Contains(err.Error(), "attached") {
				t.Fatalf("monitor after an unmount behind the agent's back: %v, want a failure", err)
			}
			t.Logf("monitor after an external unmount: %v", err)
			if err := a.Start(ctx); err != nil {
				t.Fatalf("start over the half-stopped resource: %v", err)
			}
			checkFiles(t, cfg.Mount, sums)
			if err := a.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			assertNothingLeft(t, a)
		})
	}
}
