package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/events"
	"tandem/internal/state"
	"tandem/internal/testbed"
)

// A group with a replicated volume (volume, vip, nbd_export) fails over
// with its data (issue 12): a client writes through the VIP's NBD export
// on node1, node1 is killed, node2 takes the group over and serves every
// byte the client saw acknowledged; node1 comes back, is resynced, and
// the group stays on node2.
func TestVolumeGroupFailsOverWithItsData(t *testing.T) {
	if _, err := exec.LookPath("nbdcopy"); err != nil {
		t.Skip("nbdcopy not installed (Debian: libnbd-bin)")
	}
	spec := testbed.Spec{Groups: []testbed.GroupSpec{{Name: "db", Volume: "pg", VolumeSize: "32MiB"}}}
	r := newRun(t, spec)
	if err := r.c.Start(); err != nil {
		t.Fatal(err)
	}
	r.waitRunning("db", "node1", 30*time.Second)
	uri := fmt.Sprintf("nbd://%s:%d/pg", testbed.VIPAddr(0), testbed.NBDPort)

	data := make([]byte, 8<<20)
	rand.Read(data)
	in := filepath.Join(r.bed.Dir, "written")
	if err := os.WriteFile(in, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r.client("nbdcopy", "--flush", in, uri)
	want := sha256.Sum256(data)

	f := r.bed.Kill("node1")
	r.waitRunning("db", "node2", 20*time.Second)
	t.Logf("the group runs on node2 %v after the kill", time.Since(f.At).Round(time.Millisecond))
	tk := r.waitEvent("node2", f.At, 10*time.Second, func(e events.Event) bool { return e.Kind == events.Takeover }, "the takeover event")
	for _, k := range []string{"detect_ms", "decide_ms", "promote_ms", "vip_ms", "export_ms", "total_ms"} {
		if _, ok := tk.Attrs[k]; !ok {
			t.Errorf("the takeover event has no %s: %v", k, tk.Attrs)
		}
	}
	t.Logf("takeover: %v", tk.Attrs)
	if got := r.readVolume(uri, len(data)); sha256.Sum256(got) != want {
		t.Fatalf("node2 serves other data than node1 acknowledged: %s", firstDiff(got, data))
	}
	// Written on node2 alone: node1's replica is now Outdated, and the
	// group must never go back to it until it is resynced.
	more := bytes.Repeat([]byte{0xA5}, 1<<20)
	moreFile := filepath.Join(r.bed.Dir, "more")
	os.WriteFile(moreFile, more, 0o600)
	r.client("nbdcopy", "--flush", moreFile, uri)
	copy(data, more)
	want = sha256.Sum256(data)

	r.waitReplica("node2", "node1", state.DiskOutdated, "node1's replica recorded Outdated once node2 wrote alone")
	if err := r.c.Start("node1"); err != nil {
		t.Fatal(err)
	}
	r.waitReplica("node2", "node1", state.DiskUpToDate, "node1's replica resynced and recorded UpToDate")
	v, err := r.c.GroupView(r.ctx, "db")
	if err != nil || v.Holder != "node2" {
		t.Fatalf("after node1 came back: %+v %v", v, err)
	}
	if got := r.readVolume(uri, len(data)); sha256.Sum256(got) != want {
		t.Fatalf("after node1 came back, node2 serves other data: %s", firstDiff(got, data))
	}
}

// waitReplica waits until host h's status records node's replica of the
// first volume as disk.
func (r *run) waitReplica(h, node, disk, what string) {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last any
	for time.Now().Before(deadline) {
		s, err := r.c.Status(r.ctx, h)
		if err == nil && len(s.Volumes) > 0 {
			last = s.Volumes[0]
			if rep, ok := s.Volumes[0].Replicas[node]; ok && rep.Disk == disk {
				return
			}
		}
		r.sleep(50 * time.Millisecond)
	}
	r.t.Fatalf("%s: timed out; last %+v", what, last)
}

// client runs a command on the client host and fails the test on error.
func (r *run) client(name string, args ...string) []byte {
	r.t.Helper()
	out, err := r.bed.Command("client", name, args...).CombinedOutput()
	if err != nil {
		r.t.Fatalf("client: %s %v: %v\n%s", name, args, err, out)
	}
	return out
}

// readVolume reads the first n bytes of the NBD export at uri from the
// client host.
func (r *run) readVolume(uri string, n int) []byte {
	r.t.Helper()
	out := filepath.Join(r.bed.Dir, fmt.Sprintf("read-%d", time.Now().UnixNano()))
	r.client("nbdcopy", uri, out)
	b, err := os.ReadFile(out)
	if err != nil {
		r.t.Fatal(err)
	}
	if len(b) < n {
		r.t.Fatalf("read %d bytes of %s, want at least %d", len(b), uri, n)
	}
	return b[:n]
}

// The active node of a volume group is frozen, then cut off: each time
// the other node takes the group over with every acknowledged byte, and
// the deposed primary, thawed or reconnected, neither serves nor
// overwrites anything: its replica is resynced from the new primary.
func TestVolumeGroupSurvivesFreezeAndCutOff(t *testing.T) {
	if _, err := exec.LookPath("nbdcopy"); err != nil {
		t.Skip("nbdcopy not installed (Debian: libnbd-bin)")
	}
	spec := testbed.Spec{Groups: []testbed.GroupSpec{{Name: "db", Volume: "pg", VolumeSize: "16MiB"}}}
	r := newRun(t, spec)
	if err := r.c.Start(); err != nil {
		t.Fatal(err)
	}
	r.waitRunning("db", "node1", 30*time.Second)
	uri := fmt.Sprintf("nbd://%s:%d/pg", testbed.VIPAddr(0), testbed.NBDPort)
	data := make([]byte, 4<<20)
	write := func(what string) {
		t.Helper()
		rand.Read(data)
		f := filepath.Join(r.bed.Dir, what)
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
		r.client("nbdcopy", "--flush", f, uri)
	}
	check := func(on string) {
		t.Helper()
		if got := r.readVolume(uri, len(data)); sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatalf("%s serves other data than was acknowledged: %s", on, firstDiff(got, data))
		}
	}

	write("before-freeze")
	f := r.bed.Freeze("node1")
	r.waitRunning("db", "node2", 20*time.Second)
	t.Logf("freeze: the group runs on node2 %v after node1 froze", time.Since(f.At).Round(time.Millisecond))
	check("node2")
	write("while-frozen")
	r.waitReplica("node2", "node1", state.DiskOutdated, "frozen node1 recorded Outdated")
	r.bed.Thaw("node1")
	r.waitReplica("node2", "node1", state.DiskUpToDate, "thawed node1 resynced")
	check("node2, node1 thawed")

	write("before-cutoff")
	f, err := r.bed.CutOff("node2")
	if err != nil {
		t.Fatal(err)
	}
	r.waitRunning("db", "node1", 20*time.Second)
	t.Logf("cut off: the group runs on node1 %v after node2 was cut off", time.Since(f.At).Round(time.Millisecond))
	check("node1")
	write("while-cut-off")
	r.waitReplica("node1", "node2", state.DiskOutdated, "cut-off node2 recorded Outdated")
	if _, err := r.bed.Heal(); err != nil {
		t.Fatal(err)
	}
	r.waitReplica("node1", "node2", state.DiskUpToDate, "reconnected node2 resynced")
	check("node1, node2 back")
}

// A replica that lacks writes is refused as a failover target, with the
// reason; once resynced it is accepted, and serves every byte.
func TestVolumeGroupRefusesAStaleTarget(t *testing.T) {
	if _, err := exec.LookPath("nbdcopy"); err != nil {
		t.Skip("nbdcopy not installed (Debian: libnbd-bin)")
	}
	spec := testbed.Spec{Groups: []testbed.GroupSpec{{Name: "db", Volume: "pg", VolumeSize: "16MiB"}}}
	r := newRun(t, spec)
	if err := r.c.Start(); err != nil {
		t.Fatal(err)
	}
	r.waitRunning("db", "node1", 30*time.Second)
	uri := fmt.Sprintf("nbd://%s:%d/pg", testbed.VIPAddr(0), testbed.NBDPort)
	// The replication link alone goes down (tandem volume disconnect on
	// the primary, through its control socket): node2 stays in the
	// cluster but misses what is written now.
	volumeCLI := func(h string, args ...string) {
		t.Helper()
		args = append([]string{"volume", "--state-dir", r.c.StateDir(h)}, args...)
		if out, err := r.bed.Command(h, r.bed.Binary, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s: tandem %v: %v\n%s", h, args, err, out)
		}
	}
	volumeCLI("node1", "disconnect", "pg")
	data := make([]byte, 2<<20)
	rand.Read(data)
	f := filepath.Join(r.bed.Dir, "alone")
	os.WriteFile(f, data, 0o600)
	r.client("nbdcopy", "--flush", f, uri)
	r.waitReplica("node1", "node2", state.DiskOutdated, "node2 recorded Outdated")
	_, err := r.c.Client("witness").Failover(r.ctx, "db", "node2")
	if err == nil || !strings.Contains(err.Error(), "holds an Outdated replica of volume pg") {
		t.Fatalf("failover to the Outdated node2: %v", err)
	}
	t.Logf("refused as it should: %v", err)
	volumeCLI("node1", "connect", "pg")
	r.waitReplica("node1", "node2", state.DiskUpToDate, "node2 resynced")
	if _, err := r.c.Client("witness").Failover(r.ctx, "db", "node2"); err != nil {
		t.Fatalf("failover to the resynced node2: %v", err)
	}
	r.waitRunning("db", "node2", 20*time.Second)
	if got := r.readVolume(uri, len(data)); sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("node2 serves other data: %s", firstDiff(got, data))
	}
}

// tandem failover --force moves a volume group onto a stale replica: it
// says what is lost, the replica is promoted by force, and the group
// runs there without the writes it lacked.
func TestVolumeGroupForcedOntoAStaleReplica(t *testing.T) {
	if _, err := exec.LookPath("nbdcopy"); err != nil {
		t.Skip("nbdcopy not installed (Debian: libnbd-bin)")
	}
	spec := testbed.Spec{Groups: []testbed.GroupSpec{{Name: "db", Volume: "pg", VolumeSize: "16MiB"}}}
	r := newRun(t, spec)
	if err := r.c.Start(); err != nil {
		t.Fatal(err)
	}
	r.waitRunning("db", "node1", 30*time.Second)
	uri := fmt.Sprintf("nbd://%s:%d/pg", testbed.VIPAddr(0), testbed.NBDPort)
	args := []string{"volume", "--state-dir", r.c.StateDir("node1"), "disconnect", "pg"}
	if out, err := r.bed.Command("node1", r.bed.Binary, args...).CombinedOutput(); err != nil {
		t.Fatalf("tandem %v: %v\n%s", args, err, out)
	}
	data := bytes.Repeat([]byte{0x5A}, 1<<20)
	f := filepath.Join(r.bed.Dir, "alone")
	os.WriteFile(f, data, 0o600)
	r.client("nbdcopy", "--flush", f, uri)
	r.waitReplica("node1", "node2", state.DiskOutdated, "node2 recorded Outdated")

	// Asked of a data node, not the leader: its copy of the state must
	// have the forced record before it checks the move (a follower
	// refused the move against its older copy and kept the record).
	lost, err := r.c.Client("node2").ForceFailover(r.ctx, "db", "node2")
	if err != nil {
		t.Fatalf("forced failover: %v", err)
	}
	if len(lost) != 1 || !strings.Contains(lost[0], "volume pg: node2's replica is Outdated") || !strings.Contains(lost[0], "lost") {
		t.Fatalf("the forced failover says %q, want what volume pg loses", lost)
	}
	t.Logf("warned: %s", lost[0])
	r.waitRunning("db", "node2", 20*time.Second)
	r.waitReplica("node2", "node2", state.DiskUpToDate, "node2 recorded UpToDate by its own report")
	if got := r.readVolume(uri, len(data)); bytes.Equal(got, data) {
		t.Fatal("node2 serves the writes it was recorded to lack")
	}
}

// An async volume group whose primary goes ahead of a frozen secondary:
// raft records the secondary Outdated before the writes that went ahead
// are acknowledged, so when the primary dies the cluster does not promote
// the stale copy (the standalone form cannot promise this:
// TestVolumeAsyncAheadLosesAtMostMaxLag); the group waits for the old
// primary and comes back with every acknowledged byte.
func TestVolumeGroupAsyncAheadNeverPromotesTheStalePeer(t *testing.T) {
	if _, err := exec.LookPath("nbdcopy"); err != nil {
		t.Skip("nbdcopy not installed (Debian: libnbd-bin)")
	}
	spec := testbed.Spec{Groups: []testbed.GroupSpec{{Name: "db", Volume: "pg", VolumeSize: "16MiB",
		VolumeMode: "async", VolumeOnLag: "ahead", VolumeMaxLag: "64KiB"}}}
	r := newRun(t, spec)
	if err := r.c.Start(); err != nil {
		t.Fatal(err)
	}
	r.waitRunning("db", "node1", 30*time.Second)
	r.waitReplica("node1", "node2", state.DiskUpToDate, "node2 recorded UpToDate")
	uri := fmt.Sprintf("nbd://%s:%d/pg", testbed.VIPAddr(0), testbed.NBDPort)
	r.bed.Freeze("node2")
	data := make([]byte, 4<<20)
	rand.Read(data)
	f := filepath.Join(r.bed.Dir, "ahead")
	os.WriteFile(f, data, 0o600)
	r.client("nbdcopy", "--flush", "--request-size=1048576", "--requests=1", f, uri)
	r.waitReplica("node1", "node2", state.DiskOutdated, "node2 recorded Outdated once node1 went ahead")
	r.bed.Kill("node1")
	r.bed.Thaw("node2")
	// node2 is up and the holder is dead: only the record keeps the group
	// off node2's stale copy.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if v, err := r.c.GroupView(r.ctx, "db"); err == nil && v.Holder == "node2" {
			t.Fatalf("the group went to node2, whose replica lacks what node1 acknowledged: %+v", v)
		}
		r.sleep(100 * time.Millisecond)
	}
	if err := r.c.Start("node1"); err != nil {
		t.Fatal(err)
	}
	r.waitRunning("db", "node1", 30*time.Second)
	if got := r.readVolume(uri, len(data)); sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("node1 serves other data than it acknowledged: %s", firstDiff(got, data))
	}
}

// A group of volume, ext4 file system, service and VIP (issue 12's
// classic stack without the database): a file written and synced on
// node1 is there, byte for byte, when node2 has taken the group over
// after node1 was killed. Each agent runs in a mount namespace of its
// own, so node1's mount dies with it, as on a machine that crashed.
func TestFilesystemGroupFailsOverWithItsFiles(t *testing.T) {
	for _, p := range []string{"nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "e2fsck", "blkid", "unshare", "nsenter"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed (Debian: nbdfuse, fuse3, e2fsprogs, util-linux)", p)
		}
	}
	const mnt = "/mnt/tandem-e2e-pg"
	spec := testbed.Spec{Groups: []testbed.GroupSpec{{Name: "db", Volume: "pg", VolumeSize: "64MiB", Mount: mnt}}}
	r := newRun(t, spec)
	if err := r.c.Start(); err != nil {
		t.Fatal(err)
	}
	r.waitRunning("db", "node1", 60*time.Second)
	in := r.agentSh
	want := in("node1", "head -c 3000000 /dev/urandom > "+mnt+"/f && sync "+mnt+"/f && sha256sum < "+mnt+"/f")
	if out, err := exec.Command("sh", "-c", "grep -c "+mnt+" /proc/self/mountinfo").Output(); strings.TrimSpace(string(out)) != "0" {
		t.Errorf("the agent's mount shows in the test's namespace: %s %v", out, err)
	}
	f := r.bed.Kill("node1")
	r.waitRunning("db", "node2", 30*time.Second)
	if got := in("node2", "sha256sum < "+mnt+"/f"); got != want {
		t.Fatalf("node2 reads %s, node1 wrote %s", got, want)
	}
	tk := r.waitEvent("node2", f.At, 10*time.Second, func(e events.Event) bool { return e.Kind == events.Takeover }, "the takeover event")
	if _, ok := tk.Attrs["mount_ms"]; !ok {
		t.Errorf("the takeover event has no mount_ms: %v", tk.Attrs)
	}
	t.Logf("takeover: %v", tk.Attrs)
}

// TestFilesystemGroupStopsWhenBothNodesStopAtOnce: SIGTERM to both data
// nodes at once (systemctl stop on both). The peer's agent closes the
// replication link as it exits and placement puts the group nowhere
// while the holder still stops it; the holder's unmount must write, so
// its sync volume must outdate the peer, which raft refused as a stale
// epoch: the unmount hung and the agent never exited (a new user's walk,
// 2 of 2). Both agents now exit, and started again the group runs on the
// old holder with the file written before the stop.
func TestFilesystemGroupStopsWhenBothNodesStopAtOnce(t *testing.T) {
	for _, p := range []string{"nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "e2fsck", "blkid", "unshare", "nsenter"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed (Debian: nbdfuse, fuse3, e2fsprogs, util-linux)", p)
		}
	}
	const mnt = "/mnt/tandem-e2e-stopboth"
	spec := testbed.Spec{Groups: []testbed.GroupSpec{{Name: "db", Volume: "pg", VolumeSize: "64MiB", Mount: mnt}}}
	r := newRun(t, spec)
	if err := r.c.Start(); err != nil {
		t.Fatal(err)
	}
	r.waitRunning("db", "node1", 60*time.Second)
	r.waitReplica("node1", "node2", state.DiskUpToDate, "node2 recorded UpToDate")
	// Written, not synced: the unmount writes it.
	want := r.agentSh("node1", "head -c 2000000 /dev/urandom > "+mnt+"/f && sha256sum < "+mnt+"/f")
	for _, h := range []string{"node2", "node1"} {
		if _, err := r.c.Term(h); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range []string{"node1", "node2"} {
		if err := r.c.WaitExited(r.ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.c.Start("node1", "node2"); err != nil {
		t.Fatal(err)
	}
	r.waitRunning("db", "node1", 60*time.Second)
	if got := r.agentSh("node1", "sha256sum < "+mnt+"/f"); got != want {
		t.Fatalf("after both stopped and started: node1 reads %s, wrote %s", got, want)
	}
}
