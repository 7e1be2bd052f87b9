// Package filesystem owns the `filesystem` resource agent: it attaches a
// volume's NBD export as a block device, checks the file system, mounts it
// on start, and on stop unmounts it (killing the processes that hold it
// after a timeout, as the Filesystem OCF agent's force_unmount does) and
// detaches the device. The device is the kernel's nbd (nbd-client) when
// the kernel has the module, else nbdfuse and a loop device; Mode says
// which. What it attaches is remembered in its state directory, so an
// agent restarted after a crash finds and cleans what its predecessor
// left.
package filesystem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"tandem/internal/resource"
)

// Config is one filesystem resource.
type Config struct {
	// Source is the NBD export: nbd+unix:///NAME?socket=PATH or
	// nbd://HOST:PORT/NAME.
	Source string
	// Mount is the absolute mount point (created when missing).
	Mount  string
	FSType string // ext4 or xfs
	// Options are mount -o options, comma-separated ("" none).
	Options string
	// Fsck checks the file system before mounting (e2fsck -p; xfs
	// replays its log at mount, xfs_repair is not run unattended).
	Fsck bool
	// Mkfs makes the file system when the device has none (blkid finds
	// no signature): a new volume's first start.
	Mkfs bool
	// ForceUnmount is how long a stop waits for a busy mount before it
	// kills what holds it; 0 never kills.
	ForceUnmount time.Duration
	// StateDir keeps the attachment (the FUSE file, nbdfuse's pid, the
	// loop device's name).
	StateDir string
}

// Agent is the filesystem resource.
type Agent struct {
	cfg Config
	log *slog.Logger
}

// New checks cfg and returns the agent.
func New(cfg Config, log *slog.Logger) (*Agent, error) {
	var errs []error
	if !filepath.IsAbs(cfg.Mount) || filepath.Clean(cfg.Mount) == "/" {
		errs = append(errs, fmt.Errorf("filesystem: mount point %q must be an absolute path other than /", cfg.Mount))
	}
	if cfg.FSType != "ext4" && cfg.FSType != "xfs" {
		errs = append(errs, fmt.Errorf("filesystem: fstype %q is not ext4 or xfs", cfg.FSType))
	}
	if !strings.HasPrefix(cfg.Source, "nbd") {
		errs = append(errs, fmt.Errorf("filesystem: source %q is not an NBD URI", cfg.Source))
	}
	if cfg.StateDir == "" {
		errs = append(errs, errors.New("filesystem: no state directory"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Mount = filepath.Clean(cfg.Mount)
	return &Agent{cfg: cfg, log: log}, nil
}

// Mode is how the device is attached: "nbd" (the kernel's module) or
// "nbdfuse+loop".
func (a *Agent) Mode() string {
	if kernelNBD() {
		return "nbd"
	}
	return "nbdfuse+loop"
}

func kernelNBD() bool {
	_, err := os.Stat("/sys/module/nbd")
	return err == nil
}

func (a *Agent) fuseFile() string { return filepath.Join(a.cfg.StateDir, "fuse", "disk") }
func (a *Agent) pidFile() string  { return filepath.Join(a.cfg.StateDir, "nbdfuse.pid") }
func (a *Agent) devFile() string  { return filepath.Join(a.cfg.StateDir, "device") }

// Start attaches, checks and mounts; a file system mounted here already
// from this source is left as it is.
func (a *Agent) Start(ctx context.Context) error {
	if m, ok := mountAt(a.cfg.Mount); ok {
		if dev, _ := a.device(); dev != "" && m.source == dev {
			return nil
		}
		return resource.Failf(resource.Hard, "filesystem: %s is in use: %s (%s) is mounted there", a.cfg.Mount, m.source, m.fstype)
	}
	dev, err := a.attach(ctx)
	if err != nil {
		return err
	}
	if a.cfg.Mkfs {
		if err := a.mkfsIfBlank(ctx, dev); err != nil {
			return err
		}
	}
	if a.cfg.Fsck && a.cfg.FSType == "ext4" {
		out, err := exec.CommandContext(ctx, "e2fsck", "-p", dev).CombinedOutput()
		if code := exitCode(err); code >= 4 || code < 0 && err != nil {
			return resource.Failf(resource.Hard, "filesystem: e2fsck %s: %v: %s", dev, err, strings.TrimSpace(string(out)))
		} else if code > 0 {
			a.log.Warn("filesystem: e2fsck repaired the file system", "device", dev, "exit", code, "output", strings.TrimSpace(string(out)))
		}
	}
	if err := os.MkdirAll(a.cfg.Mount, 0o755); err != nil {
		return fmt.Errorf("filesystem: %w", err)
	}
	args := []string{"-t", a.cfg.FSType}
	if a.cfg.Options != "" {
		args = append(args, "-o", a.cfg.Options)
	}
	if out, err := exec.CommandContext(ctx, "mount", append(args, dev, a.cfg.Mount)...).CombinedOutput(); err != nil {
		return fmt.Errorf("filesystem: mount %s on %s: %v: %s", dev, a.cfg.Mount, err, strings.TrimSpace(string(out)))
	}
	a.log.Info("filesystem mounted", "device", dev, "mount", a.cfg.Mount, "fstype", a.cfg.FSType, "mode", a.Mode())
	return nil
}

// mkfsIfBlank makes the file system on a device that has none.
func (a *Agent) mkfsIfBlank(ctx context.Context, dev string) error {
	err := exec.CommandContext(ctx, "blkid", "-p", dev).Run()
	if exitCode(err) != 2 { // 2: no signature found
		return nil
	}
	args := []string{"-q", dev}
	if a.cfg.FSType == "ext4" {
		args = []string{"-q", "-F", dev}
	}
	if out, err := exec.CommandContext(ctx, "mkfs."+a.cfg.FSType, args...).CombinedOutput(); err != nil {
		return resource.Failf(resource.Hard, "filesystem: mkfs.%s %s: %v: %s", a.cfg.FSType, dev, err, strings.TrimSpace(string(out)))
	}
	a.log.Info("filesystem: made a new file system on a blank volume", "device", dev, "fstype", a.cfg.FSType)
	return nil
}

// attach makes the block device and remembers it.
func (a *Agent) attach(ctx context.Context) (string, error) {
	if dev, err := a.device(); err == nil && dev != "" {
		return dev, nil
	}
	if err := os.MkdirAll(filepath.Dir(a.fuseFile()), 0o700); err != nil {
		return "", fmt.Errorf("filesystem: %w", err)
	}
	if kernelNBD() {
		return "", resource.Failf(resource.Hard, "filesystem: the kernel's nbd module is loaded, but attaching through nbd-client is not implemented; unload it to use nbdfuse")
	}
	os.Remove(a.pidFile())
	var stderr strings.Builder
	cmd := exec.Command("nbdfuse", "-P", a.pidFile(), a.fuseFile(), a.cfg.Source)
	// Its own process group: a signal to the agent's group (a terminal's
	// ^C) must not take the device from under a mounted file system.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("filesystem: nbdfuse: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reaped whenever it ends
	ready := func() bool { _, err := os.Stat(a.pidFile()); return err == nil }
	for !ready() {
		select {
		case err := <-exited:
			return "", fmt.Errorf("filesystem: nbdfuse %s exited: %v: %s", a.cfg.Source, err, strings.TrimSpace(stderr.String()))
		case <-ctx.Done():
			a.detach()
			return "", fmt.Errorf("filesystem: nbdfuse did not attach %s: %w", a.cfg.Source, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	out, err := exec.CommandContext(ctx, "losetup", "--find", "--show", a.fuseFile()).CombinedOutput()
	if err != nil {
		a.detach()
		return "", fmt.Errorf("filesystem: losetup %s: %v: %s", a.fuseFile(), err, strings.TrimSpace(string(out)))
	}
	dev := strings.TrimSpace(string(out))
	if err := os.WriteFile(a.devFile(), []byte(dev+"\n"), 0o600); err != nil {
		exec.Command("losetup", "-d", dev).Run()
		a.detach()
		return "", fmt.Errorf("filesystem: %w", err)
	}
	return dev, nil
}

// device returns the attached loop device, if one is recorded and still
// backed by this resource's FUSE file.
func (a *Agent) device() (string, error) {
	b, err := os.ReadFile(a.devFile())
	if err != nil {
		return "", err
	}
	dev := strings.TrimSpace(string(b))
	back, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file"))
	if err != nil || strings.TrimSpace(string(back)) != a.fuseFile() {
		return "", fmt.Errorf("filesystem: %s is not attached to %s", dev, a.fuseFile())
	}
	return dev, nil
}

// detach removes the loop device and stops nbdfuse; what is not there is
// skipped.
func (a *Agent) detach() error {
	var errs []error
	if dev, err := a.device(); err == nil {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("losetup -d %s: %v: %s", dev, err, strings.TrimSpace(string(out))))
		}
	}
	os.Remove(a.devFile())
	exec.Command("fusermount3", "-u", "-z", filepath.Dir(a.fuseFile())).Run() // nbdfuse mounts the directory; the file is in it
	if b, err := os.ReadFile(a.pidFile()); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 && isNBDFuse(pid) {
			syscall.Kill(pid, syscall.SIGTERM)
		}
		os.Remove(a.pidFile())
	}
	return errors.Join(errs...)
}

func isNBDFuse(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(b)) == "nbdfuse"
}

// Stop unmounts (killing what holds the mount after ForceUnmount) and
// detaches.
func (a *Agent) Stop(ctx context.Context) error {
	if _, ok := mountAt(a.cfg.Mount); ok {
		if err := a.unmount(ctx); err != nil {
			return err
		}
	}
	if err := a.detach(); err != nil {
		return fmt.Errorf("filesystem: detach: %w", err)
	}
	return nil
}

func (a *Agent) unmount(ctx context.Context) error {
	deadline := time.Now().Add(a.cfg.ForceUnmount)
	signal := syscall.SIGTERM
	for {
		out, err := exec.CommandContext(ctx, "umount", a.cfg.Mount).CombinedOutput()
		if err == nil {
			a.log.Info("filesystem unmounted", "mount", a.cfg.Mount)
			return nil
		}
		if _, ok := mountAt(a.cfg.Mount); !ok {
			return nil
		}
		if a.cfg.ForceUnmount <= 0 {
			return fmt.Errorf("filesystem: umount %s: %v: %s (force_unmount is off)", a.cfg.Mount, err, strings.TrimSpace(string(out)))
		}
		if time.Now().After(deadline) {
			pids := Holders(a.cfg.Mount)
			a.log.Warn("filesystem: the mount is busy; killing what holds it", "mount", a.cfg.Mount, "pids", pids, "signal", signal.String())
			for _, p := range pids {
				syscall.Kill(p, signal)
			}
			signal = syscall.SIGKILL
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("filesystem: umount %s: %w (last: %s)", a.cfg.Mount, ctx.Err(), strings.TrimSpace(string(out)))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Monitor: running when mounted from the attached device and answering
// a stat within the deadline; stopped when neither mounted nor attached.
func (a *Agent) Monitor(ctx context.Context) error {
	m, mounted := mountAt(a.cfg.Mount)
	dev, derr := a.device()
	switch {
	case !mounted && derr != nil:
		return resource.ErrNotRunning
	case !mounted:
		return fmt.Errorf("filesystem: %s is attached as %s but not mounted on %s", a.cfg.Source, dev, a.cfg.Mount)
	case derr != nil || m.source != dev:
		return resource.Failf(resource.Hard, "filesystem: %s holds %s, not this resource's device", a.cfg.Mount, m.source)
	}
	done := make(chan error, 1)
	go func() { _, err := os.Stat(filepath.Join(a.cfg.Mount, ".")); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("filesystem: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("filesystem: %s does not answer: %w", a.cfg.Mount, ctx.Err())
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
