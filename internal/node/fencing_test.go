package node

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/internal/fencepolicy"
)

// powerFencer is a node's fence device in an in-process cluster: a fence
// answers as its Memory says, and a confirmed one powers the target off
// (crashes its agent, as a BMC's power off would).
type powerFencer struct {
	c   *tcluster
	mem fencepolicy.Memory
}

func (p *powerFencer) Fence(ctx context.Context, node, reason string) (bool, error) {
	ok, err := p.mem.Fence(ctx, node, reason)
	if ok {
		p.c.crash(node)
	}
	return ok, err
}

// fenceCluster is the in-process cluster with fence: always on the group
// and one device per node; fencers[n] is the device n fences with.
func fenceCluster(t *testing.T) (*tcluster, map[string]*powerFencer) {
	c := newCluster(t, "manual")
	c.yaml = strings.Replace(c.yaml, "    max_restarts: 1\n", "    max_restarts: 1\n    fence: always\n", 1) + `fence_devices:
  - {name: pdu, kind: agent, agent: fence_dummy, nodes: [a, b], plugs: {a: "1", b: "2"}}
`
	return c, withPowerFencers(c)
}

// withPowerFencers gives each data node of c a powerFencer, in the map.
func withPowerFencers(c *tcluster) map[string]*powerFencer {
	fencers := map[string]*powerFencer{}
	var mu sync.Mutex
	c.fencer = func(node string) fencepolicy.Fencer {
		mu.Lock()
		defer mu.Unlock()
		if fencers[node] == nil {
			fencers[node] = &powerFencer{c: c}
		}
		return fencers[node]
	}
	for _, n := range []string{"a", "b"} {
		c.fencer(n)
	}
	return fencers
}

// fence: always — the old holder's agent died (its service may still run):
// the takeover starts only once a fence of it is confirmed; a fence that
// fails is retried and nothing starts meanwhile.
func TestInProcessTakeoverWaitsForAConfirmedFence(t *testing.T) {
	c, fencers := fenceCluster(t)
	fencers["b"].mem.SetMode("a", fencepolicy.MemoryFail)
	c.startAll()
	c.waitRunningOn("a")
	c.crash("a")
	c.waitFor("b to try fencing a", 10*time.Second, func() bool { return len(fencers["b"].mem.Calls()) > 0 })
	c.stays("nothing started while the fence fails", 2*time.Second, func() bool { return !c.running("b") })
	if n := len(fencers["b"].mem.Calls()); n < 2 {
		t.Errorf("a failed fence was tried %d times in 2 s; want retries", n)
	}
	for _, g := range c.nodes["b"].Status().Groups {
		if g.Name == "web" && (!strings.Contains(g.Waiting, "confirmed fence of a") || !strings.Contains(g.Waiting, "failed")) {
			t.Errorf("b's status does not say what web waits for: %q", g.Waiting)
		}
	}
	fencers["b"].mem.SetMode("a", fencepolicy.MemoryConfirm)
	c.waitFor("web running on b after a confirmed fence", 40*time.Second, func() bool { return c.running("b") })
	c.waitFor("the confirmed fence in the state", 10*time.Second, func() bool {
		g := c.nodes["b"].State().Group("web")
		return g.Takeover != nil && g.Takeover.From == "a" && g.Takeover.FromStopped
	})
}

// fence: always — an old holder that comes back and reports the group
// stopped (its restart's probe found nothing running) releases the
// takeover without a fence.
func TestInProcessRestartedOldHolderReleasesTheTakeover(t *testing.T) {
	c, fencers := fenceCluster(t)
	fencers["b"].mem.SetMode("a", fencepolicy.MemoryHang) // the device never answers
	c.startAll()
	c.waitRunningOn("a")
	c.crash("a")
	c.waitFor("b to try fencing a", 10*time.Second, func() bool { return len(fencers["b"].mem.Calls()) > 0 })
	c.stays("nothing started while the fence hangs", time.Second, func() bool { return !c.running("b") })
	c.start("a")
	c.waitRunningOn("b")
	if c.running("a") {
		t.Fatal("a runs the group too")
	}
	if g := c.nodes["b"].State().Group("web"); g.Takeover == nil || !g.Takeover.FromStopped {
		t.Errorf("started before the release was applied: takeover %+v", g.Takeover)
	}
}

// fence: always — the holder is cut off from everyone: its lease ends and
// it stops, but it cannot say so; b fences it (here: powers it off) and
// takes over.
func TestInProcessCutOffHolderIsFencedBeforeTakeover(t *testing.T) {
	c, fencers := fenceCluster(t)
	c.startAll()
	c.waitRunningOn("a")
	c.isolate("a")
	c.waitRunningOn("b")
	calls := fencers["b"].mem.Calls()
	if len(calls) == 0 || !strings.HasPrefix(calls[0], "a: ") {
		t.Fatalf("b took over without fencing a: %v", calls)
	}
	if len(fencers["a"].mem.Calls()) != 0 {
		t.Errorf("a fenced too: %v", fencers["a"].mem.Calls())
	}
}

// Every data node monitors the fence devices and shows the last result in
// its status: a working fence_dummy, and a program that always fails.
func TestInProcessFenceDeviceStatus(t *testing.T) {
	c, _ := fenceCluster(t)
	c.yaml += "  - {name: broken, kind: exec, agent: /bin/false, nodes: [a]}\n"
	c.startAll()
	var got []FenceDeviceStatus
	c.waitFor("both devices monitored from a", 60*time.Second, func() bool {
		got = c.nodes["a"].Status().FenceDevices
		return len(got) == 2 && !got[0].Checked.IsZero() && !got[1].Checked.IsZero()
	})
	if got[0].Name != "broken" || got[0].OK || got[0].Error == "" {
		t.Errorf("the failing device: %+v", got[0])
	}
	if got[1].Name != "pdu" || !got[1].OK || got[1].Kind != "agent" || got[1].Agent != "fence_dummy" {
		t.Errorf("the working device: %+v", got[1])
	}
	if w := c.nodes["w"].Status().FenceDevices; len(w) != 0 {
		t.Errorf("the witness monitors devices: %+v", w)
	}
}
