package netutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NamedDir is where `ip netns` keeps its bind-mounted namespace files.
const NamedDir = "/run/netns"

// NS is a named network namespace.
type NS struct {
	Name string
}

// NewNS creates the named namespace name (like `ip netns add`), with its
// loopback up. It fails if the name exists.
func NewNS(name string) (*NS, error) {
	if err := os.MkdirAll(NamedDir, 0o755); err != nil {
		return nil, fmt.Errorf("netutil: %w", err)
	}
	err := onFreshThread(func() error {
		h, err := netns.NewNamed(name) // moves this (discarded) thread into it
		if err != nil {
			return err
		}
		defer h.Close()
		return setLinkUp("lo")
	})
	if err != nil {
		return nil, fmt.Errorf("netutil: create namespace %s: %w", name, err)
	}
	return &NS{Name: name}, nil
}

// Path is the namespace's bind-mount file; open it to get a namespace fd.
func (n *NS) Path() string { return filepath.Join(NamedDir, n.Name) }

// Do runs f with its OS thread inside the namespace. Sockets f creates stay
// in the namespace after Do returns, so a listener or packet socket made in
// Do can be used from any goroutine.
func (n *NS) Do(f func() error) error { return DoIn(n.Path(), f) }

// DoIn is Do for the namespace whose file is path (/run/netns/x,
// /proc/PID/ns/net).
func DoIn(path string, f func() error) error {
	return onFreshThread(func() error {
		h, err := netns.GetFromPath(path)
		if err != nil {
			return fmt.Errorf("netutil: open namespace %s: %w", path, err)
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			return fmt.Errorf("netutil: enter namespace %s: %w", path, err)
		}
		return f()
	})
}

// Command returns a command that runs name with args inside the namespace
// (through `ip netns exec`, which also gives it a matching /sys).
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Delete removes the namespace name; its links vanish once no process is
// left inside. A missing namespace is not an error.
func (n *NS) Delete() error { return deleteNamed(n.Name) }

func deleteNamed(name string) error {
	err := netns.DeleteNamed(name)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netutil: delete namespace %s: %w", name, err)
	}
	// Unmount failed with EINVAL (not a mount point): the file may still be there.
	if rmErr := os.Remove(filepath.Join(NamedDir, name)); rmErr != nil && !os.IsNotExist(rmErr) {
		return fmt.Errorf("netutil: delete namespace %s: %w", name, rmErr)
	}
	return nil
}

// UniquePrefix returns base followed by this process's pid, the prefix every
// name a test creates should start with (see RemoveStale).
func UniquePrefix(base string) string { return base + strconv.Itoa(os.Getpid()) }

// RemoveStale deletes namespaces named base<pid>… whose pid no longer runs
// (left by a crashed or killed run), and namespaces named base… without a
// pid. It returns the names it deleted.
func RemoveStale(base string) ([]string, error) {
	entries, err := os.ReadDir(NamedDir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netutil: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, base) || OwnerAlive(strings.TrimPrefix(name, base)) {
			continue
		}
		if err := deleteNamed(name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

// OwnerAlive reports whether rest starts with the pid of a running
// process (names made with UniquePrefix carry their creator's pid).
func OwnerAlive(rest string) bool {
	end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(rest)
	}
	pid, err := strconv.Atoi(rest[:end])
	if err != nil || pid <= 0 {
		return false
	}
	return unix.Kill(pid, 0) != unix.ESRCH
}

// onFreshThread runs f on a locked OS thread that is thrown away afterwards
// (the goroutine exits still locked), so a thread left in another namespace
// can never run other goroutines.
func onFreshThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- f()
	}()
	return <-errc
}
