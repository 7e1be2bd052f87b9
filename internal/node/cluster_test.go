package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tandem/internal/clock"
	"tandem/internal/config"
	"tandem/internal/events"
	"tandem/internal/fencepolicy"
	"tandem/internal/heartbeat"
	"tandem/internal/keyfile"
	"tandem/internal/logcheck"
	"tandem/internal/resource"
	"tandem/internal/vipguard"
	"tandem/internal/watchdog"
)

// In-process clusters: three real nodes (heartbeats, raft, placement,
// manager) in one process, heartbeats over a fake network that can cut
// paths one way, raft over loopback TCP with the same cuts, resources as
// in-memory agents and the kernel VIP guard as its in-memory twin. The
// invariant checked everywhere is S1 on the wire: at no instant does the
// guard of two nodes allow the VIP.

var testVIP = netip.MustParseAddr("10.99.0.50")

type tcluster struct {
	t      *testing.T
	dir    string
	yaml   string
	fnet   *heartbeat.FakeNet
	mu     sync.Mutex
	cuts   map[[2]string]bool
	nodes  map[string]*Node
	guards map[string][]*vipguard.Mem // every guard a node ever had (restarts)
	agents map[string]map[string]*resource.Mem
	starts map[string]int // group starts per node, over all restarts
	regs   map[string]*prometheus.Registry
	mdstat string // a status file the data nodes watch as /proc/mdstat
	// onExec, if set, adjusts each node's exec agent when it is built.
	onExec func(node string, m *resource.Mem)
	// yamlFor gives a node another configuration file than c.yaml.
	yamlFor map[string]string
	// fencer, if set, gives a node's fencer (in place of its devices).
	fencer func(node string) fencepolicy.Fencer
	// wdog, if set, gives a node's watchdog (in place of its device).
	wdog func(node string) watchdog.Watchdog
	// log is every node's log, named as the agent names it; a record that
	// repeats a key fails the test.
	log *slog.Logger
}

func freePort(t *testing.T, ip string) int {
	for i := 0; i < 50; i++ {
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		// the same port must be free on every node address
		ok := true
		for _, other := range []string{"127.0.0.21", "127.0.0.22", "127.0.0.23"} {
			l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", other, p))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

func newCluster(t *testing.T, failback string) *tcluster {
	dir := t.TempDir()
	key, _ := keyfile.Generate()
	if err := keyfile.Write(filepath.Join(dir, "key"), key, false); err != nil {
		t.Fatal(err)
	}
	port := freePort(t, "127.0.0.21")
	c := &tcluster{t: t, dir: dir, fnet: heartbeat.NewFakeNet(clock.Real{}), cuts: map[[2]string]bool{},
		nodes: map[string]*Node{}, guards: map[string][]*vipguard.Mem{}, agents: map[string]map[string]*resource.Mem{},
		starts: map[string]int{}, regs: map[string]*prometheus.Registry{}}
	c.log, _ = logcheck.New(t, slog.LevelDebug)
	c.yaml = fmt.Sprintf(`cluster: inproc
key_file: %s/key
port: %d
# Relaxed against the defaults: many nodes share one test process on a
# busy 2-core machine, and a stall of the whole process must not look like
# a failure of one node. Failover times are measured by the e2e bench.
timing: {heartbeat_interval: 50ms, node_timeout: 400ms, raft_timeout: 800ms}
nodes:
  - {name: a, links: [127.0.0.21]}
  - {name: b, links: [127.0.0.22]}
witness: {name: w, links: [127.0.0.23]}
groups:
  - name: web
    prefer: a
    failback: %s
    max_restarts: 1
    resources:
      - exec: {command: [/bin/true]}
        monitor_interval: 50ms
        stop_timeout: 1s
      - vip: {address: %s/24, interface: eth0}
        monitor_interval: 50ms
        stop_timeout: 1s
`, dir, port, failback, testVIP)
	t.Cleanup(c.stopAll)
	return c
}

func (c *tcluster) start(name string) {
	c.t.Helper()
	if err := c.startErr(name); err != nil {
		c.t.Fatal(err)
	}
}

// startErr starts name, and returns the error if the agent refuses to.
func (c *tcluster) startErr(name string) error {
	c.t.Helper()
	text := c.yaml
	if o, ok := c.yamlFor[name]; ok {
		text = o
	}
	cfg, err := config.Parse("inproc.yaml", []byte(text))
	if err != nil {
		c.t.Fatal(err)
	}
	cfg.StateDir = filepath.Join(c.dir, name)
	cfg.Events.File = filepath.Join(c.dir, name, "events.jsonl")
	me, _ := cfg.NodeByName(name)
	addrs, _ := cfg.LinkAddrs(me)
	tr, err := c.fnet.Endpoint(name, addrs)
	if err != nil {
		c.t.Fatal(err)
	}
	guard := vipguard.NewMem(clock.Real{})
	c.mu.Lock()
	c.guards[name] = append(c.guards[name], guard)
	c.agents[name] = map[string]*resource.Mem{}
	c.mu.Unlock()
	reg := prometheus.NewRegistry()
	c.mu.Lock()
	c.regs[name] = reg
	c.mu.Unlock()
	var fencer fencepolicy.Fencer
	if c.fencer != nil {
		fencer = c.fencer(name)
	}
	var wd watchdog.Watchdog
	if c.wdog != nil {
		wd = c.wdog(name)
	}
	n, err := Start(Options{Config: cfg, Self: name, Transport: tr, Guard: guard, Registerer: reg, Logger: c.log.With("node", name),
		MDStat: c.mdstatFile(), MDStatInterval: 20 * time.Millisecond, Fencer: fencer, Watchdog: wd,
		Agent: func(group string, r config.Resource) resource.Agent {
			m := &resource.Mem{}
			if r.Exec != nil {
				m.OnChange = func(on bool) {
					if on {
						c.mu.Lock()
						c.starts[name]++
						c.mu.Unlock()
					}
				}
				if c.onExec != nil {
					c.onExec(name, m)
				}
			}
			c.mu.Lock()
			c.agents[name][r.Name] = m
			c.mu.Unlock()
			return m
		},
		Cut: func(from, to string) bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.cuts[[2]string{from, to}]
		},
	})
	if err != nil {
		tr.Close() // a refusal before the heartbeats ran leaves it open
		return err
	}
	c.mu.Lock()
	c.nodes[name] = n
	c.mu.Unlock()
	return nil
}

// mdstatFile is the md status file nodes watch: c.mdstat, or one that does
// not exist (the test machine's own /proc/mdstat stays out of the tests).
func (c *tcluster) mdstatFile() string {
	if c.mdstat != "" {
		return c.mdstat
	}
	return filepath.Join(c.dir, "no-mdstat")
}

func (c *tcluster) startAll() {
	for _, n := range []string{"w", "a", "b"} {
		c.start(n)
	}
}

func (c *tcluster) crash(name string) {
	c.mu.Lock()
	n := c.nodes[name]
	delete(c.nodes, name)
	c.mu.Unlock()
	if n != nil {
		n.Crash()
	}
}

func (c *tcluster) stopAll() {
	c.mu.Lock()
	nodes := c.nodes
	c.nodes = map[string]*Node{}
	c.mu.Unlock()
	for _, n := range nodes {
		n.Crash()
	}
	c.checkS1()
}

// cut blocks from→to (heartbeats and raft); cutBoth both ways.
func (c *tcluster) cut(from, to string) {
	c.mu.Lock()
	c.cuts[[2]string{from, to}] = true
	c.mu.Unlock()
	c.fnet.Cut(from, to)
}

func (c *tcluster) cutBoth(a, b string) { c.cut(a, b); c.cut(b, a) }

func (c *tcluster) isolate(name string) {
	for _, o := range []string{"a", "b", "w"} {
		if o != name {
			c.cutBoth(name, o)
		}
	}
}

func (c *tcluster) heal() {
	c.mu.Lock()
	c.cuts = map[[2]string]bool{}
	c.mu.Unlock()
	c.fnet.Heal()
}

// running reports whether name runs the group's service (its exec agent).
func (c *tcluster) running(name string) bool {
	c.mu.Lock()
	a := c.agents[name]["exec-0"]
	_, alive := c.nodes[name]
	c.mu.Unlock()
	return alive && a != nil && a.Running()
}

func (c *tcluster) waitFor(what string, timeout time.Duration, cond func() bool) time.Duration {
	c.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			c.t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

// stays checks that cond holds for the whole of d.
func (c *tcluster) stays(what string, d time.Duration, cond func() bool) {
	c.t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if !cond() {
			c.dumpEvents()
			c.t.Fatalf("%s stopped holding", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (c *tcluster) dumpEvents() {
	for _, n := range []string{"a", "b", "w"} {
		b, _ := os.ReadFile(filepath.Join(c.dir, n, "events.jsonl"))
		c.t.Logf("events of %s:\n%s", n, b)
	}
}

func (c *tcluster) holder() (string, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range []string{"w", "a", "b"} {
		if nd := c.nodes[n]; nd != nil {
			g := nd.State().Group("web")
			return g.Holder, g.Epoch
		}
	}
	return "", 0
}

// checkS1 verifies from every guard's history that no two nodes were ever
// allowed to answer for the VIP at the same instant.
func (c *tcluster) checkS1() {
	type span struct {
		node     string
		from, to time.Time
	}
	var spans []span
	c.mu.Lock()
	for name, gs := range c.guards {
		for _, g := range gs {
			calls := g.Calls()
			for i, call := range calls {
				if call.Remaining <= 0 {
					continue
				}
				end := call.At.Add(call.Remaining)
				if i+1 < len(calls) && calls[i+1].At.Before(end) {
					end = calls[i+1].At
				}
				spans = append(spans, span{name, call.At, end})
			}
		}
	}
	c.mu.Unlock()
	sort.Slice(spans, func(i, j int) bool { return spans[i].from.Before(spans[j].from) })
	for i := range spans {
		for j := i + 1; j < len(spans) && spans[j].from.Before(spans[i].to); j++ {
			if spans[j].node != spans[i].node {
				c.t.Errorf("S1 violated: %s allowed the VIP until %s while %s was allowed from %s",
					spans[i].node, spans[i].to.Format("15:04:05.000"), spans[j].node, spans[j].from.Format("15:04:05.000"))
				return
			}
		}
	}
}

func (c *tcluster) waitRunningOn(name string) time.Duration {
	c.t.Helper()
	return c.waitFor("web running on "+name, 10*time.Second, func() bool { return c.running(name) })
}

func TestInProcessCrashOfActive(t *testing.T) {
	c := newCluster(t, "manual")
	c.startAll()
	c.waitRunningOn("a")
	c.waitFor("raft leadership on the witness", 5*time.Second, func() bool { return c.nodes["w"].cons.IsLeader() })
	c.crash("a")
	took := c.waitRunningOn("b")
	t.Logf("crash → running on b: %v", took)
	if took > 1500*time.Millisecond {
		t.Errorf("takeover took %v", took)
	}
	c.start("a")
	c.stays("group on b after a returns (manual failback)", time.Second, func() bool { return c.running("b") && !c.running("a") })
}

func TestInProcessIsolatedActiveStopsBeforeTakeover(t *testing.T) {
	c := newCluster(t, "manual")
	c.startAll()
	c.waitRunningOn("a")
	c.isolate("a")
	c.waitRunningOn("b")
	if c.running("a") {
		t.Fatal("a still runs the group after b took over")
	}
	c.heal()
	c.stays("group on b after the heal", time.Second, func() bool { return c.running("b") && !c.running("a") })
}

func TestInProcessFrozenActive(t *testing.T) {
	c := newCluster(t, "manual")
	c.startAll()
	c.waitRunningOn("a")
	// Freeze: a hears nothing, says nothing and its agents hang.
	c.mu.Lock()
	for _, m := range c.agents["a"] {
		m.Set(func(m *resource.Mem) { m.Hang = true })
	}
	c.mu.Unlock()
	c.isolate("a")
	c.waitRunningOn("b")
	// Thaw.
	c.mu.Lock()
	for _, m := range c.agents["a"] {
		m.Set(func(m *resource.Mem) { m.Hang = false })
	}
	c.mu.Unlock()
	c.heal()
	c.waitFor("a to stop after the thaw", 5*time.Second, func() bool { return !c.running("a") })
	c.stays("group only on b", time.Second, func() bool { return c.running("b") && !c.running("a") })
}

func TestInProcessPartitionBetweenNodesKeepsPrimary(t *testing.T) {
	c := newCluster(t, "manual")
	c.startAll()
	c.waitRunningOn("a")
	// holder reads the witness's state, which may apply the placement a
	// moment after a runs it (a led when it committed): wait for it.
	c.waitFor("the witness to apply a's placement", 5*time.Second, func() bool { h, e := c.holder(); return h == "a" && e > 0 })
	_, epoch := c.holder()
	c.cutBoth("a", "b")
	c.stays("group on a while a and b cannot talk", 1500*time.Millisecond, func() bool { return c.running("a") && !c.running("b") })
	if h, e := c.holder(); h != "a" || e != epoch {
		c.dumpEvents()
		t.Fatalf("placement changed: %s@%d, was epoch %d", h, e, epoch)
	}
	c.heal()
}

func TestInProcessOneWayPartitionKeepsPrimary(t *testing.T) {
	c := newCluster(t, "manual")
	c.startAll()
	c.waitRunningOn("a")
	c.cut("a", "b") // b no longer hears a; a still hears b
	c.stays("group on a", 1500*time.Millisecond, func() bool { return c.running("a") && !c.running("b") })
	c.heal()
	c.cut("b", "a")
	c.stays("group on a", 1500*time.Millisecond, func() bool { return c.running("a") && !c.running("b") })
}

func TestInProcessWitnessLossThenPrimaryLoss(t *testing.T) {
	c := newCluster(t, "manual")
	c.startAll()
	c.waitRunningOn("a")
	// Steady state: b has applied the placement (a voter vouches only for
	// the epoch it has applied; a leader dying right after a commit leaves
	// the lease unrenewable until a new leader replicates it).
	c.waitFor("b to apply the placement", 5*time.Second, func() bool {
		return c.nodes["b"].State().Group("web").Running
	})
	c.crash("w")
	c.stays("group on a without the witness", time.Second, func() bool { return c.running("a") })
	c.crash("a")
	// b alone is no majority: it must not run the group, ever.
	c.stays("group stopped everywhere", 2*time.Second, func() bool { return !c.running("b") })
	// The witness returns: now b and w are a majority and b takes over.
	c.start("w")
	c.waitRunningOn("b")
}

func TestInProcessColdStartRunsGroupOnce(t *testing.T) {
	c := newCluster(t, "manual")
	c.startAll()
	c.waitRunningOn("a")
	for _, n := range []string{"a", "b", "w"} {
		c.crash(n)
	}
	c.mu.Lock()
	c.starts = map[string]int{}
	c.mu.Unlock()
	// Simultaneous start of all three.
	var wg sync.WaitGroup
	for _, n := range []string{"b", "w", "a"} {
		wg.Add(1)
		go func(n string) { defer wg.Done(); c.start(n) }(n)
	}
	wg.Wait()
	c.waitRunningOn("a")
	c.stays("group only on a", time.Second, func() bool { return c.running("a") && !c.running("b") })
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.starts["a"] != 1 || c.starts["b"] != 0 {
		t.Fatalf("starts after cold start: %v, want a once", c.starts)
	}
}

func TestInProcessPlannedSwitchoverAndStandby(t *testing.T) {
	c := newCluster(t, "auto")
	c.startAll()
	c.waitRunningOn("a")
	ctx := context.Background()
	if _, err := c.nodes["b"].Failover(ctx, "web", "b", "test"); err != nil {
		t.Fatal(err)
	}
	took := c.waitRunningOn("b")
	t.Logf("planned switchover: %v", took)
	// pinned: auto failback must not take it back
	c.stays("pinned to b", 1500*time.Millisecond, func() bool { return c.running("b") })
	if err := c.nodes["a"].Standby(ctx, "b", true, "test"); err != nil {
		t.Fatal(err)
	}
	c.waitRunningOn("a")
	if err := c.nodes["a"].Cleanup(ctx, "web", "test"); err != nil {
		t.Fatal(err)
	}
	if err := c.nodes["a"].Standby(ctx, "b", false, "test"); err != nil {
		t.Fatal(err)
	}
	c.stays("on a, its preferred node", time.Second, func() bool { return c.running("a") && !c.running("b") })
	mfs, err := c.regs["a"].Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, mf := range mfs {
		seen[mf.GetName()] = true
	}
	for _, name := range []string{"tandem_group_epoch", "tandem_group_holder", "tandem_cluster_link_rtt_seconds", "tandem_cluster_quorum", "tandem_heartbeat_sent_packets_total", "tandem_group_takeovers_total", "tandem_resource_operations_total"} {
		if !seen[name] {
			t.Errorf("metric %s missing", name)
		}
	}
	if _, err := c.nodes["a"].Failover(ctx, "nope", "", "test"); err == nil {
		t.Fatal("failover of an unknown group succeeded")
	}
	if _, err := c.nodes["a"].Failover(ctx, "web", "w", "test"); err == nil {
		t.Fatal("failover to the witness succeeded")
	}
}

// TestInProcessHandoverHasNoOverlap: a planned switchover and a shutdown
// of the active agent stop the service on the old node completely (here it
// takes 300 ms) before the new node starts it (seen item 2; invariant d),
// and the shutdown is a handover, not a failure detected by timeout (seen
// item 4).
func TestInProcessHandoverHasNoOverlap(t *testing.T) {
	c := newCluster(t, "manual")
	var mu sync.Mutex
	up := map[string]bool{}
	var overlap []string
	c.onExec = func(node string, m *resource.Mem) {
		m.StopDelay = 300 * time.Millisecond
		m.OnChange = func(on bool) {
			mu.Lock()
			defer mu.Unlock()
			up[node] = on
			if up["a"] && up["b"] {
				overlap = append(overlap, time.Now().Format("15:04:05.000"))
			}
		}
	}
	c.startAll()
	c.waitRunningOn("a")
	if _, err := c.nodes["a"].Failover(context.Background(), "web", "b", "test"); err != nil {
		t.Fatal(err)
	}
	c.waitRunningOn("b")
	if got := c.nodes["b"].State().Group("web"); got.Holder != "b" || got.Pinned != "b" {
		t.Fatalf("after the switchover: %+v", got)
	}
	began := time.Now()
	c.mu.Lock()
	b := c.nodes["b"]
	delete(c.nodes, "b")
	c.mu.Unlock()
	b.Stop() // SIGTERM of the active agent
	c.waitRunningOn("a")
	took := time.Since(began)
	mu.Lock()
	defer mu.Unlock()
	if len(overlap) > 0 {
		c.dumpEvents()
		t.Fatalf("the service ran on both nodes at %v", overlap)
	}
	evs, err := events.ReadFile(filepath.Join(c.dir, "b", "events.jsonl"), events.Filter{Kinds: []events.Kind{events.Handover}})
	if err != nil || len(evs) == 0 {
		c.dumpEvents()
		t.Fatalf("b's shutdown was not a handover: %v %v", evs, err)
	}
	// Detecting b's death would take the node timeout (400 ms) plus the
	// lease; a handover needs b's stop (300 ms) and a few commits.
	t.Logf("shutdown handover took %v", took)
}

// Seen item 7: a node started with another VIP is shown as running
// another configuration, raises an event, and gets no group: neither a
// failover nor a takeover moves the group onto it.
func TestInProcessConfigDrift(t *testing.T) {
	c := newCluster(t, "manual")
	c.yamlFor = map[string]string{"b": strings.Replace(c.yaml, testVIP.String()+"/24", "10.99.0.51/24", 1)}
	c.startAll()
	c.waitRunningOn("a")
	c.waitFor("b's drift seen", 10*time.Second, func() bool {
		for _, ns := range c.nodes["a"].Status().Nodes {
			if ns.Name == "b" && ns.ConfigDiffers {
				return true
			}
		}
		return false
	})
	if _, err := c.nodes["a"].Failover(context.Background(), "web", "b", "test"); err == nil || !strings.Contains(err.Error(), "another configuration") {
		t.Fatalf("failover onto the drifted node: %v", err)
	}
	evs, _ := events.ReadFile(filepath.Join(c.dir, "a", "events.jsonl"), events.Filter{Kinds: []events.Kind{events.ConfigMismatch}})
	if len(evs) == 0 {
		t.Fatal("no config_mismatch event")
	}
	c.crash("a")
	c.stays("the group stays off the drifted node", 2*time.Second, func() bool { return !c.running("b") })

	count := func() int {
		evs, _ := events.ReadFile(filepath.Join(c.dir, "a", "events.jsonl"), events.Filter{Kinds: []events.Kind{events.ConfigMismatch}})
		return len(evs)
	}
	// A drift still going on is reported by a restarted agent, once its
	// state has caught up.
	before := count()
	c.start("a")
	c.waitFor("the restarted agent reports b's drift", 10*time.Second, func() bool { return count() > before })

	// b runs the cluster's file again. A restarted agent replays the raft
	// log, b's old announcement with it: the drift it showed was
	// reported in its day and is over, so nothing is reported again (a
	// new user's walk saw an ERROR and an event at every agent start).
	delete(c.yamlFor, "b")
	c.crash("b")
	c.start("b")
	agrees := func() bool {
		for _, ns := range c.nodes["a"].Status().Nodes {
			if ns.Name == "b" && (ns.ConfigDiffers || ns.Config == "") {
				return false
			}
		}
		return true
	}
	c.waitFor("b's file agrees, as a sees it", 10*time.Second, agrees)
	before = count()
	c.crash("a")
	c.start("a")
	c.waitFor("a's state after its restart", 10*time.Second, func() bool {
		st := c.nodes["a"].State()
		return st.Nodes["b"] != nil && st.Nodes["b"].Config != "" && agrees()
	})
	c.stays("no mismatch reported from the replayed log", 500*time.Millisecond, func() bool { return count() == before })
}

// Seen item 6: a planned failover logged decide_ms 53712 (the figures of
// an older takeover, against this start) and status kept an old detect
// figure. Now a takeover's figures are computed only for the start that
// ends it, at its epoch, and a planned move logs none.
func TestInProcessTakeoverFigures(t *testing.T) {
	c := newCluster(t, "manual")
	c.startAll()
	c.waitRunningOn("a")
	c.waitFor("raft leadership on the witness", 5*time.Second, func() bool { return c.nodes["w"].cons.IsLeader() })
	c.crash("a")
	c.waitRunningOn("b")
	c.start("a")
	c.waitFor("a back", 10*time.Second, func() bool { return c.nodes["b"].hb.Up(c.nodes["b"].voterIndex("a")) })
	c.waitFor("a joined", 10*time.Second, func() bool {
		ns := c.nodes["b"].State().Nodes["a"]
		return ns != nil && !ns.Leaving
	})
	if _, err := c.nodes["b"].Failover(context.Background(), "web", "a", "test"); err != nil {
		t.Fatal(err)
	}
	c.waitRunningOn("a")
	time.Sleep(300 * time.Millisecond) // let the events land
	tk, _ := events.ReadFile(filepath.Join(c.dir, "b", "events.jsonl"), events.Filter{Kinds: []events.Kind{events.Takeover}})
	if len(tk) != 1 {
		c.dumpEvents()
		t.Fatalf("b logged %d takeovers, want 1", len(tk))
	}
	for _, k := range []string{"detect_ms", "decide_ms", "start_ms", "total_ms"} {
		v, _ := tk[0].Attrs[k].(float64)
		if v < 0 || v > 3000 {
			t.Errorf("takeover %s = %v, not a figure of this takeover", k, tk[0].Attrs[k])
		}
	}
	after, _ := events.ReadFile(filepath.Join(c.dir, "a", "events.jsonl"), events.Filter{Kinds: []events.Kind{events.Takeover}})
	if len(after) != 0 {
		t.Fatalf("the planned move back logged a takeover: %+v", after)
	}
	for _, g := range c.nodes["a"].Status().Groups {
		if g.Takeover != nil && g.Takeover.Epoch != g.Epoch && g.Takeover.To == g.Holder {
			t.Fatalf("status shows an old takeover as this holder's: %+v", g.Takeover)
		}
	}
}

// A node cut off from the quorum that is told to stop cannot hand over:
// it stops its group itself, promptly, and exits.
func TestInProcessShutdownWithoutQuorum(t *testing.T) {
	c := newCluster(t, "manual")
	c.startAll()
	c.waitRunningOn("a")
	c.isolate("a")
	c.mu.Lock()
	a := c.nodes["a"]
	delete(c.nodes, "a")
	agent := c.agents["a"]["exec-0"]
	c.mu.Unlock()
	began := time.Now()
	a.Stop()
	took := time.Since(began)
	if agent.Running() {
		t.Fatal("the service still runs after the stop")
	}
	// Telling the cluster fails within handoverWait (2 s), then the group
	// stops; the reports wait at most 2 s more.
	if took > 15*time.Second { // not a figure: the bound says it does not wait for stop timeouts or for ever
		t.Fatalf("stopping without a quorum took %v", took)
	}
	t.Logf("stopped without a quorum in %v", took)
}

// A node whose agent stopped cleanly comes back eligible as soon as its
// restarted agent has applied the old leaving mark and probed its groups,
// not a poll period later: the failover bench stopped the active node 1.1 s
// after the standby's restart, found no eligible node, and moved the group
// to nowhere (then waited out the old lease) in 14 runs of 15.
func TestInProcessRestartedNodeClearsItsLeavingMarkAtOnce(t *testing.T) {
	c := newCluster(t, "manual")
	c.startAll()
	c.waitRunningOn("a")
	c.mu.Lock()
	b := c.nodes["b"]
	delete(c.nodes, "b")
	c.mu.Unlock()
	b.Stop()
	c.start("b")
	c.mu.Lock()
	b = c.nodes["b"]
	c.mu.Unlock()
	leavingOn := func(n *Node) bool { ns := n.State().Nodes["b"]; return ns != nil && ns.Leaving }
	c.waitFor("the old leaving mark replayed on b", 10*time.Second, func() bool { return leavingOn(b) })
	// Cleared in the cluster's state, as a's copy shows it: placement reads
	// it there. (b's own copy follows when the leader's next append
	// reaches it, and raft's replication to a follower that was down backs
	// off for up to seconds under load: CI saw b's copy clear 2.4 and
	// 3.7 s late while a's had it within a round trip.)
	c.mu.Lock()
	a := c.nodes["a"]
	c.mu.Unlock()
	took := c.waitFor("b's leaving mark cleared", 10*time.Second, func() bool { return !leavingOn(a) })
	// A proposal round trip, not the 1 s poll of an idle agent.
	if took > 700*time.Millisecond {
		t.Fatalf("the replayed leaving mark was cleared %v after b applied it", took)
	}
	t.Logf("cleared %v after it was replayed", took)
}

func TestInProcessMonitorFailureRestartsThenMoves(t *testing.T) {
	c := newCluster(t, "manual")
	c.startAll()
	c.waitRunningOn("a")
	c.mu.Lock()
	app := c.agents["a"]["exec-0"]
	c.mu.Unlock()
	app.Set(func(m *resource.Mem) { m.MonitorErr = resource.Failf(resource.Soft, "crashed") })
	// max_restarts 1: one restart in place, then the group moves to b.
	c.waitRunningOn("b")
	n := 0
	app.Set(func(m *resource.Mem) { n = m.Starts })
	if n != 2 {
		c.dumpEvents()
		t.Fatalf("a started the app %d times, want 2 (one restart in place)", n)
	}
	st := c.nodes["b"].Status()
	if len(st.Groups) != 1 || len(st.Groups[0].Banned) != 1 || st.Groups[0].Banned[0] != "a" {
		t.Fatalf("a not banned: %+v", st.Groups)
	}
}

func TestMain(m *testing.M) { os.Exit(m.Run()) }

// A data node with Linux md arrays publishes their health events (from
// /proc/mdstat, here recorded samples) on its bus and in its audit log,
// beside the cluster's own events; the witness does not watch md.
func TestInProcessMDStatEventsReachTheAuditLog(t *testing.T) {
	c := newCluster(t, "auto")
	c.mdstat = filepath.Join(c.dir, "mdstat")
	sample := func(name string) {
		b, err := os.ReadFile(filepath.Join("..", "mdstat", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(c.mdstat+".tmp", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(c.mdstat+".tmp", c.mdstat); err != nil {
			t.Fatal(err)
		}
	}
	sample("01-healthy.txt")
	c.startAll()
	sample("02-failed.txt")
	audit := func(node string) string {
		b, _ := os.ReadFile(filepath.Join(c.dir, node, "events.jsonl"))
		return string(b)
	}
	c.waitFor("md events in a's audit log", 10*time.Second, func() bool {
		a := audit("a")
		return strings.Contains(a, `"kind":"Fail"`) && strings.Contains(a, `"kind":"DegradedArray"`) && strings.Contains(a, "md1")
	})
	if w := audit("w"); strings.Contains(w, "DegradedArray") {
		t.Fatal("the witness watched md")
	}
}

// A failover with no target named and no node to take the group says why
// each candidate cannot (a new user's walk got only "no other node can
// run www now").
func TestInProcessFailoverWithNoTargetSaysWhy(t *testing.T) {
	c := newCluster(t, "manual")
	c.startAll()
	c.waitRunningOn("a")
	c.crash("b")
	c.waitFor("b seen down", 10*time.Second, func() bool { return !c.nodes["a"].hb.Reachable(c.nodes["a"].voterIndex("b")) })
	_, err := c.nodes["a"].Failover(context.Background(), "web", "", "test")
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "b is unreachable") {
		t.Fatalf("failover with no eligible node: %v", err)
	}
}
