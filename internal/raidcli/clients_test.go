package raidcli

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"tandem/internal/fusetest"
)

// Real NBD clients from Debian against `tandem raid serve`: nbdinfo sees
// the export, nbdcopy writes a file in and reads it back out byte for byte,
// qemu-img compares the image with the file after a member fails, and fio's
// nbd engine and qemu-io write and verify on the degraded array.
func TestServeToRealClients(t *testing.T) {
	for _, p := range []string{"nbdinfo", "nbdcopy", "qemu-img"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed (Debian: libnbd-bin, qemu-utils)", p)
		}
	}
	c := newCLI(t)
	c.must("create", "--level", "5", "--chunk", "16K", "--size", "12M", "--wait", "r5", c.path("m0"), c.path("m1"), c.path("m2"), c.path("m3"))
	uri, stop := c.serve("r5")
	info, err := exec.Command("nbdinfo", "--json", uri).CombinedOutput()
	if err != nil || !strings.Contains(string(info), `"export-name": "r5"`) || !strings.Contains(string(info), `"can_multi_conn": true`) {
		t.Fatalf("nbdinfo: %v\n%s", err, info)
	}
	st := c.status("r5")
	src := c.path("src")
	data := make([]byte, st.Size)
	r := rand.New(rand.NewPCG(2, 3))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	os.WriteFile(src, data, 0o600)
	if out, err := exec.Command("nbdcopy", "--flush", src, uri).CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy in: %v\n%s", err, out)
	}
	dst := c.path("dst")
	if out, err := exec.Command("nbdcopy", uri, dst).CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy out: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Fatal("nbdcopy round trip differs")
	}
	// Lose a member on the live array; qemu-img still reads the same bytes.
	c.must("fail", "r5", c.path("m2"))
	if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "raw", src, uri).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img compare after a failure: %v\n%s", err, out)
	}
	// fio's nbd engine and qemu-io on the degraded array: verified random
	// writes and reads, zeroes and discards.
	if out, _ := exec.Command("fio", "--enghelp").CombinedOutput(); bytes.Contains(out, []byte("nbd")) {
		for _, job := range [][]string{{"--rw=randwrite", "--bs=4k", "--iodepth=32"}, {"--rw=randrw", "--bsrange=512-64k", "--iodepth=16"}} {
			args := append([]string{"--name=verify", "--ioengine=nbd", "--uri=" + uri, "--size=8M", "--verify=crc32c",
				"--do_verify=1", "--verify_fatal=1", "--verify_state_save=0"}, job...)
			if out, err := exec.Command("fio", args...).CombinedOutput(); err != nil || !strings.Contains(string(out), "err= 0") {
				t.Fatalf("fio %v: %v\n%s", job, err, out)
			}
		}
	}
	if _, err := exec.LookPath("qemu-io"); err == nil {
		for _, cmd := range []string{"write -P 0xab 1M 256k", "read -P 0xab 1M 256k", "write -z 1M 64k", "read -P 0 1M 64k", "write -z -u 1536k 64k", "read -P 0 1536k 64k",
			"discard 2M 64k", "write -f -P 0xcd 3M 4k", "read -P 0xcd 3M 4k", "aio_write -P 0x11 4M 128k", "aio_flush", "read -P 0x11 4M 128k"} {
			out, err := exec.Command("qemu-io", "-f", "raw", "-c", cmd, uri).CombinedOutput()
			if err != nil || strings.Contains(string(out), "Pattern verification failed") || strings.Contains(string(out), "error") {
				t.Fatalf("qemu-io %q: %v\n%s", cmd, err, out)
			}
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if out := c.must("check", "r5"); !strings.Contains(out, "0 mismatches, 0 checksum errors") {
		t.Fatalf("check after serving: %s", out)
	}
}

// serve runs `tandem raid serve NAME` on a unix socket until stop, which
// returns what the command returned.
func (c *cli) serve(name string) (uri string, stop func() error) {
	c.t.Helper()
	sock := c.path(name + ".nbd")
	return "nbd+unix:///" + name + "?socket=" + sock, c.serveArgs(name, "--listen", "unix:"+sock)
}

// serveArgs runs `tandem raid serve NAME ARGS…` until stop.
func (c *cli) serveArgs(name string, args ...string) (stop func() error) {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		cmd := Command()
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs(append([]string{"--state-dir", c.state, "serve", name}, args...))
		served <- cmd.ExecuteContext(ctx)
	}()
	waitFor(c.t, func() bool { return (&globals{stateDir: c.state}).control(name) != nil })
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-served
	}
	c.t.Cleanup(func() { stop() })
	return stop
}

// An ext4 file system on a served RAID 5, through nbdfuse and a loop
// device (this kernel has no nbd module): files written, unmounted; the
// server stopped and the array served again; e2fsck clean, a member failed
// under the mounted file system, every file read back.
func TestServeExt4OnTheArray(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (loop devices and mount)")
	}
	for _, p := range []string{"nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "e2fsck", "mount", "umount"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed (Debian: nbdfuse, fuse3, mount, e2fsprogs)", p)
		}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("skipping: no /dev/fuse")
	}
	c := newCLI(t)
	c.must("create", "--level", "5", "--size", "24M", "--wait", "fs", c.path("m0"), c.path("m1"), c.path("m2"), c.path("m3"))
	files := map[string][]byte{}
	r := rand.New(rand.NewPCG(7, 7))
	for i, n := range []int{1, 4096, 100000, 5 << 20} {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		files[fmt.Sprintf("f%d", i)] = b
	}
	sh := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	// mount serves the array and mounts it; the returned func undoes it.
	mount := func(round int, prepare func(loop string)) (string, func()) {
		uri, stop := c.serve("fs")
		fuseDir := c.path(fmt.Sprintf("fuse%d", round))
		os.Mkdir(fuseDir, 0o755)
		pid := c.path(fmt.Sprintf("nbdfuse%d.pid", round))
		fuse := exec.Command("nbdfuse", "-P", pid, filepath.Join(fuseDir, "disk"), uri)
		if err := fuse.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { _, err := os.Stat(pid); return err == nil })
		out, err := exec.Command("losetup", "--find", "--show", filepath.Join(fuseDir, "disk")).CombinedOutput()
		if err != nil {
			fusetest.Unmount(t, fuseDir, fuse)
			t.Skipf("skipping: no loop device: %v: %s", err, out)
		}
		loop := strings.TrimSpace(string(out))
		prepare(loop)
		mnt := c.path(fmt.Sprintf("mnt%d", round))
		os.Mkdir(mnt, 0o755)
		sh("mount", "-t", "ext4", loop, mnt)
		done := false
		undo := func() {
			if done {
				return
			}
			done = true
			exec.Command("umount", mnt).Run()
			exec.Command("losetup", "-d", loop).Run()
			fusetest.Unmount(t, fuseDir, fuse)
			if err := stop(); err != nil {
				t.Errorf("serve: %v", err)
			}
		}
		t.Cleanup(undo)
		return mnt, undo
	}
	mnt, undo := mount(0, func(loop string) { sh("mkfs.ext4", "-q", "-F", loop) })
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(mnt, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	undo()
	mnt, undo = mount(1, func(loop string) { sh("e2fsck", "-f", "-n", loop) })
	c.must("fail", "fs", c.path("m2"))
	sh("sh", "-c", "echo 3 > /proc/sys/vm/drop_caches") // read the files from the array, not the cache
	for name, want := range files {
		if got, err := os.ReadFile(filepath.Join(mnt, name)); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s after remount and a member failure: %d bytes, %v", name, len(got), err)
		}
	}
	undo()
	if out := c.must("check", "fs"); !strings.Contains(out, "0 mismatches, 0 checksum errors") {
		t.Fatalf("check after the file system: %s", out)
	}
}
