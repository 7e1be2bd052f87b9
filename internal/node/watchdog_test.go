package node

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/internal/clock"
	"tandem/internal/watchdog"
)

// watchdogCluster is the in-process cluster with a 1 s watchdog; each life
// of each data node feeds a new in-memory twin on the real clock.
func watchdogCluster(t *testing.T) (*tcluster, func(node string) *watchdog.Memory) {
	c := newCluster(t, "manual")
	c.yaml += "watchdog: {timeout: 1s}\n"
	var mu sync.Mutex
	twins := map[string]*watchdog.Memory{}
	c.wdog = func(node string) watchdog.Watchdog {
		mu.Lock()
		defer mu.Unlock()
		twins[node] = &watchdog.Memory{Clock: clock.Real{}}
		return twins[node]
	}
	return c, func(node string) *watchdog.Memory {
		mu.Lock()
		defer mu.Unlock()
		return twins[node]
	}
}

func isReset(m *watchdog.Memory) bool { _, r := m.Reset(); return r }

func auditHas(t *testing.T, c *tcluster, node, kind string) bool {
	t.Helper()
	b, _ := os.ReadFile(c.nodes[node].AuditFile())
	return strings.Contains(string(b), `"kind":"`+kind+`"`)
}

// A healthy cluster feeds its watchdogs (the witness has none); a crashed
// holder's machine resets within the timeout of its crash, and the node
// that took over keeps feeding.
func TestInProcessWatchdogResetsACrashedHolder(t *testing.T) {
	c, twin := watchdogCluster(t)
	c.startAll()
	c.waitRunningOn("a")
	if twin("w").Armed() || !twin("a").Armed() || !twin("b").Armed() {
		t.Fatalf("armed: w %v a %v b %v; want the data nodes only", twin("w").Armed(), twin("a").Armed(), twin("b").Armed())
	}
	if !auditHas(t, c, "a", "watchdog_armed") {
		t.Error("a's audit log has no watchdog_armed")
	}
	c.stays("no machine reset over twice the timeout", 2*time.Second, func() bool {
		return !isReset(twin("a")) && !isReset(twin("b"))
	})
	crashed := time.Now()
	a := twin("a")
	c.crash("a")
	c.waitFor("a's machine reset", 5*time.Second, func() bool { return isReset(a) })
	if at, _ := a.Reset(); at.After(crashed.Add(time.Second)) {
		t.Errorf("a crashed at %v and reset at %v: later than its 1s timeout", crashed, at)
	}
	c.waitRunningOn("b")
	c.stays("b keeps feeding", 1500*time.Millisecond, func() bool { return !isReset(twin("b")) })
}

// A holder cut off from everyone (its agent healthy) cannot renew its
// lease: when it runs out, the agent stops feeding and says so, and the
// machine resets within the timeout of the lease's end, as a watchdog fence
// of it counts on.
func TestInProcessWatchdogResetsACutOffHolder(t *testing.T) {
	c, twin := watchdogCluster(t)
	c.startAll()
	c.waitRunningOn("a")
	cut := time.Now()
	c.isolate("a")
	c.waitFor("a's machine reset", 10*time.Second, func() bool { return isReset(twin("a")) })
	// The lease (400 ms) was last renewed before the cut.
	if at, _ := twin("a").Reset(); at.After(cut.Add(400*time.Millisecond + time.Second)) {
		t.Errorf("cut at %v, reset at %v: later than the lease + the timeout", cut, at)
	}
	c.waitFor("a's audit log says why", 5*time.Second, func() bool { return auditHas(t, c, "a", "watchdog_expiring") })
	c.waitRunningOn("b")
	if isReset(twin("b")) {
		t.Error("b's machine reset")
	}
}

// Planned moves give the lease back first: no reset. A planned stop with
// nothing held disarms the watchdog (the magic close).
func TestInProcessWatchdogPlannedMovesAndStop(t *testing.T) {
	c, twin := watchdogCluster(t)
	c.startAll()
	c.waitRunningOn("a")
	if _, err := c.nodes["b"].Failover(context.Background(), "web", "b", "test"); err != nil {
		t.Fatal(err)
	}
	c.waitRunningOn("b")
	c.stays("no reset after the switchover", 2*time.Second, func() bool {
		return !isReset(twin("a")) && !isReset(twin("b")) && c.running("b")
	})
	a := twin("a")
	c.mu.Lock()
	na := c.nodes["a"]
	delete(c.nodes, "a")
	c.mu.Unlock()
	na.Stop()
	if a.Armed() || isReset(a) {
		t.Fatalf("a stopped with nothing held: armed %v, reset %v; want disarmed", a.Armed(), isReset(a))
	}
	b, _ := os.ReadFile(na.AuditFile())
	if !strings.Contains(string(b), `"kind":"watchdog_disarmed"`) {
		t.Error("a's audit log has no watchdog_disarmed")
	}
}
