package e2e

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"tandem/internal/testbed"
)

// A busy unmount's force_unmount kills what holds this node's mount and
// nothing else: not processes of other mount namespaces whose working
// directory or open files only share the mount point's path (a
// container's, or on the test bed another node's). Found by `tandem bench
// storage` when holders were matched by path: a cut-off primary's stop,
// stuck on its suspended volume, killed the new primary's postgres (same
// path, the other node's mount) 22 s after the takeover, and the group
// went down; fixed by b29bc4b (holders found by mount ID). Here a
// bystander in a mount namespace of its own sits in a directory of the
// same path on the root file system; node1's file system is held busy,
// and a planned move makes node1 force the unmount: the bystander lives.
func TestFilesystemForceUnmountSparesOtherMountNamespaces(t *testing.T) {
	needRoot(t)
	for _, p := range []string{"nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "e2fsck", "blkid", "unshare", "nsenter"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed (Debian: libnbd-bin, fuse3, e2fsprogs, util-linux)", p)
		}
	}
	const mnt = "/mnt/tandem-e2e-holders"
	r := newRun(t, testbed.Spec{Groups: []testbed.GroupSpec{{Name: "db", Volume: "pg", VolumeSize: "64MiB", Mount: mnt}}})
	if err := r.c.Start(); err != nil {
		t.Fatal(err)
	}
	r.waitRunning("db", "node1", 60*time.Second)

	bystander := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", "mkdir -p "+mnt+" && cd "+mnt+" && exec sleep 600")
	if err := bystander.Start(); err != nil {
		t.Fatal(err)
	}
	byDone := make(chan error, 1)
	go func() { byDone <- bystander.Wait() }()
	t.Cleanup(func() { bystander.Process.Kill() })

	holder, err := r.c.AgentCommand("node1", "sh", "-c", "cd "+mnt+" && exec sleep 600")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.bed.Start(holder); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-holder.Process.Pid, syscall.SIGKILL) })
	r.waitUntil(5*time.Second, "the bystander and the holder in place", func() bool {
		return cwdOfTree(bystander.Process.Pid) == mnt && cwdOfTree(holder.Process.Pid) == mnt
	})

	if _, err := r.c.Client("witness").Failover(r.ctx, "db", "node2"); err != nil {
		t.Fatal(err)
	}
	r.waitRunning("db", "node2", 30*time.Second)
	if cwdOfTree(holder.Process.Pid) != "" {
		t.Error("node1's own holder outlived the forced unmount")
	}
	select {
	case err := <-byDone:
		t.Fatalf("node1's forced unmount killed a process of another mount namespace that only shares the path %s: %v", mnt, err)
	case <-time.After(500 * time.Millisecond):
	}
}

// cwdOfTree is the working directory of pid's youngest descendant (the
// sleep that sh and chrt/nsenter/unshare exec or fork into), or of pid.
func cwdOfTree(pid int) string {
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children")
		if err != nil || len(b) == 0 {
			break
		}
		child, err := strconv.Atoi(string(b[:len(b)-1]))
		if err != nil {
			break
		}
		pid = child
	}
	cwd, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
	return cwd
}
