// Package demo owns `tandem demo`: it starts node1, node2 and a witness as
// separate tandem processes (as root, each in its own network namespace with
// a real VIP and a client namespace probing it; otherwise on loopback
// addresses, without a VIP), runs a small HTTP service as a group, kills the
// active node, and reports what happened: detect / decide / start times,
// the unavailable window the client saw and whether two nodes ever answered.
// It cleans up after itself, also on Ctrl-C and on failure. cmd wires it.
package demo

import (
	"bufio"
	"context"
	"encoding/json"

	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"tandem/internal/api"
	"tandem/internal/events"
	"tandem/internal/keyfile"
	"tandem/internal/node"
	"tandem/internal/probe"
)

// Options configure a demo run.
type Options struct {
	Binary   string    // the tandem executable to run the nodes with
	Out      io.Writer // progress for humans (nil: none)
	Loopback bool      // force loopback mode even as root
	Keep     bool      // keep the work directory (logs) after the run
	// Fault is "kill" (SIGKILL the active node: node1, unless the group
	// moved on its own; the default) or "switchover" (`tandem failover
	// web --to` the standby, a planned move).
	Fault string
	// Idle, if set, measures the agents' CPU and memory for this long
	// while the cluster is idle, before the fault.
	Idle time.Duration
}

// Result is what `tandem demo --json` prints.
type Result struct {
	Mode          string  `json:"mode"` // netns or loopback
	FailoverMs    float64 `json:"failover_ms"`
	UnavailableMs float64 `json:"unavailable_ms"`
	SplitBrain    bool    `json:"split_brain"`
	OK            bool    `json:"ok"`
	DetectMs      int64   `json:"detect_ms"`
	DecideMs      int64   `json:"decide_ms"`
	StartMs       int64   `json:"start_ms"`
	From          string  `json:"from"`
	To            string  `json:"to"`
	Probes        int     `json:"probes"`
	FailedProbes  int     `json:"failed_probes"`
	// FailedInOutage are the failed probes sent while no node served
	// (after the old node's last answer, before the new node's first);
	// the rest went to an address not serving at the time (see Print).
	FailedInOutage int      `json:"failed_in_outage"`
	Why            []string `json:"split_brain_why,omitempty"`
	Fault          string   `json:"fault"`
	// Killed is the node the fault hit: the active one at that moment
	// (node1, unless the group had already moved, which Notes then say).
	Killed string `json:"killed,omitempty"`
	// Idle is each agent's CPU (% of one core) and resident memory while
	// the cluster was idle, when Options.Idle was set.
	Idle    map[string]Usage `json:"idle,omitempty"`
	Notes   []string         `json:"notes,omitempty"`
	WorkDir string           `json:"work_dir,omitempty"`
}

// env is one way of running the three nodes and the client.
type env interface {
	// setup prepares hosts; config returns the cluster config text.
	setup(ctx context.Context) error
	config(dir, key string) string
	// command runs the tandem binary as host h ("node1", "node2",
	// "witness", "client").
	command(ctx context.Context, h string, args ...string) *exec.Cmd
	// kill kills everything of host h (a node crash).
	kill(h string, agent *os.Process) error
	// probeTargets are the URLs the client probes.
	probeTargets() []string
	// addr is host h's address.
	addr(h string) string
	// arp is the client's interface and the VIP to watch ("" = none).
	arp() (string, string)
	notes() []string
	close() error
}

type run struct {
	opts   Options
	env    env
	dir    string
	agents map[string]*exec.Cmd
	exits  map[string]*agentExit
	say    func(format string, args ...any)
}

// agentExit is closed when an agent process has exited, with why; only its
// goroutine waits for the process.
type agentExit struct {
	done chan struct{}
	err  error
}

// Run runs the demo.
func Run(ctx context.Context, opts Options) (res Result, err error) {
	r := &run{opts: opts, agents: map[string]*exec.Cmd{}, exits: map[string]*agentExit{}, say: func(string, ...any) {}}
	if opts.Out != nil {
		r.say = func(format string, args ...any) { fmt.Fprintf(opts.Out, format+"\n", args...) }
	}
	r.dir, err = os.MkdirTemp("", "tandem-demo-")
	if err != nil {
		return res, err
	}
	res.WorkDir = r.dir
	if os.Geteuid() == 0 && !opts.Loopback {
		r.env, res.Mode = newNetnsEnv(), "netns"
	} else {
		r.env, res.Mode = newLoopbackEnv(), "loopback"
	}
	res.Notes = r.env.notes()
	defer func() {
		r.stopAgents()
		if cerr := r.env.close(); cerr != nil && err == nil {
			err = fmt.Errorf("demo: cleanup: %w", cerr)
		}
		interrupted := ctx.Err() != nil
		switch {
		case interrupted:
			// Ctrl-C: leave nothing behind, logs included.
			if !opts.Keep {
				os.RemoveAll(r.dir)
			}
			err = fmt.Errorf("demo: interrupted; hosts, processes and files cleaned up")
		case !opts.Keep && (err == nil || len(r.exits) == 0):
			// Done, or failed before any agent started: no logs to keep.
			os.RemoveAll(r.dir)
			res.WorkDir = ""
		case err != nil:
			// A failure keeps the nodes' logs for a look; say where.
			err = fmt.Errorf("%w (logs kept in %s)", err, r.dir)
		}
	}()
	if err := r.env.setup(ctx); err != nil {
		return res, fmt.Errorf("demo: set up hosts: %w", err)
	}
	key, err := keyfile.Generate()
	if err != nil {
		return res, err
	}
	keyPath := filepath.Join(r.dir, "cluster.key")
	if err := keyfile.Write(keyPath, key, false); err != nil {
		return res, err
	}
	cfgPath := filepath.Join(r.dir, "tandem.yaml")
	if err := os.WriteFile(cfgPath, []byte(r.env.config(r.dir, keyPath)), 0o600); err != nil {
		return res, err
	}
	r.say("starting witness, node1 and node2 as separate processes (%s mode, work dir %s)", res.Mode, r.dir)
	for _, h := range []string{"witness", "node1", "node2"} {
		if err := r.startAgent(ctx, h, cfgPath); err != nil {
			return res, err
		}
	}
	r.say("waiting for the group to run on node1…")
	if err := r.waitRunning(ctx, "node1", "node1", 20*time.Second); err != nil {
		return res, err
	}

	// Probe, then crash the active node.
	pctx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	var mu sync.Mutex
	var samples []probe.Sample
	var arps []probe.ARPSample
	// moved closes once a node other than the one the fault hits
	// answers after the fault.
	moved := make(chan struct{})
	var once sync.Once
	var faultAt time.Time
	var active string
	record := func(rec probe.Record) {
		mu.Lock()
		defer mu.Unlock()
		if rec.HTTP != nil {
			samples = append(samples, *rec.HTTP)
			if n := rec.HTTP.Node; n != "" && !faultAt.IsZero() && n != active && rec.HTTP.Sent.After(faultAt) {
				once.Do(func() { close(moved) })
			}
		}
		if rec.ARP != nil {
			arps = append(arps, *rec.ARP)
		}
	}
	probeDone, err := r.startProbe(pctx, record)
	if err != nil {
		return res, err
	}
	select {
	case <-time.After(1500 * time.Millisecond):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	if opts.Idle > 0 {
		r.say("measuring the idle agents for %v…", opts.Idle)
		if res.Idle, err = r.measureIdle(ctx, opts.Idle); err != nil {
			return res, err
		}
	}
	if opts.Fault == "" {
		opts.Fault = "kill"
	}
	res.Fault = opts.Fault
	// The fault hits the node serving now. That is node1 unless the group
	// moved on its own (a false failover on an overloaded machine): the
	// demo then says so rather than kill a standby and see nothing move.
	mu.Lock()
	active = "node1"
	for i := len(samples) - 1; i >= 0; i-- {
		if samples[i].Node != "" {
			active = samples[i].Node
			break
		}
	}
	mu.Unlock()
	standby := map[bool]string{true: "node2", false: "node1"}[active == "node1"]
	if active != "node1" {
		note := fmt.Sprintf("the group moved from node1 to %s before the fault, without one", active)
		if tk, ok := r.takeover(active); ok {
			note += fmt.Sprintf(" (%s's takeover event: %s, detect %d ms)", active, tk.Message, attrInt(tk, "detect_ms"))
		}
		res.Notes = append(res.Notes, note+"; the fault hits "+active)
		r.say("note: %s", note)
	}
	res.Killed = active
	var fault time.Time
	switch opts.Fault {
	case "kill":
		r.say("killing %s (SIGKILL to its agent and its service)…", active)
		mu.Lock()
		fault = time.Now()
		faultAt = fault
		mu.Unlock()
		if err := r.env.kill(active, r.agents[active].Process); err != nil {
			return res, fmt.Errorf("demo: kill %s: %w", active, err)
		}
		<-r.exits[active].done
		delete(r.agents, active)
	case "switchover":
		r.say("planned switchover: tandem failover web --to %s…", standby)
		mu.Lock()
		fault = time.Now()
		faultAt = fault
		mu.Unlock()
		cx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := api.NewUnixClient(r.socket(standby)).Failover(cx, "web", standby)
		cancel()
		if err != nil {
			return res, fmt.Errorf("demo: failover: %w", err)
		}
	default:
		return res, fmt.Errorf("demo: unknown fault %q (kill or switchover)", opts.Fault)
	}
	select {
	case <-moved:
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	time.Sleep(1500 * time.Millisecond) // keep watching: the old node must stay silent
	stopProbe()
	<-probeDone

	mu.Lock()
	rep := probe.Analyze(samples, arps, fault, 10*time.Millisecond)
	mu.Unlock()
	res.FailoverMs, res.UnavailableMs, res.SplitBrain, res.Why = rep.FailoverMs, rep.UnavailableMs, rep.SplitBrain, rep.Why
	res.From, res.To, res.Probes, res.FailedProbes, res.FailedInOutage = rep.Before, rep.After, len(samples), rep.Failed, rep.FailedInOutage
	if opts.Fault == "kill" {
		if tk, ok := r.takeover(standby); ok && tk.Time.After(fault) {
			res.DetectMs, res.DecideMs, res.StartMs = attrInt(tk, "detect_ms"), attrInt(tk, "decide_ms"), attrInt(tk, "start_ms")
		} else {
			res.Notes = append(res.Notes, standby+" recorded no takeover event after the fault")
		}
	}
	res.OK = rep.Moved && rep.After == standby && !rep.SplitBrain
	return res, nil
}

func attrInt(e events.Event, k string) int64 {
	if v, ok := e.Attrs[k].(float64); ok {
		return int64(v)
	}
	return 0
}

func (r *run) startAgent(ctx context.Context, h, cfgPath string) error {
	sub := "agent"
	if h == "witness" {
		sub = "witness"
	}
	cmd := r.env.command(ctx, h, sub, "-c", cfgPath, "--node", h,
		"--state-dir", filepath.Join(r.dir, h), "--socket", r.socket(h))
	logf, err := os.Create(filepath.Join(r.dir, h+".log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttrs(true)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("demo: start %s: %w", h, err)
	}
	r.agents[h] = cmd
	x := &agentExit{done: make(chan struct{})}
	r.exits[h] = x
	go func() {
		x.err = cmd.Wait()
		logf.Close()
		close(x.done)
	}()
	return nil
}

// exited returns an error for an agent that has exited, with the end of
// its log: the real reason (a port in use, a bad flag), not a socket that
// never answered.
func (r *run) exited() error {
	for _, h := range []string{"witness", "node1", "node2"} {
		x, ok := r.exits[h]
		if !ok {
			continue
		}
		select {
		case <-x.done:
		default:
			continue
		}
		log := filepath.Join(r.dir, h+".log")
		return fmt.Errorf("demo: %s's agent exited (%v) before the group ran; the end of its log %s:\n%s", h, x.err, log, tail(log, 8))
	}
	return nil
}

// tail returns the last n lines of the file at path, indented.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

func (r *run) socket(h string) string { return filepath.Join(r.dir, h+".sock") }

// waitRunning polls node ask's API until group web runs on want.
func (r *run) waitRunning(ctx context.Context, ask, want string, timeout time.Duration) error {
	c := api.NewUnixClient(r.socket(ask))
	deadline := time.Now().Add(timeout)
	var last node.Status
	var lastErr error
	for time.Now().Before(deadline) {
		if err := r.exited(); err != nil {
			return err
		}
		cx, cancel := context.WithTimeout(ctx, time.Second)
		s, err := c.Status(cx)
		cancel()
		lastErr = err
		if err == nil {
			last = s
			// Steady state: the group runs and raft is led by the
			// witness (as it is in a cluster that has been up a while).
			for _, g := range s.Groups {
				if g.Name == "web" && g.Holder == want && g.Running && s.Leader == "witness" {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	b, _ := json.Marshal(last.Groups)
	return fmt.Errorf("demo: group web not running on %s after %v (last status %s, last error %v; logs in %s)", want, timeout, b, lastErr, r.dir)
}

// startProbe runs the prober as the client host and feeds its records.
func (r *run) startProbe(ctx context.Context, record func(probe.Record)) (<-chan struct{}, error) {
	args := []string{"probe", "--interval", "10ms", "--timeout", "200ms"}
	for _, t := range r.env.probeTargets() {
		args = append(args, "--url", t)
	}
	if iface, vip := r.env.arp(); vip != "" {
		args = append(args, "--arp-iface", iface, "--arp-vip", vip)
	}
	cmd := r.env.command(context.Background(), "client", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = io.Discard
	cmd.SysProcAttr = childAttrs(false)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("demo: start the probe: %w", err)
	}
	done := make(chan struct{})
	go func() {
		<-ctx.Done()
		cmd.Process.Signal(syscall.SIGTERM)
	}()
	tee, err := os.Create(filepath.Join(r.dir, "probe.jsonl"))
	if err != nil {
		return nil, err
	}
	go func() {
		defer close(done)
		defer tee.Close()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			tee.Write(append(sc.Bytes(), '\n'))
			var rec probe.Record
			if json.Unmarshal(sc.Bytes(), &rec) == nil {
				record(rec)
			}
		}
		cmd.Wait()
	}()
	return done, nil
}

func (r *run) takeover(h string) (events.Event, bool) {
	evs, err := events.ReadFile(filepath.Join(r.dir, h, "events.jsonl"), events.Filter{Kinds: []events.Kind{events.Takeover}})
	if err != nil || len(evs) == 0 {
		return events.Event{}, false
	}
	return evs[len(evs)-1], true
}

func (r *run) stopAgents() {
	for _, cmd := range r.agents {
		cmd.Process.Signal(syscall.SIGTERM)
	}
	for h, cmd := range r.agents {
		done := r.exits[h].done
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		delete(r.agents, h)
	}
}

// Print writes the human report.
func Print(w io.Writer, res Result) {
	fmt.Fprintf(w, "\ntandem demo (%s mode)\n", res.Mode)
	if res.Fault == "switchover" {
		fmt.Fprintf(w, "  planned switchover; the group moved %s → %s\n", orDash(res.From), orDash(res.To))
	} else {
		fmt.Fprintf(w, "  %s was killed; the group moved %s → %s\n", orDash(res.Killed), orDash(res.From), orDash(res.To))
		fmt.Fprintf(w, "  detect %d ms + decide %d ms + start %d ms (from %s's audit log)\n", res.DetectMs, res.DecideMs, res.StartMs, orDash(res.To))
	}
	for _, h := range []string{"node1", "node2", "witness"} {
		if u, ok := res.Idle[h]; ok {
			b := res.Idle["baseline-"+h]
			fmt.Fprintf(w, "  idle %s: %.2f%% of a core (%.2f× the bare-heartbeat baseline's %.2f%%), %.1f MB resident\n",
				h, u.CPUPercent, u.CPUPercent/max(b.CPUPercent, 0.01), b.CPUPercent, u.RSSMB)
		}
	}
	fmt.Fprintf(w, "  the client saw the service unavailable for %.0f ms (first answer from %s %.0f ms after the fault)\n", res.UnavailableMs, orDash(res.To), res.FailoverMs)
	fmt.Fprintf(w, "  probes: %d (%d failed)\n", res.Probes, res.FailedProbes)
	if why := failedProbesWhy(res); why != "" {
		fmt.Fprintf(w, "    %s\n", why)
	}
	if res.SplitBrain {
		fmt.Fprintf(w, "  SPLIT BRAIN: %s\n", strings.Join(res.Why, "; "))
	} else {
		fmt.Fprintf(w, "  split brain: none (no answer from two nodes")
		if res.Mode == "netns" {
			fmt.Fprintf(w, ", never two MACs for the VIP")
		}
		fmt.Fprintln(w, ")")
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	if res.OK {
		fmt.Fprintln(w, "  OK")
	} else {
		fmt.Fprintln(w, "  NOT OK")
	}
}

// failedProbesWhy says what the failed probes were. The client sends a
// new HTTP request to each target every 10 ms; a probe fails when it gets
// no answer within 200 ms (refused, reset or timed out).
func failedProbesWhy(res Result) string {
	if res.FailedProbes == 0 {
		return ""
	}
	outage := fmt.Sprintf("%d sent while no node served (after %s's last answer, before %s's first: the failover)",
		res.FailedInOutage, orDash(res.From), orDash(res.To))
	rest := res.FailedProbes - res.FailedInOutage
	switch {
	case res.Mode == "loopback":
		return fmt.Sprintf("failed: %s;\n    %d to the address of the node not running the service "+
			"(this mode probes node1's and node2's own addresses; only the active node's answers)", outage, rest)
	case rest == 0:
		return "failed: all " + outage
	}
	return fmt.Sprintf("failed: %s; %d at other times (a probe that timed out on a busy machine)", outage, rest)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
