package testbed

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"tandem/internal/netutil"
	"time"
)

func (b *Bed) record(f Fault) Fault {
	if f.At.IsZero() {
		f.At = time.Now()
	}
	b.mu.Lock()
	b.faults = append(b.faults, f)
	b.mu.Unlock()
	b.logf("fault: %s", f)
	return f
}

// Record adds a fault made outside the bed to the fault log, at f.At (now
// when zero): tandem drill --unplanned kills the active agent through its
// API, and the audit must know that agent was killed, and when.
func (b *Bed) Record(f Fault) Fault { return b.record(f) }

// Faults returns the fault log so far.
func (b *Bed) Faults() []Fault {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Fault(nil), b.faults...)
}

// Kill SIGKILLs every process on host h: a crash of the machine's software
// (the namespace's kernel state — addresses, nftables — stays, as after a
// daemon crash; Isolate models a machine that is gone).
func (b *Bed) Kill(h string) Fault {
	path := b.Host(h).NS.Path()
	pids := netutil.ProcessesIn(path) // before the clock starts: /proc takes ms
	b.noteStorage(pids)               // while its mount namespace names it
	held := b.hostStorage(pids)
	f := Fault{Kind: FaultKill, Host: h, At: time.Now()}
	// Stop everything first: a child whose parent dies first may get a
	// parent-death signal it handles gracefully (keepalived's VRRP process
	// would resign with a priority-0 advert) — a crash does no such thing.
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGSTOP)
	}
	// A signal is acted on only when its target next runs; make sure every
	// one is stopped before any dies.
	for deadline := time.Now().Add(100 * time.Millisecond); !allStopped(pids) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Microsecond)
	}
	// Until every thread is stopped the host can still answer (a loaded
	// machine takes tens of ms to deliver the stops): the kill is complete
	// from then on, as the audit judges it (Incapacities).
	f.Done = time.Now()
	// Children before parents: when a parent dies while a child of its
	// process group is stopped, the kernel sends the orphaned group SIGHUP
	// and SIGCONT, and the child would run its shutdown (keepalived's VRRP
	// process sent a priority-0 advert, a graceful handover).
	for _, p := range deepestFirst(pids) {
		syscall.Kill(p, syscall.SIGKILL)
	}
	// Wait until every thread of every process is gone, so a restart finds
	// its ports and file locks free: a killed process's leader turns
	// zombie (and leaves the namespace's process list) while its other
	// threads may still hold the files for a long time on a loaded machine.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		more := netutil.ProcessesIn(path)
		for _, p := range more {
			syscall.Kill(p, syscall.SIGKILL)
		}
		pids = append(pids, more...)
		if len(more) == 0 && allExited(pids) {
			break
		}
	}
	if d := time.Since(f.At); d > 200*time.Millisecond {
		b.logf("testbed: the processes of %s took %v to exit after SIGKILL", h, d.Round(time.Millisecond))
	}
	releaseKilled(held)
	return b.record(f)
}

// Freeze SIGSTOPs every process on host h (a hung machine whose kernel
// still answers, the worst case for a floating IP).
func (b *Bed) Freeze(h string) Fault {
	path := b.Host(h).NS.Path()
	pids := netutil.ProcessesIn(path)
	f := Fault{Kind: FaultFreeze, Host: h, At: time.Now()}
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGSTOP)
	}
	signalAll(path, syscall.SIGSTOP) // anything forked meanwhile
	return b.record(f)
}

// Thaw SIGCONTs every process on host h.
func (b *Bed) Thaw(h string) Fault {
	f := b.record(Fault{Kind: FaultThaw, Host: h})
	signalAll(b.Host(h).NS.Path(), syscall.SIGCONT)
	return f
}

// KillService SIGKILLs the processes on host h whose command line contains
// match (a managed service dying under its agent).
func (b *Bed) KillService(h, match string) (Fault, error) {
	f := Fault{Kind: FaultKillService, Host: h, Detail: match, At: time.Now()}
	n := 0
	for _, pid := range netutil.ProcessesIn(b.Host(h).NS.Path()) {
		if strings.Contains(cmdline(pid), match) {
			syscall.Kill(pid, syscall.SIGKILL)
			n++
		}
	}
	if n == 0 {
		return f, fmt.Errorf("testbed: no process on %s matches %q", h, match)
	}
	return b.record(f), nil
}

// dropRule drops IP packets from host From to host To on one link (Link
// -1: every link), filtered in To's namespace. From "" drops every
// heartbeat datagram To receives (UDP to the cluster port), from anyone.
type dropRule struct {
	From, To string
	Link     int
	// Port, when not 0, drops only the TCP segments to or from that port
	// (one service's connections, the others untouched).
	Port int
}

// BlockHeartbeats drops every heartbeat datagram host h receives, on every
// link (raft and clients still get through): its lease cannot be renewed,
// while the others still hear it. Heal ends it.
func (b *Bed) BlockHeartbeats(h string) (Fault, error) {
	return b.inject(Fault{Kind: FaultBlockHeartbeats, Host: h}, func() error { return b.addDrops(dropRule{"", h, -1, 0}) })
}

// CutOff drops all traffic between host h and the other voters (both
// ways, every link). The client still reaches h: a node that lost its
// peers but not its clients is where two actives would show.
func (b *Bed) CutOff(h string) (Fault, error) {
	var rules []dropRule
	for _, p := range []string{"node1", "node2", "witness"} {
		if p != h {
			rules = append(rules, dropRule{h, p, -1, 0}, dropRule{p, h, -1, 0})
		}
	}
	return b.inject(Fault{Kind: FaultCutOff, Host: h}, func() error { return b.addDrops(rules...) })
}

// inject applies a fault that takes a while to put in place (several
// namespaces, nft runs): At is when it began, Done when it was complete.
func (b *Bed) inject(f Fault, apply func() error) (Fault, error) {
	f.At = time.Now()
	err := apply()
	f.Done = time.Now()
	return b.record(f), err
}

// ReplicationDown drops the replication link of the bed's first volume
// between the data nodes (TCP to and from VolumePort, both ways, every
// link) and nothing else: heartbeats, raft and the clients get through.
// Heal ends it.
func (b *Bed) ReplicationDown() (Fault, error) {
	return b.inject(Fault{Kind: FaultReplicationDown, Host: "node1", Peer: "node2", Detail: fmt.Sprintf("tcp port %d", VolumePort)}, func() error {
		return b.addDrops(dropRule{"node1", "node2", -1, VolumePort}, dropRule{"node2", "node1", -1, VolumePort})
	})
}

// Partition drops all traffic between a and c, both ways.
func (b *Bed) Partition(a, c string) (Fault, error) {
	return b.inject(Fault{Kind: FaultPartition, Host: a, Peer: c}, func() error {
		return b.addDrops(dropRule{a, c, -1, 0}, dropRule{c, a, -1, 0})
	})
}

// PartitionLink drops the traffic between a and c on one link only, both
// ways (a heartbeat path lost while the others work).
func (b *Bed) PartitionLink(a, c string, link int) (Fault, error) {
	return b.inject(Fault{Kind: FaultPartition, Host: a, Peer: c, Detail: Iface(link)}, func() error {
		return b.addDrops(dropRule{a, c, link, 0}, dropRule{c, a, link, 0})
	})
}

// OneWay drops the traffic from a to c; c still reaches a.
func (b *Bed) OneWay(a, c string) (Fault, error) {
	return b.inject(Fault{Kind: FaultOneWay, Host: a, Peer: c}, func() error { return b.addDrops(dropRule{a, c, -1, 0}) })
}

func (b *Bed) addDrops(rules ...dropRule) error {
	b.mu.Lock()
	touched := map[string]bool{}
	for _, r := range rules {
		if b.drops[r.To] == nil {
			b.drops[r.To] = map[dropRule]bool{}
		}
		b.drops[r.To][r] = true
		touched[r.To] = true
	}
	b.mu.Unlock()
	// In parallel: the fault should land everywhere at (nearly) once.
	errs := make(chan error, len(touched))
	for h := range touched {
		go func() { errs <- b.applyDrops(h) }()
	}
	var all []error
	for range touched {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// faultTable is the bed's own nftables table in each host; tandem's VIP
// guard has tables of its own, which the bed never touches.
const faultTable = "ttbfault"

// applyDrops replaces host h's fault table with its current drop rules,
// in one nft transaction.
func (b *Bed) applyDrops(h string) error {
	b.mu.Lock()
	srcs := map[int][]string{} // by port, 0 for every packet
	seen := map[string]bool{}
	heartbeats := false
	for r := range b.drops[h] {
		if r.From == "" {
			heartbeats = true
			continue
		}
		for i, a := range b.Host(r.From).Addrs {
			key := fmt.Sprintf("%s/%d", a, r.Port)
			if (r.Link < 0 || r.Link == i) && !seen[key] {
				seen[key] = true
				srcs[r.Port] = append(srcs[r.Port], a.String())
			}
		}
	}
	b.mu.Unlock()
	script := fmt.Sprintf("table inet %s\ndelete table inet %s\n", faultTable, faultTable)
	var rules []string
	ports := make([]int, 0, len(srcs))
	for p := range srcs {
		ports = append(ports, p)
	}
	sort.Ints(ports)
	for _, p := range ports {
		sort.Strings(srcs[p])
		from := fmt.Sprintf("ip saddr { %s }", strings.Join(srcs[p], ", "))
		if p == 0 {
			rules = append(rules, from+" drop")
		} else {
			rules = append(rules, fmt.Sprintf("%s tcp dport %d drop", from, p), fmt.Sprintf("%s tcp sport %d drop", from, p))
		}
	}
	if heartbeats {
		rules = append(rules, fmt.Sprintf("udp dport %d drop", clusterPort))
	}
	if len(rules) > 0 {
		script += fmt.Sprintf("table inet %s {\n chain input {\n  type filter hook input priority -300; policy accept;\n  %s\n }\n}\n",
			faultTable, strings.Join(rules, "\n  "))
	}
	return b.run(h, script, "nft", "-f", "-")
}

// run runs a tool on host h, with stdin.
func (b *Bed) run(h, stdin string, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := b.Host(h).NS.Command(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testbed: %s on %s: %w: %s", name, h, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Isolate takes every link of host h down at the switch: the machine is
// gone from the network (a pulled cable, a dead NIC or a dead host).
func (b *Bed) Isolate(h string) (Fault, error) {
	return b.inject(Fault{Kind: FaultIsolate, Host: h}, func() error {
		for i := range b.Host(h).ports {
			if err := b.setPort(h, i, false); err != nil {
				return err
			}
		}
		return nil
	})
}

// LinkDown takes host h's link i down at the switch.
func (b *Bed) LinkDown(h string, link int) (Fault, error) {
	f := b.record(Fault{Kind: FaultLinkDown, Host: h, Detail: Iface(link)})
	return f, b.setPort(h, link, false)
}

// LinkUp brings host h's link i back.
func (b *Bed) LinkUp(h string, link int) (Fault, error) {
	f := b.record(Fault{Kind: FaultLinkUp, Host: h, Detail: Iface(link)})
	return f, b.setPort(h, link, true)
}

func (b *Bed) setPort(h string, link int, up bool) error {
	port := b.Host(h).ports[link]
	if err := b.lab.Switch.Do(func() error { return setUp(port, up) }); err != nil {
		return fmt.Errorf("testbed: %s link %d up=%v: %w", h, link, up, err)
	}
	return nil
}

// Flap takes host h's links down for down and up for up, count times, then
// leaves them up. It returns early when ctx ends.
func (b *Bed) Flap(ctx context.Context, h string, links []int, down, up time.Duration, count int) error {
	for i := 0; i < count; i++ {
		for _, l := range links {
			if _, err := b.LinkDown(h, l); err != nil {
				return err
			}
		}
		sleepCtx(ctx, down)
		for _, l := range links {
			if _, err := b.LinkUp(h, l); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		sleepCtx(ctx, up)
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Slow shapes host h's outgoing traffic on link with a token bucket
// (tbf): rate like "64kbit", and packets wait up to latency in the queue
// before being dropped. The kernel here has no netem; a slow, narrow link
// is what tbf can make.
func (b *Bed) Slow(h string, link int, rate string, latency time.Duration) (Fault, error) {
	f := b.record(Fault{Kind: FaultSlow, Host: h, Detail: fmt.Sprintf("%s rate %s latency %v", Iface(link), rate, latency)})
	err := b.run(h, "", "tc", "qdisc", "replace", "dev", Iface(link), "root", "tbf",
		"rate", rate, "burst", "1600", "latency", fmt.Sprintf("%dms", latency.Milliseconds()))
	if err == nil {
		b.mu.Lock()
		b.slow[hostLink{h, link}] = true
		b.mu.Unlock()
	}
	return f, err
}

// Heal undoes every network fault: drops, links down and slow links.
func (b *Bed) Heal() (Fault, error) {
	f := b.record(Fault{Kind: FaultHeal})
	b.mu.Lock()
	var hosts []string
	for h := range b.drops {
		hosts = append(hosts, h)
	}
	b.drops = map[string]map[dropRule]bool{}
	slow := b.slow
	b.slow = map[hostLink]bool{}
	b.mu.Unlock()
	var errs []string
	for _, h := range hosts {
		if err := b.applyDrops(h); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for _, h := range b.hosts {
		for i := range h.ports {
			if err := b.setPort(h.Name, i, true); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	for hl := range slow {
		if err := b.run(hl.host, "", "tc", "qdisc", "del", "dev", Iface(hl.link), "root"); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return f, fmt.Errorf("testbed: heal: %s", strings.Join(errs, "; "))
	}
	return f, nil
}

// Mark records an operator's action (a switchover, standby, maintenance)
// in the fault log, so its effect can be measured like a fault's.
func (b *Bed) Mark(what, host, peer string) Fault {
	return b.record(Fault{Kind: FaultAdmin, Host: host, Peer: peer, Detail: what})
}

// ServiceRunning reports whether a process whose command line contains
// match runs on host h.
func (b *Bed) ServiceRunning(h, match string) bool {
	for _, pid := range netutil.ProcessesIn(b.Host(h).NS.Path()) {
		if pidAlive(pid) && strings.Contains(cmdline(pid), match) {
			return true
		}
	}
	return false
}

// hostLink is one link of one host.
type hostLink struct {
	host string
	link int
}
