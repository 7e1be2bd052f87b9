package e2e

import (
	"strings"
	"testing"
	"time"

	"tandem/internal/testbed"
)

// `tandem failover GROUP --to NODE` refuses a NODE banned for the group
// after failures, naming the ban and its cure. It was accepted: the holder
// handed the group over, placement would not start it on the banned node,
// and the group ran nowhere though the command said it moved (storage seed
// 5013: a standby banned after it could not promote a replica that was a
// resync target, then the target of a planned switchover). Here node1 is
// banned after its service dies (max_restarts 0) and the group, now on
// node2, is sent back to it; after `tandem cleanup` the same command works.
func TestFailoverToABannedNodeIsRefused(t *testing.T) {
	g := testbed.DefaultGroup()
	g.MaxRestarts = "0"
	r := startCluster(t, testbed.Spec{Groups: []testbed.GroupSpec{g}})
	f, err := r.bed.KillService("node1", testbed.ServiceMatch(r.group("web")))
	if err != nil {
		t.Fatal(err)
	}
	r.waitServed("web", "node2", f.At, 5*time.Second)
	r.waitRunning("web", "node2", 10*time.Second)
	for try := 1; try <= 3; try++ {
		_, err := r.c.Client("witness").Failover(r.ctx, "web", "node1")
		if err == nil {
			t.Fatalf("try %d: `tandem failover web --to node1` was accepted with node1 banned after failures", try)
		}
		if msg := err.Error(); !strings.Contains(msg, "banned") || !strings.Contains(msg, "tandem cleanup web") {
			t.Errorf("the refusal does not name the ban and its cure: %v", err)
		}
	}
	// Nothing changed: the group still runs on node2.
	r.sleep(500 * time.Millisecond)
	r.waitRunning("web", "node2", 5*time.Second)
	if err := r.c.Client("witness").Cleanup(r.ctx, "web"); err != nil {
		t.Fatal(err)
	}
	// The cleanup is committed through raft; the witness's copy of the
	// state may lag it by a commit.
	var to string
	for end := time.Now().Add(5 * time.Second); ; r.sleep(100 * time.Millisecond) {
		if to, err = r.c.Client("witness").Failover(r.ctx, "web", "node1"); err == nil || time.Now().After(end) {
			break
		}
	}
	if err != nil || to != "node1" {
		t.Fatalf("after tandem cleanup web, the failover to node1: %q, %v", to, err)
	}
	r.waitRunning("web", "node1", 10*time.Second)
}
