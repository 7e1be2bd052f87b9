package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"tandem/internal/testbed"
)

// TestBedReleasesStorageOnClose (and the attach mode in the status): a
// node killed with its file system mounted (nbdfuse + loop) would leave a
// loop device bound to a dead FUSE file; the kill path detaches it, and
// the survivor holds its own. After Close no loop device of the bed is
// bound and none of its FUSE connections is left, so nothing of it can
// hang `sync` for the machine.
func TestBedReleasesStorageOnClose(t *testing.T) {
	for _, p := range []string{"nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "e2fsck", "blkid", "unshare", "nsenter"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed (Debian: nbdfuse, fuse3, e2fsprogs, util-linux)", p)
		}
	}
	const mnt = "/mnt/tandem-e2e-close"
	spec := testbed.Spec{Groups: []testbed.GroupSpec{{Name: "db", Volume: "pg", VolumeSize: "64MiB", Mount: mnt}}}
	r := newRun(t, spec)
	if err := r.c.Start(); err != nil {
		t.Fatal(err)
	}
	r.waitRunning("db", "node1", 60*time.Second)
	cmd, err := r.c.AgentCommand("node1", "sh", "-c", "head -c 1000000 /dev/urandom > "+mnt+"/f && sync "+mnt+"/f")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("write on node1: %v\n%s", err, out)
	}
	// The attach mode in the status (item 4 of issue 12): this kernel
	// decides which, but it is one of the two, on the holder.
	st, err := r.c.Status(r.ctx, "node1")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Volumes) != 1 || (st.Volumes[0].Attach != "nbd" && st.Volumes[0].Attach != "nbdfuse+loop") {
		t.Errorf("node1's status shows no attach mode: %+v", st.Volumes)
	} else {
		t.Logf("node1 attaches its volume by %s", st.Volumes[0].Attach)
	}
	before, beforeConns := r.bed.BedStorage()
	if len(before) == 0 || len(beforeConns) == 0 {
		t.Fatalf("node1 holds no loop device or FUSE connection of the bed: %v, %v", before, beforeConns)
	}
	r.bed.Kill("node1")
	// The kill path's cleanup: node1's loop devices are detached (at
	// once, or at their last close if its file system is still being
	// taken off) and its FUSE connections are gone.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		bound := boundTo(before)
		if len(bound) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after node1's kill its loop devices are still bound: %v", bound)
		}
	}
	r.waitRunning("db", "node2", 30*time.Second)
	loops, conns := r.bed.BedStorage()
	t.Logf("before the kill: %v, FUSE %v; after it: loops %v, FUSE %v", before, beforeConns, loops, conns)
	if len(loops) == 0 || len(conns) == 0 {
		t.Fatalf("want node2's loop device and FUSE connection, got %v and %v", loops, conns)
	}
	for d, back := range loops {
		if strings.Contains(back, "/node1/") {
			t.Errorf("after node1's kill the bed still has its loop device %s (%s)", d, back)
		}
	}
	if err := r.bed.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	for d, now := range boundTo(loops) {
		t.Errorf("after Close %s is still bound to %s (was %s)", d, now, loops[d])
	}
	for _, n := range append(conns, beforeConns...) {
		if _, err := os.Stat(filepath.Join("/sys/fs/fuse/connections", strconv.Itoa(n))); err == nil {
			t.Errorf("after Close FUSE connection %d is still there", n)
		}
	}
	if l, c := r.bed.BedStorage(); len(l) > 0 || len(c) > 0 {
		t.Errorf("after Close the bed still holds loops %v, FUSE connections %v", l, c)
	}
}

// boundTo returns which of loops (device → backing file) are still bound
// to that file, by device: to its path, or to its path inside its FUSE
// mount once the mount's namespace is gone ("/disk").
func boundTo(loops map[string]string) map[string]string {
	out := map[string]string{}
	for d, back := range loops {
		b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(d), "loop", "backing_file"))
		now := strings.TrimSpace(string(b))
		if err == nil && now != "" && (now == back || strings.HasSuffix(back, now)) {
			out[d] = now
		}
	}
	return out
}
