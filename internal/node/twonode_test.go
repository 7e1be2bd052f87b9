package node

import (
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"tandem/internal/fencepolicy"
	"tandem/internal/logcheck"
)

// twoNodeLog: the log lines a failed two-node test shows.
var twoNodeLog = regexp.MustCompile(`level=(INFO|WARN|ERROR)`)

// twoNodeCluster is the in-process cluster without its witness: two-node
// mode, a fence device per node (in-process: powerFencer, whose confirmed
// fence crashes the target's agent as a BMC's power off would).
func twoNodeCluster(t *testing.T) (*tcluster, map[string]*powerFencer) {
	c := newCluster(t, "manual")
	var rec *logcheck.Recorder
	c.log, rec = logcheck.New(t, slog.LevelDebug)
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range rec.Lines() {
				if twoNodeLog.MatchString(l) {
					t.Log(l)
				}
			}
		}
	})
	c.yaml = strings.Replace(c.yaml, "witness: {name: w, links: [127.0.0.23]}\n", "", 1) + `fence_devices:
  - {name: pdu, kind: agent, agent: fence_dummy, nodes: [a, b], plugs: {a: "1", b: "2"}}
two_node: {fence_delay: 1500ms}
`
	return c, withPowerFencers(c)
}

func (c *tcluster) startPair() {
	c.start("a")
	c.start("b")
}

// paired: both nodes have joined each other (a cluster that has run a
// while; a node that never joined its peer waits for all).
func (c *tcluster) paired() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range []string{"a", "b"} {
		nd := c.nodes[n]
		if nd == nil || nd.fence == nil {
			return false
		}
		nd.fence.mu.Lock()
		p := nd.fence.m.Paired()
		nd.fence.mu.Unlock()
		if !p {
			return false
		}
	}
	return true
}

func (c *tcluster) voters(name string) []string {
	c.mu.Lock()
	n := c.nodes[name]
	c.mu.Unlock()
	if n == nil {
		return nil
	}
	vs, _ := n.cons.Voters()
	slices.Sort(vs)
	return vs
}

// The active node dies: the standby fences it (after the race delay, as
// it runs nothing), recovers raft to itself alone and takes the group
// over. The fenced node comes back: it waits for all, is re-added, and
// the pair is whole again with the group where it is.
func TestInProcessTwoNodeCrashOfActive(t *testing.T) {
	c, fencers := twoNodeCluster(t)
	c.startPair()
	c.waitRunningOn("a")
	c.waitFor("the pair joined", 10*time.Second, c.paired)
	c.crash("a")
	took := c.waitFor("web on b", 20*time.Second, func() bool { return c.running("b") })
	t.Logf("web on b %v after a's crash", took.Round(time.Millisecond))
	if calls := fencers["b"].mem.Calls(); len(calls) == 0 || !strings.HasPrefix(calls[0], "a: ") {
		t.Fatalf("b took over without fencing a: %v", calls)
	}
	if took < 1500*time.Millisecond {
		t.Errorf("b fenced a %v after the crash, before the race delay", took)
	}
	if vs := c.voters("b"); !slices.Equal(vs, []string{"b"}) {
		t.Fatalf("b's voters after the takeover: %v", vs)
	}
	c.start("a")
	c.waitFor("a re-added", 20*time.Second, func() bool {
		return slices.Equal(c.voters("b"), []string{"a", "b"}) && slices.Equal(c.voters("a"), []string{"a", "b"})
	})
	c.stays("web stays on b alone", time.Second, func() bool { return c.running("b") && !c.running("a") })
	if n := len(fencers["a"].mem.Calls()); n != 0 {
		t.Errorf("the returning a fenced b: %v", fencers["a"].mem.Calls())
	}
	// The pair commits again: a switchover to a works.
	if _, err := c.nodes["b"].Failover(t.Context(), "web", "a", "test"); err != nil {
		t.Fatalf("switchover after the re-add: %v", err)
	}
	c.waitRunningOn("a")
}

// The pair loses sight of each other (both alive): the node that runs the
// group fences the other at once and keeps running, without a gap; the
// other never fences.
func TestInProcessTwoNodePartitionKeepsTheActive(t *testing.T) {
	c, fencers := twoNodeCluster(t)
	c.startPair()
	c.waitRunningOn("a")
	c.waitFor("the pair joined", 10*time.Second, c.paired)
	c.cutBoth("a", "b")
	deadline := time.Now().Add(10 * time.Second)
	for len(fencers["a"].mem.Calls()) == 0 {
		if !c.running("a") {
			t.Fatal("a stopped the group when it lost its peer")
		}
		if time.Now().After(deadline) {
			t.Fatal("a never fenced b")
		}
		time.Sleep(2 * time.Millisecond)
	}
	c.waitFor("b fenced (its agent down)", 10*time.Second, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.nodes["b"] == nil
	})
	c.stays("web on a through the race delay", 3*time.Second, func() bool { return c.running("a") })
	if calls := fencers["b"].mem.Calls(); len(calls) != 0 {
		t.Fatalf("the race's loser fenced too: %v", calls)
	}
}

// A fence that fails blocks the takeover (retried, reported); once it is
// confirmed the group starts.
func TestInProcessTwoNodeFailedFenceBlocksTakeover(t *testing.T) {
	c, fencers := twoNodeCluster(t)
	fencers["b"].mem.SetMode("a", fencepolicy.MemoryFail)
	c.startPair()
	c.waitRunningOn("a")
	c.waitFor("the pair joined", 10*time.Second, c.paired)
	c.crash("a")
	c.waitFor("b to try fencing a", 10*time.Second, func() bool { return len(fencers["b"].mem.Calls()) > 0 })
	c.stays("nothing starts while the fence fails", 2*time.Second, func() bool { return !c.running("b") })
	fencers["b"].mem.SetMode("a", fencepolicy.MemoryConfirm)
	c.waitFor("web on b after a confirmed fence", 40*time.Second, func() bool { return c.running("b") })
}

// Both nodes restart (a power cut): one alone waits for all and starts
// nothing, nor fences; with both back the group runs once.
func TestInProcessTwoNodeWaitForAll(t *testing.T) {
	c, fencers := twoNodeCluster(t)
	c.startPair()
	c.waitRunningOn("a")
	c.waitFor("the pair joined", 10*time.Second, c.paired)
	c.crash("a")
	c.crash("b")
	c.start("b")
	c.stays("b alone starts nothing", 3*time.Second, func() bool { return !c.running("b") })
	if calls := fencers["b"].mem.Calls(); len(calls) != 0 {
		t.Fatalf("a node waiting for all fenced: %v", calls)
	}
	c.start("a")
	c.waitFor("web runs again", 20*time.Second, func() bool { return c.running("a") || c.running("b") })
	c.stays("once", time.Second, func() bool { return !(c.running("a") && c.running("b")) })
}
