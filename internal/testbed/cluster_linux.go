package testbed

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"tandem/internal/netutil"
	"time"

	"tandem/internal/api"
	"tandem/internal/events"
	"tandem/internal/keyfile"
	"tandem/internal/node"
)

// Cluster is tandem running on the bed: an agent on node1 and node2 and
// the witness, each a separate process in its host's namespace.
type Cluster struct {
	Bed        *Bed
	Spec       Spec
	ConfigPath string

	mu     sync.Mutex
	agents map[string]*exec.Cmd
	// clients keeps one API client per host: a client per request would
	// leave a kept-alive connection behind each time, and the agent
	// refuses a uid more than a few at once.
	clients map[string]*api.Client
	// startMu makes "is it running? start it" one step.
	startMu sync.Mutex
}

// Voters are the hosts that run a tandem agent.
var Voters = []string{"node1", "node2", "witness"}

// NewCluster writes a key and the config for spec; Start runs the agents.
func (b *Bed) NewCluster(spec Spec) (*Cluster, error) {
	if b.Binary == "" {
		return nil, errors.New("testbed: no tandem binary (Options.Binary)")
	}
	key, err := keyfile.Generate()
	if err != nil {
		return nil, err
	}
	keyPath := filepath.Join(b.Dir, "cluster.key")
	if err := keyfile.Write(keyPath, key, true); err != nil {
		return nil, err
	}
	hostAddrs := map[string][]netip.Addr{}
	for name, h := range b.hosts {
		hostAddrs[name] = h.Addrs
	}
	c := &Cluster{Bed: b, Spec: spec.withDefaults(), ConfigPath: filepath.Join(b.Dir, "tandem.yaml"), agents: map[string]*exec.Cmd{}}
	cfg := renderConfig(spec, hostAddrs, b.Dir, keyPath, b.Binary)
	if err := os.WriteFile(c.ConfigPath, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	b.mu.Lock()
	b.cluster = c
	b.mu.Unlock()
	return c, nil
}

// StateDir is host h's state directory (raft, audit log).
func (c *Cluster) StateDir(h string) string { return filepath.Join(c.Bed.Dir, h) }

// Socket is host h's API socket.
func (c *Cluster) Socket(h string) string { return filepath.Join(c.Bed.Dir, h+".sock") }

// Client talks to host h's agent.
func (c *Cluster) Client(h string) *api.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.clients == nil {
		c.clients = map[string]*api.Client{}
	}
	cl, ok := c.clients[h]
	if !ok {
		cl = api.NewUnixClient(c.Socket(h))
		c.clients[h] = cl
	}
	return cl
}

// Start starts the agents of the named hosts (all voters when none is
// named; the data nodes in two-node mode), at once.
func (c *Cluster) Start(hosts ...string) error {
	if len(hosts) == 0 {
		hosts = Voters
		if c.Spec.TwoNode {
			hosts = DataNodes
		}
	}
	for _, h := range hosts {
		if err := c.startAgent(h); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) startAgent(h string) error {
	// Starting a host that still runs is a no-op: two overlapping random
	// steps (kill for 300 ms, kill for 750 ms) both restart the host at
	// their end, and a second agent would only fail to bind. The check and
	// the start are one step (the two restarts can come 1 ms apart).
	// (A process just started is still `ip netns exec` in the root
	// namespace for a moment, so the namespace scan alone misses it.)
	c.startMu.Lock()
	defer c.startMu.Unlock()
	c.mu.Lock()
	prev := c.agents[h]
	c.mu.Unlock()
	if (prev != nil && prev.Process != nil && alive(prev.Process.Pid)) || c.agentIn(h) {
		return nil
	}
	sub := "agent"
	if h == "witness" {
		sub = "witness"
	}
	logf, err := os.OpenFile(filepath.Join(c.Bed.Dir, h+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	defer logf.Close()
	os.Remove(c.Socket(h))
	args := []string{sub, "-c", c.ConfigPath, "--node", h, "--state-dir", c.StateDir(h), "--socket", c.Socket(h)}
	name := c.Bed.Binary
	if c.mountNS() {
		// Its own mount namespace, as on a machine of its own: what the
		// agent mounts is seen by it and its services only, and goes
		// away with its last process (a crash unmounts, as a reboot).
		// Its own /run too: a daemon's pid file there (nginx's, read by
		// its OCF agent) is the host's, as on a machine that rebooted, not
		// a killed node's whose process is a zombie until this machine's
		// init reaps it (a second or so here), which the agent would
		// read as running.
		name, args = "unshare", append([]string{"--mount", "--propagation", "private", "--",
			"sh", "-c", `mount -t tmpfs -o mode=0755,size=64m bed-run /run && mkdir /run/lock && exec "$@"`, "sh", c.Bed.Binary}, args...)
	}
	cmd := c.Bed.Command(h, name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	c.Bed.record(Fault{Kind: FaultStart, Host: h, Detail: "tandem " + sub})
	if err := c.Bed.start(cmd); err != nil {
		return fmt.Errorf("testbed: start %s: %w", h, err)
	}
	c.mu.Lock()
	c.agents[h] = cmd
	c.mu.Unlock()
	return nil
}

// mountNS: a group mounts a file system, so each agent runs in a mount
// namespace of its own.
func (c *Cluster) mountNS() bool {
	if strings.Contains(c.Spec.Raw, "filesystem:") {
		return true
	}
	for _, g := range c.Spec.Groups {
		if g.Mount != "" {
			return true
		}
	}
	return false
}

// AgentCommand returns a command to run on host h in its agent's mount
// namespace (where the agent's file systems are mounted).
func (c *Cluster) AgentCommand(h, name string, args ...string) (*exec.Cmd, error) {
	c.mu.Lock()
	cmd := c.agents[h]
	c.mu.Unlock()
	if cmd == nil || cmd.Process == nil || !alive(cmd.Process.Pid) {
		return nil, fmt.Errorf("testbed: no agent runs on %s", h)
	}
	return c.Bed.Command(h, "nsenter", append([]string{"-t", strconv.Itoa(cmd.Process.Pid), "-m", "--", name}, args...)...), nil
}

// agentIn reports whether a tandem agent (or witness) process runs on
// host h; services it left running (KillAgent) do not count.
func (c *Cluster) agentIn(h string) bool {
	for _, pid := range netutil.ProcessesIn(c.Bed.Host(h).NS.Path()) {
		if cl := cmdline(pid); strings.Contains(cl, " agent ") || strings.Contains(cl, " witness ") {
			return true
		}
	}
	return false
}

// KillAgent SIGKILLs only host h's tandem agent: the services it started
// keep running (a crash of the agent alone, as an OOM kill would be).
func (c *Cluster) KillAgent(h string) (Fault, error) {
	f := Fault{Kind: FaultKillAgent, Host: h, At: time.Now()}
	var killed []int
	for _, pid := range netutil.ProcessesIn(c.Bed.Host(h).NS.Path()) {
		if cl := cmdline(pid); strings.Contains(cl, " agent ") {
			syscall.Kill(pid, syscall.SIGKILL)
			killed = append(killed, pid)
		}
	}
	if len(killed) == 0 {
		return f, fmt.Errorf("testbed: no agent runs on %s", h)
	}
	// Gone from the agent's command line is not gone: an exiting process
	// drops its memory (and so its command line) before it closes its
	// files, and its threads share the files until the last one exits (the
	// leader can be a zombie before): a new agent started then found the
	// dead one's lock still held and exited (CI). Wait until every thread
	// of each is dead.
	err := waitFor(context.Background(), 10*time.Second, 2*time.Millisecond, func() (bool, error) {
		for _, pid := range killed {
			if threadsLive(pid) {
				return false, nil
			}
		}
		return true, nil
	}, "the agent of %s to exit after SIGKILL", h)
	return c.Bed.record(f), err
}

// Stop stops host h's agent cleanly (SIGTERM: it stops its groups and
// leaves) and waits until every process of the host has exited.
func (c *Cluster) Stop(ctx context.Context, h string) error {
	c.mu.Lock()
	cmd := c.agents[h]
	delete(c.agents, h)
	c.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return nil
	}
	c.Bed.record(Fault{Kind: FaultStop, Host: h})
	cmd.Process.Signal(syscall.SIGTERM)
	return waitFor(ctx, 10*time.Second, 10*time.Millisecond, func() (bool, error) {
		return len(netutil.ProcessesIn(c.Bed.Host(h).NS.Path())) == 0, nil
	}, "the processes of %s to exit after SIGTERM", h)
}

// Term sends SIGTERM to host h's agent and returns at once: the agent
// stops its groups, hands them over and leaves while the caller measures.
// WaitExited waits until it is gone.
func (c *Cluster) Term(h string) (Fault, error) {
	c.mu.Lock()
	cmd := c.agents[h]
	c.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return Fault{}, fmt.Errorf("testbed: no agent started on %s", h)
	}
	f := c.Bed.record(Fault{Kind: FaultStop, Host: h, At: time.Now()})
	return f, cmd.Process.Signal(syscall.SIGTERM)
}

// WaitExited waits until host h's agent has exited (after Term); the
// agent stops its services before it exits.
func (c *Cluster) WaitExited(ctx context.Context, h string) error {
	return waitFor(ctx, 10*time.Second, 10*time.Millisecond, func() (bool, error) {
		return !c.agentIn(h), nil
	}, "the agent of %s to exit after SIGTERM", h)
}

// Restart crashes host h (SIGKILL) and starts its agent again on the
// same state.
func (c *Cluster) Restart(h string) (Fault, error) {
	f := c.Bed.Kill(h)
	return f, c.startAgent(h)
}

// Status asks host h's agent.
func (c *Cluster) Status(ctx context.Context, h string) (node.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	return c.Client(h).Status(ctx)
}

// View is what the cluster says of a group, from the raft leader (or,
// without one, from any agent that answers).
type View struct {
	From    string // who answered
	Leader  string
	Holder  string
	Epoch   uint64
	Running bool
	Phase   string          // what the holder last reported
	Up      map[string]bool // voters up as From sees them
}

// GroupView asks every agent in parallel and returns the leader's view
// of group.
func (c *Cluster) GroupView(ctx context.Context, group string) (View, error) {
	type answer struct {
		h string
		s node.Status
		e error
	}
	ch := make(chan answer, len(Voters))
	for _, h := range Voters {
		go func() {
			s, err := c.Status(ctx, h)
			ch <- answer{h, s, err}
		}()
	}
	var best *answer
	var errs []error
	for range Voters {
		a := <-ch
		if a.e != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.h, a.e))
			continue
		}
		if best == nil || rank(a.s) > rank(best.s) {
			best = &a
		}
	}
	if best == nil {
		return View{}, fmt.Errorf("testbed: no agent answers: %w", errors.Join(errs...))
	}
	v := View{From: best.h, Leader: best.s.Leader, Up: map[string]bool{}}
	for _, n := range best.s.Nodes {
		v.Up[n.Name] = n.Up
	}
	for _, g := range best.s.Groups {
		if g.Name == group {
			v.Holder, v.Epoch, v.Running, v.Phase = g.Holder, g.Epoch, g.Running, g.Phase
		}
	}
	return v, nil
}

// rank prefers the leader's status, then one with quorum.
func rank(s node.Status) int {
	switch {
	case s.Leader == s.Node:
		return 2
	case s.Quorum:
		return 1
	}
	return 0
}

// WaitRunning waits until the cluster says group runs on h.
func (c *Cluster) WaitRunning(ctx context.Context, group, h string, timeout time.Duration) error {
	var last View
	return waitFor(ctx, timeout, 20*time.Millisecond, func() (bool, error) {
		v, err := c.GroupView(ctx, group)
		last = v
		return err == nil && v.Holder == h && v.Running, nil
	}, "group %s to run on %s (last view %+v)", group, h, &last)
}

// WaitUp waits until there is a raft leader (one that says so itself) and
// it sees every named voter up.
func (c *Cluster) WaitUp(ctx context.Context, timeout time.Duration, hosts ...string) error {
	var last View
	return waitFor(ctx, timeout, 20*time.Millisecond, func() (bool, error) {
		v, err := c.GroupView(ctx, "")
		last = v
		if err != nil || v.Leader == "" || v.From != v.Leader {
			return false, nil // no leader, or only a stale name of one
		}
		for _, h := range hosts {
			if !v.Up[h] {
				return false, nil
			}
		}
		return true, nil
	}, "%v to be up (last view %+v)", hosts, &last)
}

// WaitMaintenance waits until host h's agent reports cluster maintenance
// on (or off).
func (c *Cluster) WaitMaintenance(ctx context.Context, h string, on bool, timeout time.Duration) error {
	return waitFor(ctx, timeout, 20*time.Millisecond, func() (bool, error) {
		s, err := c.Status(ctx, h)
		return err == nil && s.Maintenance == on, nil
	}, "maintenance %v on %s", on, h)
}

// WaitSeenBy waits until observer's agent reports every named voter up
// (its own heartbeat view, not the leader's).
func (c *Cluster) WaitSeenBy(ctx context.Context, observer string, timeout time.Duration, hosts ...string) error {
	var last []string
	return waitFor(ctx, timeout, 20*time.Millisecond, func() (bool, error) {
		s, err := c.Status(ctx, observer)
		if err != nil {
			return false, nil
		}
		up := map[string]bool{}
		last = last[:0]
		for _, n := range s.Nodes {
			up[n.Name] = n.Up
			if n.Up {
				last = append(last, n.Name)
			}
		}
		for _, h := range hosts {
			if !up[h] {
				return false, nil
			}
		}
		return true, nil
	}, "%s to see %v up (it sees %v)", observer, hosts, &last)
}

// Events reads host h's audit log.
func (c *Cluster) Events(h string) ([]events.Event, error) {
	evs, err := events.ReadFile(filepath.Join(c.StateDir(h), "events.jsonl"), events.Filter{})
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return evs, err
}

// Logs reads every voter's audit log.
func (c *Cluster) Logs() (map[string][]events.Event, error) {
	out := map[string][]events.Event{}
	for _, h := range Voters {
		evs, err := c.Events(h)
		if err != nil {
			return nil, err
		}
		out[h] = evs
	}
	return out, nil
}

// WaitEvent waits until host h's audit log has an event at or after
// since that match accepts, and returns it.
func (c *Cluster) WaitEvent(ctx context.Context, h string, since time.Time, timeout time.Duration, match func(events.Event) bool) (events.Event, error) {
	var got events.Event
	err := waitFor(ctx, timeout, 10*time.Millisecond, func() (bool, error) {
		evs, err := c.Events(h)
		if err != nil {
			return false, nil // a line being written
		}
		for _, e := range evs {
			if !e.Time.Before(since) && match(e) {
				got = e
				return true, nil
			}
		}
		return false, nil
	}, "an event on %s", h)
	return got, err
}

// Kind matches events of kind k about group g ("" = any group).
func Kind(k events.Kind, g string) func(events.Event) bool {
	return func(e events.Event) bool { return e.Kind == k && (g == "" || e.Group == g) }
}

// waitFor polls cond every step until it holds, fails, ctx ends or
// timeout passes; the error names what was awaited.
func waitFor(ctx context.Context, timeout, step time.Duration, cond func() (bool, error), what string, args ...any) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testbed: gave up after %v waiting for "+what, append([]any{timeout}, args...)...)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(step):
		}
	}
}

// threadsLive reports whether a thread of process pid has not finished
// exiting (a zombie or dead thread has released what it held).
func threadsLive(pid int) bool {
	tasks, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "stat"))
	for _, t := range tasks {
		if f := statFieldsAt(t); len(f) > 0 && f[0] != "" && f[0][0] != 'Z' && f[0][0] != 'X' {
			return true
		}
	}
	return false
}
