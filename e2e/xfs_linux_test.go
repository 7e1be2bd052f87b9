package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/testbed"
)

// TestXFSFilesystemKeepsEveryFsyncedFile: a group volume + filesystem
// (xfs, made on first start) + service + vip; a writer on node1 makes
// files one after another, each fsynced with its directory before it is
// logged (outside the volume) with its sha256; node1 is killed while it
// writes. node2 mounts the file system (xfs replays its log) and holds
// every logged file with the logged content.
func TestXFSFilesystemKeepsEveryFsyncedFile(t *testing.T) {
	for _, p := range []string{"nbdfuse", "fusermount3", "losetup", "mkfs.xfs", "blkid", "unshare", "nsenter"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed (Debian: nbdfuse, fuse3, xfsprogs, util-linux)", p)
		}
	}
	const mnt = "/mnt/tandem-e2e-xfs"
	// mkfs.xfs makes nothing under 300 MB.
	spec := testbed.Spec{Groups: []testbed.GroupSpec{{Name: "files", Volume: "data", VolumeSize: "320MiB", Mount: mnt, FSType: "xfs"}}}
	r := newRun(t, spec)
	if err := r.c.Start(); err != nil {
		t.Fatal(err)
	}
	r.waitRunning("files", "node1", 120*time.Second)
	in := r.agentSh
	if fs := in("node1", "stat -f -c %T "+mnt); fs != "xfs" {
		t.Fatalf("node1 mounted %s at %s, want xfs", fs, mnt)
	}
	logPath := filepath.Join(r.bed.Dir, "xfs-fsynced.log")
	// sync FILE DIR: fsync(2) of the file, then of the directory that
	// names it; only then is the file logged.
	writer, err := r.c.AgentCommand("node1", "sh", "-c", `i=0; while :; do i=$((i+1)); f=`+mnt+`/f$i
head -c $((4096 + i * 1000)) /dev/urandom > $f.tmp && mv $f.tmp $f && sync $f `+mnt+` || exit 1
echo "f$i $(sha256sum < $f | cut -d' ' -f1)" >> `+logPath+`; done`)
	if err != nil {
		t.Fatal(err)
	}
	writerOut, _ := os.Create(logPath + ".err")
	defer writerOut.Close()
	writer.Stdout, writer.Stderr = writerOut, writerOut
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	go writer.Wait()
	logged := func() map[string]string {
		f, err := os.Open(logPath)
		if err != nil {
			return nil
		}
		defer f.Close()
		m := map[string]string{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if name, sum, ok := strings.Cut(sc.Text(), " "); ok && len(sum) == 64 {
				m[name] = sum
			}
		}
		return m
	}
	for deadline := time.Now().Add(60 * time.Second); len(logged()) < 30; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath + ".err")
			t.Fatalf("the writer logged %d files in 60 s: %s", len(logged()), b)
		}
	}
	f := r.bed.Kill("node1") // the writer with it, mid-file
	want := logged()
	r.waitRunning("files", "node2", 60*time.Second)
	if fs := in("node2", "stat -f -c %T "+mnt); fs != "xfs" {
		t.Fatalf("node2 mounted %s at %s, want xfs", fs, mnt)
	}
	got := map[string]string{}
	for _, l := range strings.Split(in("node2", "cd "+mnt+" && for f in f*; do case $f in *.tmp) continue;; esac; echo \"$f $(sha256sum < $f | cut -d' ' -f1)\"; done"), "\n") {
		if name, sum, ok := strings.Cut(l, " "); ok {
			got[name] = sum
		}
	}
	lost := 0
	for name, sum := range want {
		if got[name] != sum {
			lost++
			t.Errorf("%s: fsynced with sha256 %s on node1, node2 reads %q", name, sum, got[name])
		}
	}
	t.Logf("%d files fsynced before the kill at %s, %d on node2, %d lost", len(want), f.At.Format("15:04:05.000"), len(got), lost)
}

// agentSh runs script with sh on host h in its agent's mount namespace
// and returns its output; an error fails the test.
func (r *run) agentSh(h, script string) string {
	r.t.Helper()
	cmd, err := r.c.AgentCommand(h, "sh", "-c", script)
	if err != nil {
		r.t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("%s: %s: %v\n%s", h, script, err, out)
	}
	return strings.TrimSpace(string(out))
}
