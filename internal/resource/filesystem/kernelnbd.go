package filesystem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"tandem/internal/clock"
)

// kernelNBD attaches through the kernel's nbd module: nbd-client connects
// a free /dev/nbdN to the export. The device it connected is recorded in
// the state directory once nbd-client succeeds; an agent that dies
// between the two leaves the device connected and unrecorded, which a
// reboot or `nbd-client -d` clears (the kernel records no owner we could
// recognise it by).
type kernelNBD struct {
	uri    string
	src    source
	sys    string // sysfs root
	dev    string // device directory
	record string // the file naming the connected device
	mounts mountFinder
	run    runner
	clock  clock.Clock
	log    *slog.Logger
}

// nbdBlockSize is the logical block size asked of the kernel: 512, the
// loop device's, so a file system made through one node's attach mode
// mounts through the other's (xfs refuses a device whose sectors are
// larger than its own).
const nbdBlockSize = "512"

// claimed holds the devices agents of this process are connecting, so
// two starting at once do not pick the same free one.
var claimed = struct {
	sync.Mutex
	devs map[string]bool
}{devs: map[string]bool{}}

func (k *kernelNBD) mode() string { return ModeKernelNBD }

// connectArgs is nbd-client's command line to connect dev.
func (k *kernelNBD) connectArgs(dev string) []string {
	var args []string
	if k.src.socket != "" {
		args = []string{"-unix", k.src.socket}
	} else {
		args = []string{k.src.host, strconv.Itoa(k.src.port)}
	}
	args = append(args, dev, "-block-size", nbdBlockSize)
	if k.src.export != "" {
		args = append(args, "-name", k.src.export)
	}
	return args
}

var nbdName = regexp.MustCompile(`^nbd[0-9]+$`)

// connected reports whether the kernel has nbdN (a device name) in use:
// it shows a pid attribute from connect to disconnect.
func (k *kernelNBD) connected(name string) bool {
	_, err := os.Stat(path.Join(k.sys, "block", name, "pid"))
	return err == nil
}

// free lists the nbd devices not in use, in number order.
func (k *kernelNBD) free() []string {
	ents, _ := os.ReadDir(path.Join(k.sys, "block"))
	var names []string
	for _, e := range ents {
		if nbdName.MatchString(e.Name()) && !k.connected(e.Name()) {
			names = append(names, e.Name())
		}
	}
	num := func(s string) int { n, _ := strconv.Atoi(strings.TrimPrefix(s, "nbd")); return n }
	slices.SortFunc(names, func(a, b string) int { return num(a) - num(b) })
	return names
}

func (k *kernelNBD) claim() (string, error) {
	claimed.Lock()
	defer claimed.Unlock()
	for _, name := range k.free() {
		dev := path.Join(k.dev, name)
		if !claimed.devs[dev] {
			claimed.devs[dev] = true
			return dev, nil
		}
	}
	return "", errors.New("no free nbd device (raise the nbd module's nbds_max)")
}

func unclaim(dev string) {
	claimed.Lock()
	delete(claimed.devs, dev)
	claimed.Unlock()
}

func (k *kernelNBD) attach(ctx context.Context) (string, error) {
	dev, err := k.claim()
	if err != nil {
		return "", err
	}
	defer unclaim(dev) // once connected, its pid attribute keeps it taken
	args := k.connectArgs(dev)
	if out, err := k.run(ctx, "nbd-client", args...); err != nil {
		return "", cmdError(err, out, "nbd-client", args...)
	}
	if err := writeFileAtomic(k.record, []byte(dev+"\n"+k.uri+"\n")); err != nil {
		k.disconnect(ctx, dev)
		return "", fmt.Errorf("record %s in %s: %w", dev, k.record, err)
	}
	return dev, nil
}

// recorded returns the device and URI the record names.
func (k *kernelNBD) recorded() (dev, uri string, ok bool) {
	b, err := os.ReadFile(k.record)
	if err != nil {
		return "", "", false
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if !nbdName.MatchString(path.Base(lines[0])) {
		return "", "", false
	}
	if len(lines) > 1 {
		uri = lines[1]
	}
	return lines[0], uri, true
}

func (k *kernelNBD) inspect(ms []mount) attachment {
	dev, uri, ok := k.recorded()
	if !ok {
		if _, err := os.Stat(k.record); err == nil {
			return attachment{stale: true} // unreadable: remove it
		}
		return attachment{}
	}
	if !k.connected(path.Base(dev)) {
		return attachment{stale: true}
	}
	a := attachment{devs: []string{dev}, source: uri, parts: []string{"nbd device " + dev}}
	if n, ok := blockDevNum(k.sys, dev); ok {
		a.nums = []devNum{n}
	}
	return a
}

func (k *kernelNBD) detach(ctx context.Context) error {
	a := k.inspect(nil)
	if len(a.devs) > 0 {
		dev := a.devs[0]
		var num devNum
		if len(a.nums) > 0 {
			num = a.nums[0]
		}
		if at := k.mounts.where(dev, num, len(a.nums) > 0); len(at) > 0 {
			return fmt.Errorf("%s is still mounted on %s", dev, strings.Join(at, ", "))
		}
		if err := k.disconnect(ctx, dev); err != nil {
			return err
		}
	}
	if err := os.Remove(k.record); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// disconnect runs nbd-client -d and waits for the kernel to let go.
func (k *kernelNBD) disconnect(ctx context.Context, dev string) error {
	if out, err := k.run(ctx, "nbd-client", "-d", dev); err != nil {
		return cmdError(err, out, "nbd-client", "-d", dev)
	}
	err := poll(ctx, k.clock, 100*time.Millisecond, func() bool { return !k.connected(path.Base(dev)) })
	if err != nil {
		return fmt.Errorf("%s still connected after nbd-client -d: %w", dev, err)
	}
	k.log.Info("nbd device disconnected", "device", dev)
	return nil
}

// writeFileAtomic replaces name with data, or leaves it as it was. No
// fsync: the record describes a connection that a reboot ends anyway.
func writeFileAtomic(name string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return err
	}
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, name)
}

// poll calls done until it returns true or ctx ends, first 2 ms apart,
// backing off to max.
func poll(ctx context.Context, clk clock.Clock, max time.Duration, done func() bool) error {
	wait := 2 * time.Millisecond
	for !done() {
		t := clk.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C():
		}
		wait = min(2*wait, max)
	}
	return nil
}
