package testbed

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"tandem/internal/netutil"
	"time"
)

// Keepalived runs keepalived (VRRPv3, the yardstick for floating-IP
// failover) on node1 and node2 for one VIP, next to the bed's HTTP service,
// which runs on both nodes all the time as it would beside keepalived.
// No notify scripts, no health checks: the bare VRRP failover.
type Keepalived struct {
	Bed       *Bed
	VIP       netip.Addr
	Port      int
	AdvertInt time.Duration

	mu    sync.Mutex
	state map[string]string // host → last VRRP state it entered
	log   []Transition
}

// Transition is a VRRP state a node entered, as its log said.
type Transition struct {
	At    time.Time
	Host  string
	State string
}

func (t Transition) String() string {
	return t.At.Format("15:04:05.000") + " " + t.Host + " " + t.State
}

// keepalivedPriority: node1 is the usual master; nopreempt on both keeps
// the VIP where it is after a failover (tandem's manual failback).
var keepalivedPriority = map[string]int{"node1": 150, "node2": 100}

// NewKeepalived prepares keepalived for VIPAddr(vip) with adverts every
// advert (VRRPv3 allows centiseconds).
func (b *Bed) NewKeepalived(ctx context.Context, vip, port int, advert time.Duration) (*Keepalived, error) {
	if err := EnsureTools(ctx, b.logf, "keepalived"); err != nil {
		return nil, err
	}
	return &Keepalived{Bed: b, VIP: VIPAddr(vip), Port: port, AdvertInt: advert, state: map[string]string{}}, nil
}

func (k *Keepalived) config(h string) string {
	return fmt.Sprintf(`global_defs {
    router_id %s
    vrrp_version 3
}
vrrp_instance tandem_bed {
    state BACKUP
    nopreempt
    interface %s
    virtual_router_id 77
    priority %d
    advert_int %.2f
    virtual_ipaddress {
        %s/24 dev %s
    }
}
`, h, Iface(0), keepalivedPriority[h], k.AdvertInt.Seconds(), k.VIP, Iface(0))
}

// Start starts the service and keepalived on the named nodes (both when
// none is named).
func (k *Keepalived) Start(hosts ...string) error {
	if len(hosts) == 0 {
		hosts = DataNodes
	}
	for _, h := range hosts {
		if err := k.startService(h); err != nil {
			return err
		}
		if err := k.startDaemon(h); err != nil {
			return err
		}
	}
	return nil
}

func (k *Keepalived) startService(h string) error { return k.Bed.startDemoService(h, k.Port) }

// startDemoService runs the demo HTTP service on host h outside any
// cluster manager (as keepalived users run theirs).
func (b *Bed) startDemoService(h string, port int) error {
	cmd := b.Command(h, b.Binary, "demo-service", "--all", "--port", fmt.Sprint(port))
	cmd.Env = append(os.Environ(), "TANDEM_NODE="+h)
	b.record(Fault{Kind: FaultStart, Host: h, Detail: "service"})
	return b.start(cmd)
}

func (k *Keepalived) startDaemon(h string) error {
	dir := filepath.Join(k.Bed.Dir, "keepalived-"+h)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// A killed instance's pid files would make keepalived believe it
	// still runs.
	os.Remove(filepath.Join(dir, "keepalived.pid"))
	os.Remove(filepath.Join(dir, "vrrp.pid"))
	conf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(conf, []byte(k.config(h)), 0o644); err != nil {
		return err
	}
	cmd := k.Bed.Command(h, "keepalived", "--dont-fork", "--log-console", "--log-detail", "--no-syslog", "--vrrp",
		"--use-file", conf, "--pid", filepath.Join(dir, "keepalived.pid"), "--vrrp_pid", filepath.Join(dir, "vrrp.pid"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	logf, err := os.OpenFile(filepath.Join(k.Bed.Dir, "keepalived-"+h+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	k.setState(h, "")
	k.Bed.record(Fault{Kind: FaultStart, Host: h, Detail: "keepalived"})
	if err := k.Bed.start(cmd); err != nil {
		logf.Close()
		return fmt.Errorf("testbed: start keepalived on %s: %w", h, err)
	}
	go k.follow(h, out, logf)
	return nil
}

// follow reads keepalived's console log and tracks its VRRP state.
func (k *Keepalived) follow(h string, r io.Reader, log *os.File) {
	defer log.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintf(log, "%s %s\n", time.Now().Format("15:04:05.000"), line)
		if i := strings.Index(line, "Entering "); i >= 0 {
			if f := strings.Fields(line[i+len("Entering "):]); len(f) > 0 {
				k.setState(h, f[0])
				k.mu.Lock()
				k.log = append(k.log, Transition{At: time.Now(), Host: h, State: f[0]})
				k.mu.Unlock()
			}
		}
	}
}

func (k *Keepalived) setState(h, s string) {
	k.mu.Lock()
	k.state[h] = s
	k.mu.Unlock()
}

// State is the VRRP state host h last entered (MASTER, BACKUP, FAULT, or
// "" before any).
func (k *Keepalived) State(h string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.state[h]
}

// Transitions are the VRRP states the nodes entered at or after since.
func (k *Keepalived) Transitions(since time.Time) []Transition {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []Transition
	for _, t := range k.log {
		if !t.At.Before(since) {
			out = append(out, t)
		}
	}
	return out
}

// WaitSettled waits until exactly one node is MASTER and the other
// BACKUP, and returns the master.
func (k *Keepalived) WaitSettled(ctx context.Context, timeout time.Duration) (string, error) {
	var master string
	err := waitFor(ctx, timeout, 10*time.Millisecond, func() (bool, error) {
		a, b := k.State("node1"), k.State("node2")
		switch {
		case a == "MASTER" && b == "BACKUP":
			master = "node1"
		case b == "MASTER" && a == "BACKUP":
			master = "node2"
		default:
			return false, nil
		}
		return true, nil
	}, "keepalived to settle (one MASTER, one BACKUP)")
	return master, err
}

// Term sends SIGTERM to host h's keepalived alone (it sends a priority-0
// advert and removes its VIP; the service keeps running) and returns.
func (k *Keepalived) Term(h string) (Fault, error) {
	n := 0
	for _, pid := range k.daemons(h) {
		syscall.Kill(pid, syscall.SIGTERM)
		n++
	}
	if n == 0 {
		return Fault{}, fmt.Errorf("testbed: no keepalived runs on %s", h)
	}
	return k.Bed.record(Fault{Kind: FaultStop, Host: h, Detail: "keepalived", At: time.Now()}), nil
}

// RestartDaemon waits until host h's keepalived has exited and starts it.
func (k *Keepalived) RestartDaemon(ctx context.Context, h string) error {
	if err := waitFor(ctx, 10*time.Second, 10*time.Millisecond, func() (bool, error) { return len(k.daemons(h)) == 0, nil },
		"keepalived on %s to exit after SIGTERM", h); err != nil {
		return err
	}
	return k.startDaemon(h)
}

// daemons are host h's keepalived processes.
func (k *Keepalived) daemons(h string) []int {
	var pids []int
	for _, pid := range netutil.ProcessesIn(k.Bed.Host(h).NS.Path()) {
		if cl := cmdline(pid); strings.Contains(cl, "keepalived") && !strings.Contains(cl, "demo-service") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Stop stops keepalived (SIGTERM: it removes its VIP) and the services on
// both nodes, and waits until they are gone.
func (k *Keepalived) Stop() {
	for _, h := range DataNodes {
		path := k.Bed.Host(h).NS.Path()
		signalAll(path, syscall.SIGCONT)
		signalAll(path, syscall.SIGTERM)
		for deadline := time.Now().Add(5 * time.Second); len(netutil.ProcessesIn(path)) > 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		k.Bed.Kill(h)
	}
}
