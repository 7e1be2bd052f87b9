package filesystem

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/internal/blockdev"
	"tandem/internal/nbd"
	"tandem/internal/resource"
)

func TestParseMountInfo(t *testing.T) {
	table := `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
35 22 7:3 / /srv/pg\040data rw,noatime shared:5 - ext4 /dev/loop3 rw
36 22 7:4 / /mnt rw - xfs /dev/loop4 rw
37 36 7:5 / /mnt rw - ext4 /dev/loop5 rw`
	if m, ok := parseMountInfo(table, "/srv/pg data"); !ok || m.source != "/dev/loop3" || m.fstype != "ext4" {
		t.Fatalf("escaped mount point: %+v %v", m, ok)
	}
	if m, ok := parseMountInfo(table, "/mnt"); !ok || m.source != "/dev/loop5" {
		t.Fatalf("the last mount on a point wins: %+v", m)
	}
	if _, ok := parseMountInfo(table, "/srv"); ok {
		t.Fatal("found a mount that is not there")
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []Config{
		{Source: "nbd://x/y", Mount: "rel", FSType: "ext4", StateDir: "/tmp"},
		{Source: "nbd://x/y", Mount: "/", FSType: "ext4", StateDir: "/tmp"},
		{Source: "nbd://x/y", Mount: "/srv", FSType: "ntfs", StateDir: "/tmp"},
		{Source: "/dev/sdb", Mount: "/srv", FSType: "ext4", StateDir: "/tmp"},
		{Source: "nbd://x/y", Mount: "/srv", FSType: "ext4"},
	} {
		if _, err := New(c, nil); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// The agent for real (root, nbdfuse, loop, mkfs): a blank volume served
// by our NBD server gets a file system, is mounted, holds files; a
// process with its working directory in the mount is killed by a stop
// after force_unmount; the next start finds the files; an unmount behind
// the agent's back is reported; a restarted agent cleans its
// predecessor's attachment.
func TestFilesystemForReal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (loop devices, mount)")
	}
	for _, p := range []string{"nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "e2fsck", "blkid", "mount", "umount"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed (Debian: nbdfuse, fuse3, mount, e2fsprogs, util-linux)", p)
		}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	dir := t.TempDir()
	dev := blockdev.NewMem(64 << 20)
	sock := filepath.Join(dir, "nbd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := nbd.NewServer(nil, nbd.Export{Name: "pg", Device: dev, MultiConn: true})
	go srv.Serve(ln)
	defer srv.Close()
	cfg := Config{Source: "nbd+unix:///pg?socket=" + sock, Mount: filepath.Join(dir, "mnt"), FSType: "ext4",
		Options: "noatime", Fsck: true, Mkfs: true, ForceUnmount: 300 * time.Millisecond, StateDir: filepath.Join(dir, "state")}
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	defer a.Stop(context.Background())
	if err := a.Monitor(ctx); !resource.IsNotRunning(err) {
		t.Fatalf("monitor before start: %v", err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Mode() != "nbdfuse+loop" {
		t.Logf("mode %s", a.Mode())
	}
	if err := a.Start(ctx); err != nil {
		t.Fatalf("a second start: %v", err)
	}
	if err := a.Monitor(ctx); err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte("tandem "), 100000)
	file := filepath.Join(cfg.Mount, "f")
	if err := os.WriteFile(file, want, 0o644); err != nil {
		t.Fatal(err)
	}
	holder := exec.Command("sleep", "60")
	holder.Dir = cfg.Mount
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- holder.Wait() }()
	if err := a.Stop(ctx); err != nil {
		t.Fatalf("stop with a holder: %v", err)
	}
	select {
	case err := <-done:
		if ws, ok := holder.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("the holder ended without a signal: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the holder still runs after the stop")
	}
	if _, ok := mountAt(cfg.Mount); ok {
		t.Fatal("still mounted after stop")
	}
	if err := a.Monitor(ctx); !resource.IsNotRunning(err) {
		t.Fatalf("monitor after stop: %v", err)
	}
	if err := a.Stop(ctx); err != nil {
		t.Fatalf("a second stop: %v", err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the file after a stop and a start: %v", err)
	}
	if out, err := exec.Command("umount", cfg.Mount).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v %s", err, out)
	}
	if err := a.Monitor(ctx); err == nil || resource.IsNotRunning(err) {
		t.Fatalf("monitor of an attached but unmounted device: %v", err)
	}
	// A new agent (after a crash) finds the attachment and starts on it,
	// then stops cleanly.
	b, _ := New(cfg, nil)
	if err := b.Start(ctx); err != nil {
		t.Fatalf("a restarted agent's start: %v", err)
	}
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, "device")); err == nil {
		t.Fatal("the device record survived the stop")
	}
	if out, _ := exec.Command("losetup", "-j", a.fuseFile()).CombinedOutput(); strings.TrimSpace(string(out)) != "" {
		t.Fatalf("a loop device left: %s", out)
	}
}
