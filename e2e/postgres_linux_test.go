package e2e

import (
	"fmt"
	"os/exec"
	"testing"
	"time"

	"tandem/internal/events"
	"tandem/internal/state"
	"tandem/internal/testbed"
)

// PostgreSQL on a replicated ext4 volume (issue 12's proof): the group is
// volume, file system, postgres (an exec resource), VIP. A client on the
// client host commits transactions through the VIP all along and records
// each one it saw committed; the active node is killed, then the new one
// frozen, then the other cut off. After each failover every recorded
// commit is in the database the new node serves: no committed
// transaction is lost.
func TestPostgresFailoverLosesNoCommittedTransaction(t *testing.T) {
	needRoot(t)
	if err := testbed.HavePostgres(); err != nil {
		t.Skip(err)
	}
	for _, p := range []string{"nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "e2fsck", "blkid", "nsenter"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed (Debian: libnbd-bin, fuse3, e2fsprogs, util-linux)", p)
		}
	}
	g := testbed.PostgresGroup("db", "/mnt/tandem-e2e-postgres")
	r := newRun(t, testbed.Spec{Groups: []testbed.GroupSpec{g}})
	if err := r.c.Start(); err != nil {
		t.Fatal(err)
	}
	r.waitRunning("db", "node1", 60*time.Second) // mkfs and initdb
	client, err := r.bed.StartPGClient(testbed.VIPAddr(g.VIP), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Stop)
	r.waitCommits(client, 300)

	failover := func(what string, f testbed.Fault, to string) {
		t.Helper()
		r.waitRunning("db", to, 30*time.Second)
		var fo testbed.PGFailover
		r.waitUntil(20*time.Second, what+": the client commits on the new server", func() bool {
			h, _ := client.Since(f.At.Add(-5 * time.Second))
			var ok bool
			fo, ok = testbed.PGOutage(h, f.At)
			return ok
		})
		r.checkNoneLost(client, what)
		tk := r.waitEvent(to, f.At, 10*time.Second, func(e events.Event) bool { return e.Kind == events.Takeover }, what+": the takeover event")
		t.Logf("%s: client-seen outage %.0f ms (last commit on the old server → first on the new); takeover %v", what, fo.OutageMs, tk.Attrs)
		for _, k := range []string{"detect_ms", "decide_ms", "promote_ms", "mount_ms", "service_ms", "total_ms"} {
			if _, ok := tk.Attrs[k]; !ok {
				t.Errorf("%s: the takeover event has no %s", what, k)
			}
		}
		r.waitCommits(client, client.Commits()+100)
	}

	f := r.bed.Kill("node1")
	failover("kill node1", f, "node2")
	if err := r.c.Start("node1"); err != nil {
		t.Fatal(err)
	}
	r.waitReplica("node2", "node1", state.DiskUpToDate, "node1 back and resynced")

	f = r.bed.Freeze("node2")
	failover("freeze node2", f, "node1")
	r.bed.Thaw("node2")
	r.waitReplica("node1", "node2", state.DiskUpToDate, "node2 thawed and resynced")

	f, err = r.bed.CutOff("node1")
	if err != nil {
		t.Fatal(err)
	}
	failover("cut off node1", f, "node2")
	if _, err := r.bed.Heal(); err != nil {
		t.Fatal(err)
	}
	r.waitReplica("node2", "node1", state.DiskUpToDate, "node1 reconnected and resynced")

	client.Stop()
	r.checkNoneLost(client, "at the end")
}

// waitCommits waits until the client has recorded at least n commits.
func (r *run) waitCommits(c *testbed.PGClient, n int) {
	r.t.Helper()
	r.waitUntil(30*time.Second, fmt.Sprintf("%d commits", n), func() bool { return c.Commits() >= n })
}

// checkNoneLost fails the test if a commit the client recorded is not in
// the database the VIP serves now.
func (r *run) checkNoneLost(c *testbed.PGClient, what string) {
	r.t.Helper()
	lost, checked, err := c.Verify(r.ctx)
	if err != nil {
		r.t.Fatalf("%s: %v", what, err)
	}
	if len(lost) > 0 {
		r.t.Fatalf("%s: %d of %d committed transactions lost: seq %v", what, len(lost), checked, lost[:min(len(lost), 20)])
	}
	r.t.Logf("%s: all %d committed transactions are there", what, checked)
}

// waitUntil polls cond every 50 ms until it holds or timeout passes.
func (r *run) waitUntil(timeout time.Duration, what string, cond func() bool) {
	r.t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); r.sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) || r.ctx.Err() != nil {
			r.t.Fatalf("timed out waiting for %s", what)
		}
	}
}
