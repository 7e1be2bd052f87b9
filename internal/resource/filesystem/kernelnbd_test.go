package filesystem

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"tandem/internal/clock"
)

// fakeKernel is a sysfs with nbd devices and an nbd-client that connects
// and disconnects them by adding and removing their pid attribute, as the
// kernel does. This kernel has no nbd module, so the kernel path is
// tested for its command lines and bookkeeping only.
type fakeKernel struct {
	t     *testing.T
	sys   string
	proc  fstest.MapFS // mount namespaces: ns/mnt and mountinfo per pid
	calls []string
	fail  bool // nbd-client exits 1
}

func newFakeKernel(t *testing.T, devices map[string]bool) *fakeKernel {
	k := &fakeKernel{t: t, sys: t.TempDir(), proc: fstest.MapFS{}}
	for name, busy := range devices {
		d := filepath.Join(k.sys, "block", name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "dev"), []byte("43:"+strings.TrimPrefix(name, "nbd")+"0\n"), 0o644)
		if busy {
			os.WriteFile(filepath.Join(d, "pid"), []byte("99\n"), 0o644)
		}
	}
	return k
}

func (k *fakeKernel) run(_ context.Context, name string, args ...string) ([]byte, error) {
	k.calls = append(k.calls, strings.Join(append([]string{name}, args...), " "))
	if name != "nbd-client" {
		k.t.Fatalf("ran %s", name)
	}
	if k.fail {
		return []byte("Error: Socket failed: Connection refused\n"), &exec.ExitError{}
	}
	pidAttr := func(dev string) string { return filepath.Join(k.sys, "block", filepath.Base(dev), "pid") }
	if args[0] == "-d" {
		os.Remove(pidAttr(args[1]))
		return nil, nil
	}
	for _, a := range args {
		if strings.HasPrefix(a, "/dev/nbd") {
			os.WriteFile(pidAttr(a), []byte("1234\n"), 0o644)
		}
	}
	return nil, nil
}

// namespace puts process pid, in mount namespace ns, in the fake /proc.
func (k *fakeKernel) namespace(pid int, ns, comm, mountinfo string) {
	p := strconv.Itoa(pid)
	k.proc[p+"/ns/mnt"] = &fstest.MapFile{Mode: fs.ModeSymlink, Data: []byte(ns)}
	k.proc[p+"/comm"] = &fstest.MapFile{Data: []byte(comm + "\n")}
	k.proc[p+"/mountinfo"] = &fstest.MapFile{Data: []byte(mountinfo)}
}

func (k *fakeKernel) agent(t *testing.T, uri string) *kernelNBD {
	src, err := parseSource(uri)
	if err != nil {
		t.Fatal(err)
	}
	return &kernelNBD{uri: uri, src: src, sys: k.sys, dev: "/dev", record: filepath.Join(t.TempDir(), "state", "nbd-device"),
		mounts: mountFinder{proc: k.proc, selfNS: "mnt:[1]"}, run: k.run, clock: clock.Real{}, log: slog.New(slog.DiscardHandler)}
}

func TestKernelNBDCommandLines(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		uri, connect string
	}{
		{"nbd+unix:///pg?socket=/var/lib/tandem/volumes/pg.nbd",
			"nbd-client -unix /var/lib/tandem/volumes/pg.nbd /dev/nbd1 -block-size 512 -name pg"},
		{"nbd://127.0.0.1:10900/pg", "nbd-client 127.0.0.1 10900 /dev/nbd1 -block-size 512 -name pg"},
		{"nbd://[::1]/", "nbd-client ::1 10809 /dev/nbd1 -block-size 512"},
	} {
		// nbd0 is taken; nbd1 and nbd10 are free: the lowest free one is used.
		k := newFakeKernel(t, map[string]bool{"nbd0": true, "nbd1": false, "nbd10": false, "loop0": false})
		a := k.agent(t, c.uri)
		if at := a.inspect(nil); !at.empty() || at.stale {
			t.Fatalf("%s: before attach: %+v", c.uri, at)
		}
		dev, err := a.attach(ctx)
		if err != nil || dev != "/dev/nbd1" {
			t.Fatalf("%s: attach: %q, %v", c.uri, dev, err)
		}
		at := a.inspect(nil)
		if !reflect.DeepEqual(at.devs, []string{"/dev/nbd1"}) || at.source != c.uri || !reflect.DeepEqual(at.nums, []devNum{{43, 10}}) {
			t.Errorf("%s: after attach: %+v", c.uri, at)
		}
		// A restarted agent finds the device from the record alone.
		b := *a
		if at := b.inspect(nil); len(at.devs) != 1 || at.devs[0] != "/dev/nbd1" {
			t.Errorf("%s: a restarted agent sees %+v", c.uri, at)
		}
		// Refused while mounted, here or in another mount namespace;
		// disconnected once not.
		k.namespace(100, "mnt:[1]", "sleep", "90 1 43:10 / /srv/pg rw - ext4 /dev/nbd1 rw\n")
		k.namespace(101, "mnt:[1]", "sh", "90 1 43:10 / /srv/pg rw - ext4 /dev/nbd1 rw\n")
		k.namespace(200, "mnt:[2]", "postgres", "91 1 43:10 / /srv/pg rw - ext4 /dev/nbd1 rw\n92 1 7:1 / /srv/other rw - ext4 /dev/loop1 rw\n")
		err = a.detach(ctx)
		if want := "/dev/nbd1 is still mounted on /srv/pg, /srv/pg (mount namespace of pid 200, postgres)"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: detach of a mounted device: %v, want %q", c.uri, err, want)
		}
		k.namespace(100, "mnt:[1]", "sleep", "")
		k.namespace(101, "mnt:[1]", "sh", "")
		k.namespace(200, "mnt:[2]", "postgres", "")
		if err := a.detach(ctx); err != nil {
			t.Fatalf("%s: detach: %v", c.uri, err)
		}
		want := []string{c.connect, "nbd-client -d /dev/nbd1"}
		if !reflect.DeepEqual(k.calls, want) {
			t.Errorf("%s: ran\n %q\nwant\n %q", c.uri, k.calls, want)
		}
		if at := a.inspect(nil); !at.empty() || at.stale {
			t.Errorf("%s: after detach: %+v", c.uri, at)
		}
		if _, err := os.Stat(a.record); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: the record outlived the detach: %v", c.uri, err)
		}
	}
}

func TestKernelNBDFailures(t *testing.T) {
	ctx := context.Background()
	k := newFakeKernel(t, map[string]bool{"nbd0": true})
	a := k.agent(t, "nbd://127.0.0.1/pg")
	if _, err := a.attach(ctx); err == nil || !strings.Contains(err.Error(), "no free nbd device") {
		t.Errorf("all devices busy: %v", err)
	}
	k = newFakeKernel(t, map[string]bool{"nbd0": false})
	k.fail = true
	a = k.agent(t, "nbd://127.0.0.1/pg")
	if _, err := a.attach(ctx); err == nil || !strings.Contains(err.Error(), "Connection refused") {
		t.Errorf("nbd-client failing: %v, want its output in the error", err)
	}
	if _, err := os.Stat(a.record); err == nil {
		t.Error("a failed attach left a record")
	}
	// A record of a device no longer connected (a reboot, nbd-client -d
	// by hand) is stale bookkeeping: not an attachment, removed on detach.
	k.fail = false
	os.MkdirAll(filepath.Dir(a.record), 0o700)
	os.WriteFile(a.record, []byte("/dev/nbd0\nnbd://127.0.0.1/pg\n"), 0o600)
	if at := a.inspect(nil); !at.empty() || !at.stale {
		t.Errorf("a record of a disconnected device: %+v", at)
	}
	if err := a.detach(ctx); err != nil || len(k.calls) != 1 {
		t.Errorf("detach of a stale record: %v, ran %q (only the failed connect)", err, k.calls)
	}
	if _, err := os.Stat(a.record); err == nil {
		t.Error("the stale record is still there")
	}
}
