package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/testbed"
)

// Two-node mode (issue 13, docs/two-node.md): no witness; each data node
// has a BMC (ipmi_sim) the other drives with fence_ipmilan. A takeover
// from the lost peer waits for its confirmed power-off; when both are
// alive and cut apart, the node running the group fences the other.

func startTwoNode(t *testing.T) *fenced {
	f := &fenced{bmcs: map[string]*testbed.BMC{}}
	f.run = newRunWith(t, testbed.Spec{Groups: []testbed.GroupSpec{testbed.DefaultGroup()}, TwoNode: true}, func(bed *testbed.Bed, s *testbed.Spec) {
		s.Extra = "fence_devices:\n"
		for _, n := range testbed.DataNodes {
			m, err := bed.AddBMC(t.Context(), n)
			if err != nil {
				t.Fatal(err)
			}
			f.bmcs[n] = m
			s.Extra += m.FenceDeviceYAML()
		}
	})
	if err := f.c.Start(); err != nil {
		t.Fatal(err)
	}
	f.waitAllPreferred()
	// node1 started web only once it had joined node2; node2 joins on its
	// own (a node that never joined its peer waits for all).
	f.waitLog("node2", "joined the peer", 20*time.Second)
	return f
}

// waitLog waits until host h's agent log has a line containing s.
func (f *fenced) waitLog(h, s string, timeout time.Duration) {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(filepath.Join(f.bed.Dir, h+".log"))
		if strings.Contains(string(b), s) {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s's log has no %q after %v", h, s, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The active node dies: node2 waits the race delay (it runs nothing),
// powers node1 off through its BMC, becomes raft's only voter and takes
// the group over.
func TestTwoNodeKillActive(t *testing.T) {
	f := startTwoNode(t)
	k := f.bed.Kill("node1")
	e := f.fencedBy("node2", "node1", k.At)
	f.startedAfter("node2", e, k.At)
	f.waitServed("web", "node2", k.At, 10*time.Second)
	if f.bmcs["node2"].PoweredOff() {
		t.Error("node2 was powered off")
	}
}

// The pair is cut apart while both run (a partition of every link): node1
// runs the group, fences node2 at once and keeps serving; node2 is off
// before its delayed fence could start.
func TestTwoNodePartitionKeepsTheActive(t *testing.T) {
	f := startTwoNode(t)
	k, err := f.bed.Partition("node1", "node2")
	if err != nil {
		t.Fatal(err)
	}
	f.fencedBy("node1", "node2", k.At)
	// No move, and no gap longer than 300 ms: the winner runs
	// fence_ipmilan (Python, 150–280 ms of CPU per action) on the bed's
	// two shared cores, and a probe answered 104 ms late while it ran
	// (the service on node1 answered every probe; no lease lapsed).
	f.watchQuiet("web", "node1", k.At, quiet, 300*time.Millisecond)
	if f.bmcs["node1"].PoweredOff() {
		t.Error("both nodes were powered off")
	}
}
