package nbd

// Tests with real NBD clients from Debian. Each skips with a message naming
// the package when its program is missing; CI installs them all:
//   apt-get install libnbd-bin qemu-utils fio nbdkit e2fsprogs fuse3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/blockdev"
	"tandem/internal/fusetest"
)

// packages maps each client program to the Debian package that has it.
var packages = map[string]string{
	"nbdinfo": "libnbd-bin", "nbdcopy": "libnbd-bin", "nbdfuse": "libnbd-bin",
	"qemu-img": "qemu-utils", "qemu-io": "qemu-utils", "fio": "fio", "nbdkit": "nbdkit",
	"mkfs.ext4": "e2fsprogs", "e2fsck": "e2fsprogs", "fusermount3": "fuse3",
	"losetup": "mount", "mount": "mount", "umount": "mount",
}

func need(t testing.TB, programs ...string) {
	t.Helper()
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("skipping: %s not installed (Debian package %s)", p, packages[p])
		}
	}
}

// run runs a program and returns its combined output, failing the test
// if it exits non-zero or takes over a minute.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func randomFile(t testing.TB, dir string, size int, seed uint64) (string, [32]byte) {
	t.Helper()
	data := pattern(size, seed)
	p := filepath.Join(dir, fmt.Sprintf("rand%d", seed))
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, sha256.Sum256(data)
}

func deviceSum(t testing.TB, d blockdev.Device) [32]byte {
	t.Helper()
	b := make([]byte, d.Size())
	if _, err := d.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func fileSum(t testing.TB, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestClientNbdinfo(t *testing.T) {
	need(t, "nbdinfo")
	ts := startServer(t,
		Export{Name: "vol", Description: "tandem volume", Device: blockdev.NewMem(64 << 20), MultiConn: true},
		Export{Name: "ro", Device: blockdev.NewMem(1 << 20), ReadOnly: true})
	type export struct {
		Name        string `json:"export-name"`
		Description string `json:"description"`
		Size        int64  `json:"export-size"`
		ReadOnly    bool   `json:"is_read_only"`
		MultiConn   bool   `json:"can_multi_conn"`
		Flush       bool   `json:"can_flush"`
		FUA         bool   `json:"can_fua"`
		Trim        bool   `json:"can_trim"`
		Zero        bool   `json:"can_zero"`
		MinBlock    int    `json:"block_size_minimum"`
		MaxBlock    int    `json:"block_size_maximum"`
	}
	var info, list struct {
		Protocol string   `json:"protocol"`
		Exports  []export `json:"exports"`
	}
	if err := json.Unmarshal([]byte(run(t, "nbdinfo", "--json", ts.uri("vol"))), &info); err != nil {
		t.Fatal(err)
	}
	want := export{Name: "vol", Description: "tandem volume", Size: 64 << 20, MultiConn: true, Flush: true, FUA: true, Trim: true, Zero: true, MinBlock: 1, MaxBlock: MaxPayload}
	if info.Protocol != "newstyle-fixed" || len(info.Exports) != 1 || info.Exports[0] != want {
		t.Errorf("nbdinfo vol: %+v\nwant %+v", info, want)
	}
	// --list over TCP: both exports, each with its own flags.
	if err := json.Unmarshal([]byte(run(t, "nbdinfo", "--list", "--json", "nbd://"+ts.tcp)), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Exports) != 2 || list.Exports[0].Name != "vol" || list.Exports[1].Name != "ro" ||
		!list.Exports[1].ReadOnly || list.Exports[1].Trim || list.Exports[1].MultiConn || list.Exports[1].Size != 1<<20 {
		t.Errorf("nbdinfo --list: %+v", list)
	}
	// A name we do not serve is refused cleanly.
	if out, err := exec.Command("nbdinfo", ts.uri("nope")).CombinedOutput(); err == nil {
		t.Errorf("nbdinfo of an unknown export succeeded: %s", out)
	}
}

func TestClientNbdcopyBothWays(t *testing.T) {
	need(t, "nbdcopy")
	const size = 32 << 20
	dev := blockdev.NewMem(size)
	ts := startServer(t, Export{Name: "vol", Device: dev, MultiConn: true})
	dir := t.TempDir()
	src, sum := randomFile(t, dir, size, 1)
	// Upload over the unix socket with --flush: the data must then survive
	// a crash of the device, so FLUSH reached it.
	run(t, "nbdcopy", "--flush", src, ts.uri("vol"))
	if deviceSum(t, dev.Crash()) != sum {
		t.Fatal("after nbdcopy --flush the device's durable image differs from the source")
	}
	// Download over TCP (multi-conn: 4 connections) and compare.
	dst := filepath.Join(dir, "dst")
	run(t, "nbdcopy", "nbd://"+ts.tcp+"/vol", dst)
	if fileSum(t, dst) != sum {
		t.Fatal("downloaded copy differs from the source")
	}
	// Once more with one connection and synchronous requests.
	src2, sum2 := randomFile(t, dir, size, 2)
	run(t, "nbdcopy", "--synchronous", "-C", "1", src2, ts.uri("vol"))
	run(t, "nbdcopy", "--synchronous", ts.uri("vol"), dst)
	if fileSum(t, dst) != sum2 || deviceSum(t, dev) != sum2 {
		t.Fatal("synchronous round trip differs")
	}
}

func TestClientQemuImg(t *testing.T) {
	need(t, "qemu-img")
	const size = 16 << 20
	dev := blockdev.NewMem(size)
	ts := startServer(t, Export{Name: "vol", Device: dev})
	dir := t.TempDir()
	src, sum := randomFile(t, dir, size, 3)
	run(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, ts.uri("vol"))
	if deviceSum(t, dev) != sum {
		t.Fatal("qemu-img convert to NBD: device differs from the source")
	}
	if out := run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", src, ts.uri("vol")); !strings.Contains(out, "identical") {
		t.Fatalf("qemu-img compare: %s", out)
	}
	dst := filepath.Join(dir, "dst.qcow2")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", "nbd://"+ts.tcp+"/vol", dst)
	if out := run(t, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", dst, ts.uri("vol")); !strings.Contains(out, "identical") {
		t.Fatalf("qemu-img compare qcow2 copy: %s", out)
	}
	// A changed byte is noticed.
	dev.WriteAt([]byte{^byte(0)}, 12345)
	if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "raw", src, ts.uri("vol")).CombinedOutput(); err == nil {
		t.Fatalf("qemu-img compare missed a difference: %s", out)
	}
}

func TestClientQemuIo(t *testing.T) {
	need(t, "qemu-io")
	dev := blockdev.NewMem(8 << 20)
	ts := startServer(t, Export{Name: "vol", Device: dev})
	cmds := []string{
		"write -P 0xab 0 1M", "read -P 0xab 0 1M",
		"write -P 0x11 1M 1M", "write -z 1M 512k", "read -P 0 1M 512k", "read -P 0x11 1536k 512k",
		"write -P 0x22 2M 1M", "discard 2M 1M",
		"write -P 0x33 3M 1M", "write -z -u 3M 1M", "read -P 0 3M 1M",
		"write -f -P 0x44 4M 64k", "flush",
		"aio_write -P 0x55 5M 256k", "aio_write -P 0x66 6M 256k", "aio_flush",
		"read -P 0x55 5M 256k", "read -P 0x66 6M 256k",
		"write -P 0x77 7M 4096", "read -P 0x77 7M 4096",
		"write -P 0x88 8388607 1", "read -P 0x88 8388607 1",
	}
	args := []string{"-f", "raw"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out := run(t, "qemu-io", append(args, ts.uri("vol"))...)
	if strings.Contains(out, "failed") || strings.Contains(out, "error") {
		t.Fatalf("qemu-io reported a failure:\n%s", out)
	}
	for _, w := range []struct {
		off, n int64
		b      byte
	}{{0, 1 << 20, 0xab}, {1 << 20, 512 << 10, 0}, {1536 << 10, 512 << 10, 0x11}, {3 << 20, 1 << 20, 0}, {7 << 20, 4096, 0x77}} {
		got := make([]byte, w.n)
		dev.ReadAt(got, w.off)
		if !bytes.Equal(got, bytes.Repeat([]byte{w.b}, int(w.n))) {
			t.Errorf("device at %d: not %#x", w.off, w.b)
		}
	}
	got := make([]byte, 64<<10)
	dev.Crash().ReadAt(got, 4<<20)
	if !bytes.Equal(got, bytes.Repeat([]byte{0x44}, 64<<10)) {
		t.Error("qemu-io FUA write not durable")
	}
	// Past the end: qemu refuses or the server does; either way no damage.
	if out, err := exec.Command("qemu-io", "-f", "raw", "-c", "write -P 1 8M 4096", ts.uri("vol")).CombinedOutput(); err == nil && !strings.Contains(string(out), "rror") {
		t.Errorf("write past the end accepted: %s", out)
	}
}

func TestClientFioVerify(t *testing.T) {
	need(t, "fio")
	if out, _ := exec.Command("fio", "--enghelp").CombinedOutput(); !bytes.Contains(out, []byte("nbd")) {
		t.Skip("skipping: this fio has no nbd engine (Debian package fio)")
	}
	dev := blockdev.NewMem(32 << 20)
	ts := startServer(t, Export{Name: "vol", Device: dev, MultiConn: true})
	for _, job := range [][]string{
		{"--rw=randwrite", "--bs=4k", "--iodepth=32"},
		{"--rw=write", "--bs=256k", "--iodepth=8"},
		{"--rw=randrw", "--bsrange=512-64k", "--iodepth=16"},
	} {
		args := append([]string{"--name=verify", "--ioengine=nbd", "--uri=" + ts.uri("vol"),
			"--size=16M", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0",
			"--output-format=normal"}, job...)
		out := run(t, "fio", args...)
		if !strings.Contains(out, "err= 0") {
			t.Fatalf("fio %v:\n%s", job, out)
		}
	}
}

// TestClientNbdfuseExt4 puts an ext4 filesystem on an export through
// nbdfuse and a loop device, writes files, unmounts, serves the same
// backing file from a fresh server, mounts again and checks every file.
func TestClientNbdfuseExt4(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (loop devices and mount)")
	}
	need(t, "nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "e2fsck", "mount", "umount")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("skipping: no /dev/fuse")
	}
	dir := t.TempDir()
	backing := filepath.Join(dir, "backing.img")
	if err := os.WriteFile(backing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(backing, 64<<20); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for i, n := range []int{1, 4096, 100000, 3 << 20} {
		files[fmt.Sprintf("f%d", i)] = pattern(n, uint64(100+i))
	}

	// mountExport serves backing, mounts it through nbdfuse + loop and
	// returns the mount point and loop device; cleanup undoes it all in
	// reverse.
	mountExport := func(round int, mkfs bool) (mnt, loop string, cleanup func()) {
		dev, err := blockdev.OpenFile(backing, false)
		if err != nil {
			t.Fatal(err)
		}
		ts := startServer(t, Export{Name: "vol", Device: dev, MultiConn: true})
		var undo []func()
		cleanup = func() {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
			undo = nil
		}
		t.Cleanup(cleanup)
		undo = append(undo, func() { ts.Close(); dev.Close() })

		fuseDir := filepath.Join(dir, fmt.Sprintf("fuse%d", round))
		os.Mkdir(fuseDir, 0o755)
		pidfile := filepath.Join(dir, fmt.Sprintf("nbdfuse%d.pid", round))
		fuse := exec.Command("nbdfuse", "-P", pidfile, filepath.Join(fuseDir, "disk"), ts.uri("vol"))
		var fuseOut bytes.Buffer
		fuse.Stdout, fuse.Stderr = &fuseOut, &fuseOut
		if err := fuse.Start(); err != nil {
			t.Fatal(err)
		}
		undo = append(undo, func() { fusetest.Unmount(t, fuseDir, fuse) })
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(pidfile); err == nil {
				break
			}
			if time.Now().After(deadline) {
				cleanup()
				t.Fatalf("nbdfuse did not become ready: %s", fuseOut.String())
			}
		}
		loopOut, err := exec.Command("losetup", "--find", "--show", filepath.Join(fuseDir, "disk")).CombinedOutput()
		if err != nil {
			cleanup()
			t.Skipf("skipping: no loop device available: %v: %s", err, loopOut)
		}
		loop = strings.TrimSpace(string(loopOut))
		undo = append(undo, func() { exec.Command("losetup", "-d", loop).Run() })
		if mkfs {
			run(t, "mkfs.ext4", "-q", "-F", loop)
		} else {
			run(t, "e2fsck", "-f", "-n", loop)
		}
		mnt = filepath.Join(dir, fmt.Sprintf("mnt%d", round))
		os.Mkdir(mnt, 0o755)
		run(t, "mount", "-t", "ext4", loop, mnt)
		undo = append(undo, func() { exec.Command("umount", mnt).Run() })
		return mnt, loop, cleanup
	}

	verify := func(mnt string) {
		t.Helper()
		for name, want := range files {
			got, err := os.ReadFile(filepath.Join(mnt, name))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: %d bytes, %v; want %d bytes as written", name, len(got), err, len(want))
			}
		}
	}

	mnt, loop, cleanup := mountExport(0, true)
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(mnt, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(t, "umount", mnt)
	run(t, "mount", "-t", "ext4", loop, mnt) // remount through the same stack
	verify(mnt)
	cleanup()

	// A fresh server on the same backing file: the filesystem is clean
	// (e2fsck -n) and every file is there.
	mnt, _, cleanup = mountExport(1, false)
	verify(mnt)
	cleanup()
}
