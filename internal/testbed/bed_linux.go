package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"tandem/internal/netutil"
)

// Options configure a bed.
type Options struct {
	// Binary is the tandem executable the hosts run (see BuildTandem).
	Binary string
	// Logf receives progress (t.Logf); nil discards it.
	Logf func(format string, args ...any)
	// Base starts every name the bed creates (default "ttb"); the owner's
	// pid follows it, which is how stale leftovers are recognised.
	Base string
	// Keep keeps the work directory (logs, audit logs, probe timeline);
	// TANDEM_BED_KEEP=1 sets it from the environment.
	Keep bool
	// NormalPriority runs the daemons and the prober at normal priority.
	// By default they run under SCHED_RR (chrt -r 10), as corosync runs
	// itself: on a shared 2-core machine a normal process can wake up
	// 200 ms late, longer than tandem's 150 ms node timeout, and the bed
	// would measure the neighbours instead of the cluster. tandem and
	// keepalived always get the same treatment. TANDEM_BED_SCHED=normal
	// sets it from the environment.
	NormalPriority bool
}

// Bed is a set of hosts: node1 and node2 on both links, the witness and the
// client on link 0. Methods are safe for concurrent use.
type Bed struct {
	Prefix string
	Dir    string
	Binary string

	opts  Options
	logf  func(string, ...any)
	lab   *netutil.Lab
	hosts map[string]*Host

	mu       sync.Mutex
	procs    []*exec.Cmd
	faults   []Fault
	drops    map[string]map[dropRule]bool // host → active nftables drops
	slow     map[hostLink]bool            // links with a tbf qdisc
	failed   bool
	closed   bool
	cluster  *Cluster
	checkers []*Checker
	crashes  []string
	loops    map[string]string // loop devices of killed hosts (noteStorage)
	conns    map[int]bool      // their FUSE connections
	storage  storage           // what Close releases
}

// Host is one machine of the bed.
type Host struct {
	Name  string
	NS    *netutil.NS
	Addrs []netip.Addr // one per link
	MACs  []string     // of eth<i>
	ports []string     // switch port of each link
}

var bedSeq atomic.Int32

// New builds a bed: it installs missing tools, removes what dead runs of
// the same base left behind, then creates the switch and the hosts. On an
// error everything created so far is removed again.
func New(ctx context.Context, opts Options) (*Bed, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("testbed: needs root (network namespaces, nftables)")
	}
	if opts.Base == "" {
		opts.Base = "ttb"
	}
	if os.Getenv("TANDEM_BED_SCHED") == "normal" {
		opts.NormalPriority = true
	}
	if os.Getenv("TANDEM_BED_KEEP") != "" {
		opts.Keep = true
	}
	b := &Bed{opts: opts, Binary: opts.Binary, logf: opts.Logf, hosts: map[string]*Host{},
		drops: map[string]map[dropRule]bool{}, slow: map[hostLink]bool{}}
	if b.logf == nil {
		b.logf = func(string, ...any) {}
	}
	if err := EnsureTools(ctx, b.logf, "ip", "nft", "tc", "chrt"); err != nil {
		return nil, err
	}
	if removed := RemoveStale(opts.Base); len(removed) > 0 {
		b.logf("testbed: removed leftovers of dead runs: %s", strings.Join(removed, ", "))
	}
	// One letter per bed of this process, skipping a letter whose switch
	// namespace is still there: a bed whose teardown could not delete its
	// namespaces (EBUSY while another mount namespace held a copy of the
	// mount) made every 26th bed after it fail to start (storage seeds
	// 40115, 40141, 40167, 40193 of a 200-schedule run).
	for range 26 {
		b.Prefix = netutil.UniquePrefix(opts.Base) + string(rune('a'+bedSeq.Add(1)%26))
		if _, err := os.Stat(filepath.Join(netutil.NamedDir, b.Prefix+"-sw")); os.IsNotExist(err) {
			break
		}
	}
	dir, err := os.MkdirTemp("", b.Prefix+"-")
	if err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	b.Dir = dir
	register(b)
	// The bed stays in b whatever setup returns: with a named result, a
	// "return nil, err" would clear it before a deferred cleanup could
	// close it (that was a nil-pointer panic that aborted the whole e2e
	// binary on any setup error).
	if err := b.setup(); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// setup creates the switch with both bridges and the hosts.
func (b *Bed) setup() error {
	var err error
	if b.lab, err = netutil.NewLab(b.Prefix); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	if err := b.lab.Switch.Do(func() error { return addBridge("br1") }); err != nil {
		return fmt.Errorf("testbed: second bridge: %w", err)
	}
	for _, name := range []string{"node1", "node2", "witness", "client"} {
		if err := b.addHost(name); err != nil {
			return err
		}
	}
	return nil
}

func (b *Bed) addHost(name string) error {
	n := hostNumber[name]
	lh, err := b.lab.AddHost(name, netip.PrefixFrom(linkAddr(0, n), 24))
	if err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	h := &Host{Name: name, NS: lh.NS, Addrs: []netip.Addr{linkAddr(0, n)}, MACs: []string{lh.MAC.String()}, ports: []string{lh.Port}}
	for link := 1; link < hostLinks[name]; link++ {
		port := fmt.Sprintf("q%d-%s", link, name)
		if len(port) > 15 {
			port = port[:15]
		}
		addr := netip.PrefixFrom(linkAddr(link, n), 24)
		mac, err := b.plug(h.NS, "br"+strconv.Itoa(link), port, Iface(link), addr)
		if err != nil {
			return fmt.Errorf("testbed: host %s link %d: %w", name, link, err)
		}
		h.Addrs = append(h.Addrs, addr.Addr())
		h.MACs = append(h.MACs, mac)
		h.ports = append(h.ports, port)
	}
	b.hosts[name] = h
	return nil
}

func addBridge(name string) error {
	off := false
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}, MulticastSnooping: &off}
	if err := netlink.LinkAdd(br); err != nil {
		return err
	}
	return netlink.LinkSetUp(br)
}

// plug connects ns to bridge br in the switch namespace through a veth
// pair (port in the switch, ifname in the host) and configures addr.
func (b *Bed) plug(ns *netutil.NS, br, port, ifname string, addr netip.Prefix) (string, error) {
	err := b.lab.Switch.Do(func() error {
		hostNS, err := netns.GetFromPath(ns.Path())
		if err != nil {
			return err
		}
		defer hostNS.Close()
		bridge, err := netlink.LinkByName(br)
		if err != nil {
			return err
		}
		veth := &netlink.Veth{
			LinkAttrs: netlink.LinkAttrs{Name: port, MasterIndex: bridge.Attrs().Index},
			PeerName:  ifname, PeerNamespace: netlink.NsFd(hostNS),
		}
		if err := netlink.LinkAdd(veth); err != nil {
			return err
		}
		return setUp(port, true)
	})
	if err != nil {
		return "", err
	}
	var mac string
	err = ns.Do(func() error {
		link, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		mac = link.Attrs().HardwareAddr.String()
		if err := netlink.AddrAdd(link, netutil.NetlinkAddr(addr)); err != nil {
			return err
		}
		return netlink.LinkSetUp(link)
	})
	return mac, err
}

func setUp(name string, up bool) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if up {
		return netlink.LinkSetUp(link)
	}
	return netlink.LinkSetDown(link)
}

// Host returns the named host (node1, node2, witness, client).
func (b *Bed) Host(name string) *Host {
	h, ok := b.hosts[name]
	if !ok {
		panic("testbed: no host " + name)
	}
	return h
}

// NodeOfMAC names the host whose link-0 interface has mac ("" if none).
func (b *Bed) NodeOfMAC(mac string) string {
	for _, h := range b.hosts {
		for _, m := range h.MACs {
			if m == mac {
				return h.Name
			}
		}
	}
	return ""
}

// rtPriority is the SCHED_RR priority of the bed's daemons.
const rtPriority = "10"

// Command runs a program on host h, under SCHED_RR unless
// Options.NormalPriority. It is killed when the bed closes.
func (b *Bed) Command(h string, name string, args ...string) *exec.Cmd {
	if !b.opts.NormalPriority {
		name, args = "chrt", append([]string{"-r", rtPriority, name}, args...)
	}
	cmd := b.Host(h).NS.Command(context.Background(), name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Start starts cmd, made by Command, as the bed starts its own daemons:
// from the one thread that outlives it (see spawn: a child started from
// any other thread may get its parent-death SIGKILL at a random moment),
// killed when the bed closes, and listed by Crashes if it exits on its own
// with an error. ServiceRunning tells when it has ended.
func (b *Bed) Start(cmd *exec.Cmd) error { return b.start(cmd) }

// start starts cmd and tracks it for Close.
func (b *Bed) start(cmd *exec.Cmd) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("testbed: closed")
	}
	if err := spawn(cmd); err != nil {
		return err
	}
	b.procs = append(b.procs, cmd)
	go func() {
		err := cmd.Wait()
		b.mu.Lock()
		closed := b.closed
		b.mu.Unlock()
		if !closed && err != nil && !killed(err) {
			msg := fmt.Sprintf("%s exited on its own: %v", strings.Join(cmd.Args[3:], " "), err)
			b.logf("testbed: %s", msg)
			b.mu.Lock()
			b.crashes = append(b.crashes, msg)
			b.mu.Unlock()
		}
	}()
	return nil
}

// Crashes lists the processes that exited on their own with an error
// (a panic, a failed start) rather than by the bed's signals.
func (b *Bed) Crashes() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.crashes...)
}

// killed reports whether a process ended by a signal (the bed's faults).
func killed(err error) bool {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
			return ws.Signaled()
		}
	}
	return false
}

// spawn starts cmd from one OS thread that lives as long as the process.
// Pdeathsig fires when the thread that forked the child exits, not the
// process, and Go ends any thread whose goroutine exits while locked to it
// — which every namespace switch (netutil's Do) does. A child started from
// such a thread would be SIGKILLed at a random later moment.
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: this thread is never reused or ended
			for f := range spawnCh {
				f()
			}
		}()
	})
	errc := make(chan error, 1)
	spawnCh <- func() { errc <- cmd.Start() }
	return <-errc
}

var (
	spawnOnce sync.Once
	spawnCh   chan func()
)

// Fail marks the run failed: Close keeps the work directory.
func (b *Bed) Fail() {
	b.mu.Lock()
	b.failed = true
	b.mu.Unlock()
}

// Close releases the hosts' storage (aborts the bed's FUSE connections,
// lazily unmounts its mounts, detaches its loop devices: storage_linux.go),
// stops every process on the hosts (thawing frozen ones first),
// deletes the namespaces (and with them links, qdiscs and nftables tables)
// and removes the work directory unless the run failed or Keep is set.
// It is safe to call more than once.
func (b *Bed) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	checkers, procs := b.checkers, b.procs
	b.mu.Unlock()
	defer unregister(b)
	for _, c := range checkers {
		c.Stop()
	}
	// Before any process dies: a mount namespace lives as long as one of
	// its processes, and only a live one names the bed's mounts.
	b.releaseStorage()
	for _, cmd := range procs {
		if cmd.Process != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Process.Kill()
		}
	}
	var errs []error
	if b.lab != nil {
		for _, h := range b.lab.Hosts {
			killNamespace(h.Path())
		}
		errs = append(errs, b.lab.Close())
	}
	if left := b.detachLoops(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("testbed: loop devices still attached: %s", strings.Join(left, ", ")))
	}
	b.mu.Lock()
	keep := b.failed || b.opts.Keep
	faults := b.faults
	b.mu.Unlock()
	if b.Dir != "" {
		if keep {
			os.WriteFile(filepath.Join(b.Dir, "faults.log"), []byte(FaultLog(faults)), 0o644)
			// For a later look at the same logs (ReadKeptRun).
			if js, err := json.Marshal(faults); err == nil {
				os.WriteFile(filepath.Join(b.Dir, "faults.json"), js, 0o644)
			}
			os.WriteFile(filepath.Join(b.Dir, keepMarker), nil, 0o644)
			b.logf("testbed: logs kept in %s", b.Dir)
		} else {
			os.RemoveAll(b.Dir)
		}
	}
	return errors.Join(errs...)
}

// killNamespace thaws and kills every process in the namespace at path and
// waits (briefly) until none is left, so the namespace can go.
func killNamespace(path string) {
	signalAll(path, syscall.SIGCONT)
	for i := 0; i < 100; i++ {
		if signalAll(path, syscall.SIGKILL) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// keepMarker in a work directory keeps RemoveStale from deleting the logs
// of a failed run.
const keepMarker = "KEEP"

// RemoveStale removes what runs of base whose process is gone left behind:
// processes in their namespaces, the namespaces themselves and unmarked
// work directories. It returns what it removed.
func RemoveStale(base string) []string {
	var removed []string
	entries, _ := os.ReadDir(netutil.NamedDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), base) && !netutil.OwnerAlive(strings.TrimPrefix(e.Name(), base)) {
			killNamespace(filepath.Join(netutil.NamedDir, e.Name()))
		}
	}
	if names, _ := netutil.RemoveStale(base); len(names) > 0 {
		removed = append(removed, names...)
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), base+"[0-9]*"))
	for _, d := range dirs {
		if netutil.OwnerAlive(strings.TrimPrefix(filepath.Base(d), base)) {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, keepMarker)); err == nil {
			continue
		}
		if os.RemoveAll(d) == nil {
			removed = append(removed, d)
		}
	}
	return removed
}

var (
	liveMu sync.Mutex
	live   = map[*Bed]bool{}
)

func register(b *Bed) {
	liveMu.Lock()
	live[b] = true
	liveMu.Unlock()
}

func unregister(b *Bed) {
	liveMu.Lock()
	delete(live, b)
	liveMu.Unlock()
}

// CloseAll closes every bed of this process.
func CloseAll() {
	liveMu.Lock()
	beds := make([]*Bed, 0, len(live))
	for b := range live {
		beds = append(beds, b)
	}
	liveMu.Unlock()
	for _, b := range beds {
		b.Close()
	}
}

// CloseOnSignal makes SIGINT, SIGTERM and SIGHUP close every bed before the
// process exits (for test binaries: `go test` has no hook for Ctrl-C).
func CloseOnSignal() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-c
		fmt.Fprintf(os.Stderr, "testbed: %v: tearing the beds down\n", s)
		CloseAll()
		os.Exit(128 + int(s.(syscall.Signal)))
	}()
}

// CloseBefore closes every bed shortly before deadline (a test binary's
// -timeout panics without running cleanups).
func CloseBefore(deadline time.Time) {
	if deadline.IsZero() {
		return
	}
	d := time.Until(deadline) - 5*time.Second
	if d < 0 {
		d = 0
	}
	time.AfterFunc(d, func() {
		fmt.Fprintln(os.Stderr, "testbed: the test binary's deadline is near: tearing the beds down")
		CloseAll()
	})
}
