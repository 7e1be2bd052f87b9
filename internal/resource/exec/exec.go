// Package exec owns the exec resource agent: one supervised long-running
// process per resource. The process runs in its own process group with a
// clean minimal environment; its output goes to the logger line by line,
// capped and rate limited. Start returns once the health check passes (or,
// without a check, once the process has survived a short settle time); Stop
// signals the whole group, waits until the deadline, then SIGKILLs it.
// Death of the process is seen at once by a waiter goroutine and announced
// on Exited, so the manager need not wait for the next monitor tick. It
// implements resource.Agent; the manager constructs it from config.Exec
// and is its only importer. It imports config, resource, check and
// exec/proc.
package exec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	osexec "os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"tandem/internal/clock"
	"tandem/internal/config"
	"tandem/internal/resource"
	"tandem/internal/resource/check"
	"tandem/internal/resource/exec/proc"
)

// Defaults, each overridable by an Option.
const (
	// DefaultSettle is how long a process without a health check must stay
	// alive before Start calls it started: long enough to catch a bad flag
	// or a missing config file, short enough not to slow a failover.
	DefaultSettle = 250 * time.Millisecond
	// DefaultCheckInterval is the longest gap between health probes while
	// starting. Probes start 5 ms apart and back off to it: a service is
	// usually ready within a few milliseconds, and every millisecond of a
	// start is part of a failover. On a busy machine a service can take
	// 100-400 ms to listen (measured: the demo service under load); with a
	// 100 ms cap the start then overshot readiness by up to 80 ms, with
	// 20 ms by at most 20, for a few more probes of a service that starts.
	DefaultCheckInterval = 20 * time.Millisecond
	firstCheckInterval   = 5 * time.Millisecond
	// DefaultCheckTimeout bounds one probe while starting, so one hung
	// probe does not use up the whole start deadline; the manager sets it
	// to the resource's monitor_timeout (WithCheckTimeout), so a check
	// that monitors accept also passes at start.
	DefaultCheckTimeout = 10 * time.Second
	// killWait is how long Stop waits for the kernel to tear a SIGKILLed
	// group down before it reports the stop as failed (a process stuck in
	// uninterruptible sleep).
	killWait = 2 * time.Second
)

// Exit describes a process that ended.
type Exit struct {
	Resource string
	PID      int
	Code     int    // exit status, or -1 when killed by a signal
	Status   string // "exit status 1", "signal: killed"
}

// Option changes an Agent's defaults.
type Option func(*Agent)

// WithClock sets the clock used for settle and polling timers.
func WithClock(c clock.Clock) Option { return func(a *Agent) { a.clock = c } }

// WithSettle sets how long a process without a check must stay alive.
func WithSettle(d time.Duration) Option { return func(a *Agent) { a.settle = d } }

// WithCheckInterval sets the spacing of health probes while starting.
func WithCheckInterval(d time.Duration) Option { return func(a *Agent) { a.interval = d } }

// WithCheckTimeout bounds each health probe while starting (monitors are
// bounded by the caller's context).
func WithCheckTimeout(d time.Duration) Option { return func(a *Agent) { a.checkTimeout = d } }

// WithPIDFile records the running process in path (pid and start time),
// so an agent that restarts after a crash finds the process it left
// running: Monitor reports it, Stop stops it, Start keeps it.
func WithPIDFile(path string) Option { return func(a *Agent) { a.pidFile = path } }

// Agent supervises one process. It implements resource.Agent.
type Agent struct {
	name     string
	argv     []string
	env      []string
	dir      string
	stopSig  syscall.Signal
	probe    check.Probe // nil: no health check
	logger   *slog.Logger
	clock    clock.Clock
	settle   time.Duration
	interval time.Duration
	exited   chan Exit
	died     chan struct{}

	checkTimeout time.Duration
	pidFile      string

	op  sync.Mutex // serialises Start and Stop
	mu  sync.Mutex // guards cur
	cur *run       // nil: never started, or stopped
}

var _ resource.Agent = (*Agent)(nil)

// New returns an agent for spec (already validated by the config loader;
// New still rejects what it cannot run).
func New(name string, spec config.Exec, logger *slog.Logger, opts ...Option) (*Agent, error) {
	if len(spec.Command) == 0 {
		return nil, fmt.Errorf("exec: %s: empty command", name)
	}
	for k, v := range spec.Env {
		if err := errors.Join(proc.CheckEnvName(k), proc.CheckEnvValue(k, v)); err != nil {
			return nil, fmt.Errorf("exec: %s: %w", name, err)
		}
	}
	sig := syscall.SIGTERM
	if spec.StopSignal != "" {
		var err error
		if sig, err = proc.ParseSignal(spec.StopSignal); err != nil {
			return nil, fmt.Errorf("exec: %s: stop_signal: %w", name, err)
		}
	}
	a := &Agent{
		name:     name,
		argv:     spec.Command,
		env:      proc.Env(spec.Env),
		dir:      spec.Dir,
		stopSig:  sig,
		logger:   logger,
		clock:    clock.Real{},
		settle:   DefaultSettle,
		interval: DefaultCheckInterval,
		exited:   make(chan Exit, 1),
		died:     make(chan struct{}, 1),

		checkTimeout: DefaultCheckTimeout,
	}
	if a.dir == "" {
		a.dir = "/" // not the agent's own working directory
	}
	if spec.Check != nil {
		p, err := check.New(*spec.Check, a.env)
		if err != nil {
			return nil, fmt.Errorf("exec: %s: %w", name, err)
		}
		a.probe = p
	}
	for _, o := range opts {
		o(a)
	}
	return a, nil
}

// Exited delivers a notice when the process ends without Stop having
// asked it to. Notices coalesce: at most one waits in the channel, so a
// manager that reacts by calling Monitor loses nothing.
func (a *Agent) Exited() <-chan Exit { return a.exited }

// Watch implements resource.Watcher: a notice when the process ends
// without Stop having asked it to.
func (a *Agent) Watch() <-chan struct{} { return a.died }

// PID returns the process id of the running process, or 0.
func (a *Agent) PID() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur == nil || a.cur.hasExited() {
		return 0
	}
	return a.cur.pid
}

// current is the process this agent runs: the one it launched, or, after
// a restart, the one its pid file names if that still runs.
func (a *Agent) current() *run {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur == nil && a.pidFile != "" {
		if r := a.adopt(); r != nil {
			a.logger.Info("found the process a previous agent started", "pid", r.pid)
			a.cur = r
		}
	}
	return a.cur
}

func (a *Agent) setCurrent(r *run) {
	a.mu.Lock()
	a.cur = r
	a.mu.Unlock()
}

// Start launches the process unless it already runs and returns once it is
// healthy. A process that dies or stays unhealthy until ctx ends is killed
// and Start fails.
func (a *Agent) Start(ctx context.Context) error {
	a.op.Lock()
	defer a.op.Unlock()
	if r := a.current(); r != nil {
		if !r.hasExited() {
			return nil
		}
		a.reap(r) // crashed since: clear what it left behind
		a.setCurrent(nil)
	}
	if err := ctx.Err(); err != nil {
		return resource.Failf(resource.Soft, "exec: %s: start: %w", a.name, err)
	}
	r, err := a.launch()
	if err != nil {
		sev := resource.Soft
		if errors.Is(err, osexec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) ||
			errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ENOEXEC) {
			sev = resource.Hard // this node cannot run it
		}
		return resource.Failf(sev, "exec: %s: start: %w", a.name, err)
	}
	a.setCurrent(r)
	a.writePIDFile(r)
	a.logger.Info("process started", "pid", r.pid)
	if err := a.awaitReady(ctx, r); err != nil {
		r.stopping.Store(true)
		_ = proc.Signal(r.pid, syscall.SIGKILL)
		a.reap(r)
		a.setCurrent(nil)
		a.removePIDFile()
		return err
	}
	r.running.Store(true)
	if r.hasExited() { // died between the last look and now: report it
		a.notify(r)
	}
	return nil
}

// awaitReady waits for the check to pass, or without a check for the
// settle time to pass with the process alive.
func (a *Agent) awaitReady(ctx context.Context, r *run) error {
	start := a.clock.Now()
	failed := func(why string, err error) error {
		return resource.Failf(resource.Soft, "exec: %s: start: %s after %s: %w",
			a.name, why, a.clock.Since(start).Round(time.Millisecond), err)
	}
	exitedErr := func(last error) error {
		r.drain(a.clock) // so the last words on stderr are in
		why := r.exit.Status
		if line := r.lastStderr(); line != "" {
			why += ": " + line
		}
		if r.exit.Code == 0 {
			why += " (exec supervises a foreground process: do not let it daemonize)"
		}
		err := errors.New(why)
		if last != nil {
			err = fmt.Errorf("%s (last check: %w)", why, last)
		}
		return resource.Failf(resource.Soft, "exec: %s: start: process exited: %w", a.name, err)
	}
	if a.probe == nil {
		t := a.clock.NewTimer(a.settle)
		defer t.Stop()
		select {
		case <-r.done:
			return exitedErr(nil)
		case <-ctx.Done():
			return failed("not settled", context.Cause(ctx))
		case <-t.C():
			if r.hasExited() {
				return exitedErr(nil)
			}
			return nil
		}
	}
	var last error
	wait := min(firstCheckInterval, a.interval)
	for {
		pctx, cancel := context.WithTimeout(ctx, a.checkTimeout)
		last = a.probe(pctx)
		cancel()
		if r.hasExited() {
			return exitedErr(last)
		}
		if last == nil {
			return nil
		}
		t := a.clock.NewTimer(wait)
		wait = min(2*wait, a.interval)
		select {
		case <-r.done:
			t.Stop()
			return exitedErr(last)
		case <-ctx.Done():
			t.Stop()
			return failed("check did not pass", errors.Join(last, context.Cause(ctx)))
		case <-t.C():
		}
	}
}

// Stop sends the stop signal to the process group, waits for the leader
// until ctx ends, then SIGKILLs the group (also any member that outlived
// the leader) and reaps it. A process that had to be killed is still a
// successful stop: nothing of the resource runs afterwards.
func (a *Agent) Stop(ctx context.Context) error {
	a.op.Lock()
	defer a.op.Unlock()
	r := a.current()
	if r == nil {
		return nil
	}
	r.stopping.Store(true)
	if !r.hasExited() {
		if err := proc.Signal(r.pid, a.stopSig); err != nil {
			a.logger.Warn("stop signal failed", "signal", a.stopSig.String(), "err", err)
		}
		select {
		case <-r.done:
		case <-ctx.Done():
			a.logger.Warn("process ignored stop signal until the deadline; killing its group",
				"signal", a.stopSig.String(), "pid", r.pid)
		}
	}
	_ = proc.Signal(r.pid, syscall.SIGKILL)
	if !a.reap(r) {
		return resource.Failf(resource.Soft, "exec: %s: stop: pid %d did not die %s after SIGKILL", a.name, r.pid, killWait)
	}
	a.setCurrent(nil)
	a.removePIDFile()
	a.logger.Info("process stopped", "pid", r.pid, "status", r.exit.Status)
	return nil
}

// Monitor reports a process that exited (or never started) and a failing
// health check.
func (a *Agent) Monitor(ctx context.Context) error {
	r := a.current()
	if r == nil {
		return fmt.Errorf("exec: %s: %w", a.name, resource.ErrNotRunning)
	}
	if r.hasExited() {
		if r.stopping.Load() { // Stop is tidying up after it
			return fmt.Errorf("exec: %s: %w", a.name, resource.ErrNotRunning)
		}
		return resource.Failf(resource.Soft, "exec: %s: process %d exited unexpectedly: %s", a.name, r.pid, r.exit.Status)
	}
	// A probe (a restarted agent asking what runs) takes the process
	// alive for running: its health check may go through the group's
	// VIP, which the kernel guard silences until this node holds the
	// lease again, and a restarted agent's probe waited out the whole
	// monitor timeout (10 s) for a check that could not answer, holding a
	// takeover to this node up. The first monitor checks it.
	if a.probe != nil && !resource.IsProbe(ctx) {
		if err := a.probe(ctx); err != nil {
			return resource.Failf(resource.Soft, "exec: %s: %w", a.name, err)
		}
	}
	return nil
}

func (a *Agent) notify(r *run) {
	if !r.notified.CompareAndSwap(false, true) {
		return
	}
	a.logger.Warn("process exited unexpectedly", "pid", r.pid, "status", r.exit.Status)
	select {
	case a.exited <- r.exit:
	default: // one notice is already waiting
	}
	select {
	case a.died <- struct{}{}:
	default:
	}
}

// reap waits for the leader to be reaped and its output drained; it reports
// false if the leader did not die within killWait.
func (a *Agent) reap(r *run) bool {
	_ = proc.Signal(r.pid, syscall.SIGKILL) // members that outlived the leader
	t := a.clock.NewTimer(killWait)
	defer t.Stop()
	select {
	case <-r.done:
	case <-t.C():
		return false
	}
	r.drain(a.clock)
	return true
}

// run is one launch of the process.
type run struct {
	pid     int
	done    chan struct{} // closed once the leader is reaped
	exit    Exit          // valid once done is closed
	outputs []*output

	mu      sync.Mutex
	lastErr string // last non-blank stderr line, quoted when start fails

	running  atomic.Bool // Start returned success
	stopping atomic.Bool // Stop (or a failed Start) is ending it
	notified atomic.Bool
}

// maxQuoted bounds the process's own words in an error.
const maxQuoted = 300

func (r *run) noteStderr(line string) {
	if line = strings.TrimSpace(line); line == "" {
		return
	}
	if len(line) > maxQuoted {
		line = strings.ToValidUTF8(line[:maxQuoted], "") + "…"
	}
	r.mu.Lock()
	r.lastErr = line
	r.mu.Unlock()
}

func (r *run) lastStderr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

func (r *run) hasExited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (r *run) drain(clk clock.Clock) {
	expired := make(chan struct{})
	t := clk.AfterFunc(proc.PipeGrace, func() { close(expired) })
	defer t.Stop()
	for _, o := range r.outputs {
		o.drain(expired)
	}
}

func (a *Agent) launch() (*run, error) {
	path, err := proc.LookPath(a.argv[0], a.env)
	if err != nil {
		return nil, err
	}
	cmd := osexec.Command(path, a.argv[1:]...)
	cmd.Args[0] = a.argv[0]
	cmd.Env = a.env
	cmd.Dir = a.dir
	proc.Prepare(cmd)
	r := &run{done: make(chan struct{})}
	for _, stream := range []string{"stdout", "stderr"} {
		lw := proc.NewLogWriter(a.logger, a.clock, "stream", stream)
		if stream == "stderr" {
			lw.Tee(r.noteStderr)
		}
		o, err := newOutput(lw)
		if err != nil {
			r.closeOutputs()
			return nil, err
		}
		r.outputs = append(r.outputs, o)
	}
	cmd.Stdout, cmd.Stderr = r.outputs[0].w, r.outputs[1].w
	err = cmd.Start()
	for _, o := range r.outputs {
		o.w.Close() // the child holds its own copy
	}
	if err != nil {
		r.closeOutputs()
		return nil, err
	}
	r.pid = cmd.Process.Pid
	for _, o := range r.outputs {
		go o.copy()
	}
	go a.wait(cmd, r)
	return r, nil
}

// wait reaps the leader as soon as it exits and announces an unexpected
// death.
func (a *Agent) wait(cmd *osexec.Cmd, r *run) {
	_ = cmd.Wait() // the status is in ProcessState
	st := cmd.ProcessState
	r.exit = Exit{Resource: a.name, PID: r.pid, Code: st.ExitCode(), Status: st.String()}
	close(r.done)
	if r.running.Load() && !r.stopping.Load() {
		a.notify(r)
	}
}

func (r *run) closeOutputs() {
	for _, o := range r.outputs {
		o.w.Close()
		o.r.Close()
	}
}

// output carries one stream of the child into a LogWriter through a pipe we
// own, so the waiter does not block on a pipe that a grandchild keeps open.
type output struct {
	r, w *os.File
	log  *proc.LogWriter
	done chan struct{}
}

func newOutput(log *proc.LogWriter) (*output, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	return &output{r: r, w: w, log: log, done: make(chan struct{})}, nil
}

func (o *output) copy() {
	defer close(o.done)
	_, _ = io.Copy(o.log, o.r)
	o.log.Close()
}

// drain waits for the copy to reach end of file, or for the timer, then
// closes the read end so the copy ends even if some process the group
// left behind still holds the pipe.
func (o *output) drain(expired <-chan struct{}) {
	select {
	case <-o.done:
	case <-expired:
	}
	o.r.Close()
	<-o.done
}
