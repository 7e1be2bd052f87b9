// Package node wires one tandem agent (a data node or the witness): the
// heartbeat runner, consensus, the placement decider (on the leader), the
// manager and its resource agents, the kernel VIP guard, the audit log and
// the admin operations the API exposes. It holds no logic of its own beyond
// wiring and translating between the pieces. Imported by cmd and the API.
package node

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tandem/internal/clock"
	"tandem/internal/config"
	"tandem/internal/consensus"
	"tandem/internal/events"
	"tandem/internal/fence"
	"tandem/internal/fencepolicy"
	"tandem/internal/heartbeat"
	"tandem/internal/keyfile"
	"tandem/internal/lease"
	"tandem/internal/manager"
	"tandem/internal/mdstat"
	"tandem/internal/notify"
	"tandem/internal/placement"
	"tandem/internal/resource"
	"tandem/internal/state"
	"tandem/internal/vipguard"
	"tandem/internal/watchdog"
)

// Options configure a node.
type Options struct {
	Config *config.Config
	Self   string
	// Logger receives the node's log. It names the node already (the agent
	// adds node=<name>), so the node adds no key of its own for it.
	Logger *slog.Logger
	// Registerer receives metrics (nil: a private registry).
	Registerer prometheus.Registerer
	// Transport overrides the UDP heartbeat transport (in-process tests).
	Transport heartbeat.Transport
	// Guard overrides the kernel VIP guard (nil: nftables when the config
	// has VIPs).
	Guard vipguard.Guard
	// NoGuard runs VIPs without the kernel guard (tests without root).
	NoGuard bool
	// InMemoryRaft keeps raft in memory (in-process tests).
	InMemoryRaft bool
	// Agent, if set, builds every resource agent instead of the real
	// vip/exec/ocf agents (in-process tests).
	Agent func(group string, r config.Resource) resource.Agent
	// Cut, for in-process partition tests, blocks consensus traffic from
	// one voter to another (heartbeats are cut in the fake network).
	Cut func(from, to string) bool
	// Fencer, for in-process tests, fences instead of the configured
	// devices (which must still name the peer).
	Fencer fencepolicy.Fencer
	// MDStat is the Linux md status file a data node watches for health
	// events, when it exists at start (default /proc/mdstat: nodes that
	// use md get the same events as tandem's own RAID); MDStatInterval is
	// how often it is read (default 2 s).
	MDStat         string
	MDStatInterval time.Duration
	// Watchdog replaces the configured watchdog device (in-process tests:
	// watchdog.Memory); used only when the configuration has a watchdog.
	Watchdog watchdog.Watchdog
}

// Node is a running agent.
type Node struct {
	opts    Options
	cfg     *config.Config
	digest  string // cfg.Digest()
	self    string
	selfIdx int
	voters  []config.Node
	log     *slog.Logger
	clk     clock.Clock
	bus     *events.Bus
	audit   *events.Log
	notify  *notify.Notifier // nil: nothing is notified
	hb      *heartbeat.Runner
	cons    *consensus.Consensus
	mgr     *manager.Manager
	fence   *fencing // nil: no device fences the peer (or a witness)
	fencer  *fence.Fencer

	// fenceMon monitors the fence devices for status (data nodes).
	fenceMon *fenceMonitor

	guard   vipguard.Guard
	wd      *nodeWatchdog // nil: no watchdog
	vips    []netip.Prefix
	reg     prometheus.Registerer
	evm     *eventMetrics
	started time.Time

	mu          sync.Mutex
	st          *state.State
	leaderSince time.Time
	reach       map[string]reachInfo
	// lastReal is the index of the last applied command that was not a
	// no-op; lastNudge when the leader last appended one for a lagging
	// follower.
	lastReal  uint64
	lastNudge time.Time
	// driftSeen is the configuration mismatch last reported.
	driftSeen string
	// leaving: this agent is shutting down (join must not clear the mark).
	leaving bool
	// volumes are this node's replicas, by volume name (set at start).
	volumes map[string]*nodeVolume

	decide chan struct{}
	// marked is poked when an applied state marks this node leaving: join
	// clears a stale mark as soon as it shows up (replayed after a
	// restart), not at its next poll.
	marked chan struct{}
	// running: the manager runs (Start completed), so Stop hands over.
	running bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type reachInfo struct {
	up        bool
	since     time.Time
	lastHeard time.Time
}

// Start brings the node up.
func Start(opts Options) (*Node, error) {
	cfg := opts.Config
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	n := &Node{opts: opts, cfg: cfg, digest: cfg.Digest(), self: opts.Self, log: opts.Logger, clk: clock.Real{},
		bus: &events.Bus{}, reg: opts.Registerer, st: state.New(), reach: map[string]reachInfo{},
		decide: make(chan struct{}, 1), marked: make(chan struct{}, 1), started: time.Now()}
	n.voters = cfg.Voters()
	n.selfIdx = -1
	for i, v := range n.voters {
		if v.Name == opts.Self {
			n.selfIdx = i
		}
	}
	if n.selfIdx < 0 {
		return nil, fmt.Errorf("node: %q is neither a node nor the witness of cluster %s", opts.Self, cfg.Cluster)
	}
	var key []byte
	if !cfg.Insecure {
		k, err := keyfile.Load(cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		key = k
	}
	addrs := make([][]netip.AddrPort, len(n.voters))
	var cvoters []consensus.Voter
	var hpeers []heartbeat.Peer
	for i, v := range n.voters {
		a, err := cfg.LinkAddrs(v)
		if err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		addrs[i] = a
		cvoters = append(cvoters, consensus.Voter{Name: v.Name, Addrs: a})
		hpeers = append(hpeers, heartbeat.Peer{Name: v.Name, Links: len(a)})
	}

	ok := false
	defer func() {
		if !ok {
			n.Stop()
		}
	}()
	// Audit log first, so start-up problems are recorded.
	evFile := cfg.Events.File
	if evFile == "" {
		evFile = filepath.Join(cfg.StateDir, "events.jsonl")
	}
	audit, err := events.OpenLog(evFile, cfg.Events.Retention.D())
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.audit = audit
	if err := audit.Compact(); err != nil {
		n.log.Warn("cannot compact the audit log", "err", err)
	}
	n.bus.Subscribe(audit)
	var groupNames []string
	for _, g := range cfg.Groups {
		groupNames = append(groupNames, g.Name)
	}
	n.evm = newEventMetrics(groupNames)
	n.bus.Subscribe(n.evm)
	fm := newFenceMetrics(cfg)
	n.bus.Subscribe(fm)
	for _, c := range append(n.evm.collectors(), fm.collectors()...) {
		if err := n.reg.Register(c); err != nil {
			return nil, fmt.Errorf("node: metrics: %w", err)
		}
	}
	go func() {
		if err := n.evm.loadDrills(evFile); err != nil {
			n.log.Warn("cannot read past drills from the audit log", "err", err)
		}
	}()
	// Notifications: its Publish only enqueues, so no hook or webhook
	// can hold up the event path.
	if cfg.Notify.Enabled() {
		if n.notify, err = notify.New(cfg.Notify, cfg.Cluster, notify.Options{Logger: n.log, Registerer: n.reg}); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		n.bus.Subscribe(n.notify)
	}

	// The kernel guard and the resource agents (data nodes only).
	isWitness := cfg.IsWitness(opts.Self)
	var groups []manager.Group
	if !isWitness {
		vips, err := configVIPs(cfg)
		if err != nil {
			return nil, err
		}
		n.vips = vips
		n.guard = opts.Guard
		if len(vips) > 0 && n.guard == nil && !opts.NoGuard {
			g, err := vipguard.NewNFT(vipguard.Options{})
			if err != nil {
				return nil, fmt.Errorf("node: the kernel VIP guard is needed for VIPs (run as root): %w", err)
			}
			n.guard = g
		}
		if n.guard != nil {
			if err := n.guard.Install(vips); err != nil {
				return nil, fmt.Errorf("node: install the kernel VIP guard: %w", err)
			}
		}
		if err := n.startVolumes(); err != nil {
			return nil, err
		}
		if groups, err = buildGroups(cfg, opts.Self, n.guard, opts.Agent, n.volumeAgents(), n.log); err != nil {
			return nil, err
		}
	}
	// Fencing (before the heartbeats, which feed it): every member can
	// fence by hand (FenceNode); data nodes also on their own.
	f, err := FencerFromConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	f.Events, f.Self, f.Log = n.bus, opts.Self, n.log
	n.fencer = f
	if !isWitness {
		if n.fence, err = newFencing(n, f); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		n.fenceMon = newFenceMonitor(n)
	}

	// The watchdog is armed before any lease can be held.
	if n.wd, err = n.openWatchdog(); err != nil {
		return nil, err
	}
	// Heartbeats and leases.
	tr := opts.Transport
	if tr == nil {
		u, err := heartbeat.ListenUDP(addrs[n.selfIdx])
		if err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		tr = u
	}
	t := cfg.Timing
	// A boot number that only grows across this node's restarts: peers
	// refuse its older lives' datagrams, and no ack of an older life
	// matches a round of this one.
	boot, err := heartbeat.NextBoot(filepath.Join(cfg.StateDir, "boot"))
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.hb = heartbeat.StartRunner(heartbeat.RunnerConfig{
		Boot: boot,
		Engine: heartbeat.Config{
			Self: n.selfIdx, Voters: hpeers, ConfigHash: configHash(cfg),
			Interval: t.HeartbeatInterval.D(), Timeout: t.NodeTimeout.D(),
			Retry: retryInterval(t.HeartbeatInterval.D()),
			Lease: lease.Params{Duration: t.Lease.D(), Drift: t.MaxClockDrift},
		},
		Key: key, Addrs: addrs, Transport: tr, Clock: n.clk, Logger: n.log,
		OnChange: n.onHeartbeat, Registerer: n.reg,
	})
	n.wd.start(n.hb)

	if !isWitness {
		n.mgr = manager.New(manager.Config{
			Node: opts.Self, Groups: groups, Lease: n.wd.managerLeases(n.hb), Guard: n.guard, Reporter: n,
			Clock: n.clk, Logger: n.log, Events: n.bus, Margin: fenceMargin(t.HeartbeatInterval.D()),
			OnOp: n.evm.op, MayStart: n.mayStart,
		})
	}

	// Consensus.
	prefer := ""
	preferIdx := -1
	if cfg.Witness != nil {
		prefer = cfg.Witness.Name
		preferIdx = len(n.voters) - 1
	}
	dir := consensus.RaftDir(cfg.StateDir) // the same place tandem state check/reset look
	if opts.InMemoryRaft {
		dir = ""
	}
	cons, err := consensus.Start(consensus.Config{
		Self: opts.Self, Voters: cvoters, Key: key, Dir: dir, Timeout: t.RaftTimeout.D(), Boot: boot,
		Logger: n.log, OnApply: n.onApply, PreferLeader: prefer,
		PreferredUp: func() bool { return preferIdx >= 0 && n.hb.Up(preferIdx) },
		Cut:         opts.Cut,
	})
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.cons = cons

	if err := n.reg.Register(newCollector(n)); err != nil {
		return nil, fmt.Errorf("node: metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	if n.fence != nil {
		n.fence.start(ctx)
	}
	if n.fenceMon != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.fenceMon.run(ctx)
		}()
	}
	if n.mgr != nil {
		n.mgr.Run(ctx)
		n.running = true
	}
	n.wg.Add(5)
	go n.leaderLoop(ctx)
	go n.decideLoop(ctx)
	go n.compactLoop(ctx)
	go n.join(ctx)
	go n.announceConfig(ctx)
	if !isWitness {
		n.watchMD(ctx)
	}
	if len(n.volumes) > 0 {
		n.wg.Add(1)
		go n.reportVolumes(ctx)
	}
	n.publish(events.Event{Kind: events.NodeUp, Subject: opts.Self, Message: "agent started"})
	ok = true
	return n, nil
}

// watchMD publishes Linux md health events (Fail, DegradedArray,
// RebuildStarted, ...) on the node's bus, and so in its audit log, when the
// node has md arrays. Without the status file at start (no md module)
// nothing runs: an idle agent polls nothing it does not need.
func (n *Node) watchMD(ctx context.Context) {
	path := n.opts.MDStat
	if path == "" {
		path = "/proc/mdstat"
	}
	if _, err := os.Stat(path); err != nil {
		return
	}
	m := &mdstat.Monitor{Path: path, Interval: n.opts.MDStatInterval, Clock: n.clk, Sink: n.bus, Node: n.self, Logger: n.log}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		m.Run(ctx)
	}()
}

// compactLoop drops audit events older than the retention once a day.
func (n *Node) compactLoop(ctx context.Context) {
	defer n.wg.Done()
	t := time.NewTicker(24 * time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := n.audit.Compact(); err != nil {
				n.log.Warn("cannot compact the audit log", "err", err)
			}
		}
	}
}

// retryInterval is how often a wanted lease is re-requested: short, so a
// takeover starts within a few ms of the old lease's end.
func retryInterval(interval time.Duration) time.Duration {
	r := interval / 10
	if r < 2*time.Millisecond {
		r = 2 * time.Millisecond
	}
	return r
}

// fenceMargin: a group is fenced this long before its lease ends. The
// kernel guard silences the VIP at the exact end anyway; the margin makes
// the agent itself remove the address first when it is not frozen.
func fenceMargin(interval time.Duration) time.Duration {
	m := interval / 5
	if m < 5*time.Millisecond {
		m = 5 * time.Millisecond
	}
	return m
}

// configHash fingerprints what every voter must agree on; heartbeats from
// a node with another voter list are dropped and counted.
func configHash(cfg *config.Config) uint32 {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s|%d|", cfg.Cluster, cfg.Port)
	for _, v := range cfg.Voters() {
		fmt.Fprintf(h, "%s=%v;", v.Name, v.Links)
	}
	fmt.Fprintf(h, "|%v|%v", cfg.Timing.Lease, cfg.Timing.MaxClockDrift)
	return h.Sum32()
}

// Stop hands the groups this node runs over to another node, stops what
// is left, leaves the cluster and closes everything. The handover is a
// planned move (the groups stop here, the leases are given back, then
// they start elsewhere); a group no other node can take is stopped here
// after handoverWait.
func (n *Node) Stop() {
	if n.mgr != nil && n.running {
		n.leave()
	}
	if n.cancel != nil {
		n.cancel()
	}
	if n.mgr != nil {
		n.mgr.Wait()
	}
	n.wg.Wait()
	n.wd.stop() // the groups are stopped and their leases given back
	// The groups are stopped (their volumes demoted); the replicas go
	// before consensus, which a primary's fencer may still be waiting on.
	n.closeVolumes()
	if n.cons != nil {
		n.cons.Shutdown()
	}
	if n.hb != nil {
		n.hb.Stop()
	}
	// The guard's tables stay: a VIP left configured (by a crashed
	// predecessor, or a stop that failed) must stay silenced after this
	// agent is gone. Removing them would let the kernel answer for it.
	if n.guard != nil {
		for _, v := range n.vips {
			if err := n.guard.Revoke(v.Addr()); err != nil {
				n.log.Error("cannot silence VIP on stop", "vip", v, "err", err)
			}
		}
	}
	if n.audit != nil {
		n.publish(events.Event{Kind: events.NodeDown, Subject: n.self, Message: "agent stopped"})
		n.audit.Close()
	}
	n.notify.Close(notifyGrace)
}

// notifyGrace is how long a stopping agent gives its notifications (its
// last: "agent stopped") before it goes.
const notifyGrace = 2 * time.Second

// handoverWait is how long a leaving node waits for the cluster to start
// handing a group over before it stops the group itself.
const handoverWait = 2 * time.Second

// leave tells the cluster this node is shutting down, so placement hands
// its groups over, and waits until nothing runs here.
func (n *Node) leave() {
	n.mu.Lock()
	n.leaving = true
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), handoverWait)
	err := n.cons.Propose(ctx, state.Command{Op: state.OpLeaving, Time: time.Now(), Node: n.self, On: true})
	cancel()
	wait := handoverWait
	if err != nil {
		n.log.Warn("cannot tell the cluster this node is leaving; stopping its groups here", "err", err)
		wait = 0
	}
	// Stops have their own timeouts; this bounds an agent that ignores
	// them, so a shutdown always ends.
	ctx, cancel = context.WithTimeout(context.Background(), wait+n.maxStopTime()+5*time.Second)
	defer cancel()
	n.mgr.Leave(ctx, wait)
}

// maxStopTime is the longest a group's full stop may take.
func (n *Node) maxStopTime() time.Duration {
	var longest time.Duration
	for _, g := range n.cfg.Groups {
		var sum time.Duration
		for _, r := range g.Resources {
			sum += r.StopTimeout.D()
		}
		longest = max(longest, sum)
	}
	return longest
}

// join clears this node's leaving mark (left by its previous agent's
// clean shutdown) once its groups have been probed, so placement may give
// it groups again. It keeps watching while the agent runs: the mark may
// show up late, when the log is replayed after a restart, and is cleared
// as soon as it does: until then the node is not eligible, and a group
// whose holder stops meanwhile has nowhere to go (the failover bench's
// stops came ~1 s after the standby's restart and moved the group to
// nowhere, then waited out the old lease).
func (n *Node) join(ctx context.Context) {
	defer n.wg.Done()
	t := time.NewTimer(joinPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.marked:
		}
		t.Reset(n.joinOnce(ctx))
	}
}

// joinPoll is how often join looks again while the mark is there but cannot
// be cleared yet (groups not probed, proposal failed).
const joinPoll = 50 * time.Millisecond

// joinOnce clears the leaving mark if it may, and says when to look again.
func (n *Node) joinOnce(ctx context.Context) time.Duration {
	n.mu.Lock()
	leaving := n.leaving
	n.mu.Unlock()
	if leaving {
		return time.Hour
	}
	if ns := n.State().Nodes[n.self]; ns == nil || !ns.Leaving {
		return time.Second // the mark, replayed late, pokes marked
	}
	if n.mgr != nil && !n.mgr.Probed() {
		return joinPoll
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := n.cons.Propose(pctx, state.Command{Op: state.OpLeaving, Time: time.Now(), Node: n.self, On: false})
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			n.log.Debug("cannot clear the leaving mark yet", "err", err)
		}
		return joinPoll
	}
	return time.Second
}

// announceConfig puts this member's configuration digest into the
// replicated state, and again whenever the state says otherwise (a
// restore, or the agent restarted with an edited file).
func (n *Node) announceConfig(ctx context.Context) {
	defer n.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	first := time.After(20 * time.Millisecond)
	judged := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-first:
		case <-t.C:
		}
		if !judged {
			// A drift shown by the replayed log is not judged (onApply),
			// but one still going on must be: once a no-op proposed now
			// has been applied here, the state is the cluster's current.
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := n.cons.Propose(pctx, state.Command{Op: state.OpNoop})
			cancel()
			if err == nil {
				judged = true
				n.checkDrift(n.State())
			}
		}
		st := n.State()
		if ns := st.Nodes[n.self]; st.Index == 0 || (ns != nil && ns.Config == n.digest) {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := n.cons.Propose(pctx, state.Command{Op: state.OpConfig, Time: time.Now(), Node: n.self, Digest: n.digest})
		cancel()
		if err != nil && ctx.Err() == nil {
			n.log.Debug("configuration digest not announced yet", "err", err)
		}
	}
}

// checkDrift tells once, in the log and the audit log, that a member runs
// another configuration than the one a majority of voters run.
func (n *Node) checkDrift(st *state.State) {
	voters := n.voterNames()
	ref := st.ClusterConfig(voters)
	var drifted []string
	for _, v := range voters {
		if st.ConfigDiffers(v, voters) {
			drifted = append(drifted, v+" ("+st.Nodes[v].Config+")")
		}
	}
	key := ref + "|" + strings.Join(drifted, ",")
	n.mu.Lock()
	prev := n.driftSeen
	n.driftSeen = key
	n.mu.Unlock()
	if key == prev {
		return
	}
	if len(drifted) == 0 {
		if _, was, _ := strings.Cut(prev, "|"); was != "" {
			n.log.Info("every member runs the cluster's configuration again", "config", ref)
		}
		return
	}
	msg := fmt.Sprintf("configuration differs from the cluster's (%s) on %s", ref, strings.Join(drifted, ", "))
	if n.cfg.ConfigMismatch == config.MismatchBlock {
		msg += "; no group moves onto them until the files agree"
	}
	n.log.Error(msg)
	n.publish(events.Event{Kind: events.ConfigMismatch, Subject: strings.Join(drifted, ","), Message: msg})
}

func (n *Node) voterNames() []string {
	names := make([]string, len(n.voters))
	for i, v := range n.voters {
		names[i] = v.Name
	}
	return names
}

// Crash stops the node the way a power cut or SIGKILL would: no resource
// is stopped and no lease is released (in-process tests).
func (n *Node) Crash() {
	if n.cancel != nil {
		n.cancel()
	}
	if n.mgr != nil {
		n.mgr.Wait()
	}
	n.wg.Wait()
	n.wd.crash() // left armed and unfed
	if n.cons != nil {
		n.cons.Shutdown()
	}
	if n.hb != nil {
		n.hb.Stop()
	}
	if n.audit != nil {
		n.audit.Close()
	}
	n.notify.Close(0)
}

func (n *Node) publish(e events.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.Node == "" {
		e.Node = n.self
	}
	n.bus.Publish(e)
}

// Events returns the bus, for extra sinks (metrics, tests).
func (n *Node) Events() *events.Bus { return n.bus }

// AuditFile is the path of this node's audit log.
func (n *Node) AuditFile() string {
	if n.cfg.Events.File != "" {
		return n.cfg.Events.File
	}
	return filepath.Join(n.cfg.StateDir, "events.jsonl")
}

// onHeartbeat receives the heartbeat runner's transitions.
func (n *Node) onHeartbeat(c heartbeat.Change) {
	n.wd.leaseChanged(c)
	switch c.Kind {
	case heartbeat.PeerUp, heartbeat.PeerDown:
		k := events.NodeUp
		if c.Kind == heartbeat.PeerDown {
			k = events.NodeDown
		}
		n.publish(events.Event{Time: c.At, Kind: k, Subject: c.Peer, Attrs: map[string]any{"last_heard": c.LastHeard}})
		if n.fence != nil && c.Peer == n.fence.peer {
			if c.Kind == heartbeat.PeerUp {
				n.fence.peerHeard()
			} else {
				n.fence.peerLost()
			}
		}
		n.poke()
	case heartbeat.PeerView:
		n.poke()
	case heartbeat.LinkUp, heartbeat.LinkDown:
		k := events.LinkUp
		if c.Kind == heartbeat.LinkDown {
			k = events.LinkDown
		}
		n.publish(events.Event{Time: c.At, Kind: k, Subject: fmt.Sprintf("%s/%d", c.Peer, c.Link)})
	case heartbeat.LeaseAcquired:
		n.publish(events.Event{Time: c.At, Kind: events.LeaseAcquired, Group: c.Group, Epoch: c.Epoch})
		if n.mgr != nil {
			n.mgr.LeaseChanged(c.Group)
		}
	case heartbeat.LeaseExtended, heartbeat.LeaseLost:
		if n.mgr != nil {
			n.mgr.LeaseChanged(c.Group)
		}
	}
}

// onApply receives every applied command with the new state.
func (n *Node) onApply(st *state.State, c state.Command, err error) {
	n.mu.Lock()
	prev := n.st
	n.st = st
	if c.Op != state.OpNoop {
		n.lastReal = st.Index
	}
	n.mu.Unlock()
	if ns := st.Nodes[n.self]; ns != nil && ns.Leaving {
		select {
		case n.marked <- struct{}{}:
		default:
		}
	}
	groups := map[string]heartbeat.GroupState{}
	for name, g := range st.Groups {
		groups[name] = heartbeat.GroupState{Holder: g.Holder, Epoch: g.Epoch}
	}
	n.wd.applied(st) // before the engine may claim a lease
	n.hb.SetState(groups, st.Index)
	if n.fence != nil {
		n.fence.setState(st)
	}
	if n.mgr != nil {
		n.mgr.SetState(st)
	}
	n.deposeVolumes(st)
	// A command proposed before this agent started is a replay of the raft
	// log: the drift it showed (or ended) was reported in its day, and
	// the state at the end of the replay is the one to judge.
	if c.Op == state.OpConfig && !c.Time.Before(n.started) {
		n.checkDrift(st)
	}
	if err == nil && c.Op == state.OpReplica && !c.Time.Before(n.started) {
		n.replicaChanged(prev, st, c)
	}
	// A command proposed before this agent started is a replay of the raft
	// log (a restarted voter that becomes leader applies it again); the
	// leader of its day logged it already.
	if err == nil && c.Op == state.OpPlace && n.cons != nil && n.cons.IsLeader() && !c.Time.Before(n.started) {
		g := st.Groups[c.Group]
		attrs := map[string]any{"reason": c.Reason, "to": c.Holder}
		if c.Takeover != nil {
			attrs["detect_ms"] = c.Takeover.DetectMs
			if !c.Takeover.DownAt.IsZero() {
				attrs["decide_ms"] = time.Since(c.Takeover.DownAt).Milliseconds()
			}
		}
		n.publish(events.Event{Kind: events.Placement, Subject: c.Group, Group: c.Group, Epoch: g.Epoch, Actor: c.Actor,
			Message: fmt.Sprintf("%s → %s: %s", orNowhere(c.Takeover), orNone(c.Holder), c.Reason), Attrs: attrs})
	}
	n.poke()
}

func orNowhere(t *state.Takeover) string {
	if t == nil {
		return "placement"
	}
	return "takeover from " + t.From
}

func orNone(h string) string {
	if h == "" {
		return "nowhere"
	}
	return h
}

// mayStart is the manager's fencing gate.
func (n *Node) mayStart(group string, epoch uint64) bool {
	return n.fence == nil || n.fence.mayStart(group, epoch)
}

// Propose implements manager.Reporter.
func (n *Node) Propose(ctx context.Context, c state.Command) error {
	return n.cons.Propose(ctx, c)
}

func (n *Node) poke() {
	select {
	case n.decide <- struct{}{}:
	default:
	}
}

func (n *Node) leaderLoop(ctx context.Context) {
	defer n.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case isLeader := <-n.cons.LeaderCh():
			n.mu.Lock()
			if isLeader {
				n.leaderSince = time.Now()
			}
			n.mu.Unlock()
			n.publish(events.Event{Kind: events.LeaderChanged, Subject: n.cons.Leader(), Message: fmt.Sprintf("this node leads: %v", isLeader)})
			n.poke()
		}
	}
}

// decideLoop runs placement on the leader whenever something changes
// (liveness, views, applied commands, leadership) and, while this node
// leads, every 200 ms for the time-based rules (failback delays, cold-start
// settle, failure expiry). A follower only keeps its reachability record,
// which changes with the heartbeat's transitions (each pokes), so it has
// no timer: an idle follower's cost is its wake-ups (issue 14).
func (n *Node) decideLoop(ctx context.Context) {
	defer n.wg.Done()
	var tick *time.Ticker
	var tickC <-chan time.Time
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tickC:
		case <-n.decide:
		}
		n.updateReach()
		leader := n.cons.IsLeader()
		switch {
		case leader && tick == nil:
			tick = time.NewTicker(200 * time.Millisecond)
			tickC = tick.C
		case !leader && tick != nil:
			tick.Stop()
			tick, tickC = nil, nil
		}
		if !leader {
			continue
		}
		n.nudgeLaggards()
		n.runPlacement(ctx)
	}
}

// updateReach tracks since when each data node is reachable, and when it
// stopped being so.
func (n *Node) updateReach() {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, v := range n.voters {
		up := n.hb.Reachable(i)
		r := n.reach[v.Name]
		if up != r.up || r.since.IsZero() {
			r.up, r.since = up, now
			if !up {
				r.lastHeard = n.hb.LastHeard(i)
			}
			n.reach[v.Name] = r
		}
	}
}

func (n *Node) runPlacement(ctx context.Context) {
	n.mu.Lock()
	in := placement.Input{
		Now: time.Now(), Groups: n.cfg.Groups, State: n.st.Clone(),
		Reachable: map[string]bool{}, ReachableSince: map[string]time.Time{},
		LastHeard: map[string]time.Time{}, DownAt: map[string]time.Time{},
		LeaderSince: n.leaderSince, Settle: settle(n.cfg),
		Voters: n.voterNames(), BlockDrift: n.cfg.ConfigMismatch == config.MismatchBlock,
	}
	for _, v := range n.cfg.Nodes {
		r := n.reach[v.Name]
		in.Reachable[v.Name] = r.up
		if r.up {
			in.ReachableSince[v.Name] = r.since
		} else {
			in.DownAt[v.Name] = r.since
			in.LastHeard[v.Name] = r.lastHeard
		}
	}
	n.mu.Unlock()
	for _, c := range placement.Decide(in) {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := n.cons.Propose(pctx, c)
		cancel()
		if err != nil && !state.IsStaleEpoch(err) {
			n.log.Warn("placement not committed", "group", c.Group, "to", c.Holder, "err", err)
		}
	}
}

// nudgeLaggards appends a no-op when a live voter reports it has not
// applied the latest command: a follower learns of commits only with the
// next append, and an idle leader sends none for CommitTimeout (a node
// restarting or reconnecting would otherwise wait that long for its state).
func (n *Node) nudgeLaggards() {
	n.mu.Lock()
	last, since := n.lastReal, time.Since(n.lastNudge)
	n.mu.Unlock()
	if since < 100*time.Millisecond {
		return
	}
	for i := range n.voters {
		if i == n.selfIdx || !n.hb.Up(i) || n.hb.Applied(i) >= last {
			continue
		}
		n.mu.Lock()
		n.lastNudge = time.Now()
		n.mu.Unlock()
		go n.cons.Propose(context.Background(), state.Command{Op: state.OpNoop})
		return
	}
}

// settle is how long a node must be reachable before a group moves to it
// by preference: several node timeouts, so a flapping link cannot make a
// group flap.
func settle(cfg *config.Config) time.Duration {
	s := 10 * cfg.Timing.NodeTimeout.D()
	if s < time.Second {
		s = time.Second
	}
	return s
}

// State returns a copy of the applied cluster state.
func (n *Node) State() *state.State {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.st.Clone()
}

// Name is this node's name.
func (n *Node) Name() string { return n.self }

// Config is the cluster configuration.
func (n *Node) Config() *config.Config { return n.cfg }

// ErrNotFound and ErrInvalid classify admin errors for the API.
var (
	ErrNotFound = errors.New("not found")
	ErrInvalid  = errors.New("invalid request")
	ErrConflict = errors.New("conflict")
)
