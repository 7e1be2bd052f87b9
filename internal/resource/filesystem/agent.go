package filesystem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"tandem/internal/clock"
	"tandem/internal/resource"
)

// Agent is the filesystem resource on this node. It implements
// resource.Agent.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	clock  clock.Clock
	run    runner
	host   host
	procFS fs.FS
	procs  procView

	mode    string
	modeErr error
	// attachers: the chosen one first, then the other, whose leftovers
	// (from before a module was loaded or unloaded) are cleaned too.
	attachers []attacher

	op      sync.Mutex  // serialises Start and Stop
	probing atomic.Bool // a probe of the mount root has not returned
	adopted atomic.Bool // said once that a previous agent's mount is kept

	servedHere bool // ServedByThisProcess
}

var _ resource.Agent = (*Agent)(nil)

// Option changes an Agent's defaults.
type Option func(*Agent)

// WithClock sets the clock of the agent's waits and retries.
func WithClock(c clock.Clock) Option { return func(a *Agent) { a.clock = c } }

// ServedByThisProcess says that the export is served by the calling
// process (the agent's own volume replica), so it ends with the process:
// an nbdfuse that a crashed agent started, found still running under the
// mount, is connected to nothing, and every read and write on the mount
// fails or hangs while the mount root, in the cache, still answers. Such
// an attachment is broken (Monitor fails, Start replaces it), not kept.
func ServedByThisProcess() Option { return func(a *Agent) { a.servedHere = true } }

// withHost replaces what the mode choice and the program checks look at
// (tests).
func withHost(h host) Option { return func(a *Agent) { a.host = h } }

// New checks cfg and returns the agent; a nil logger discards. The
// attach mode is chosen here (Mode); what this node lacks to run the
// resource (programs, a fuse or nbd module) fails Start, not New, so a
// configuration loads on a node that cannot run every group.
func New(cfg Config, log *slog.Logger, opts ...Option) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("filesystem: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Mount = cleanPath(cfg.Mount)
	cfg.StateDir = cleanPath(cfg.StateDir)
	src, _ := parseSource(cfg.Source) // valid: Validate said so
	a := &Agent{cfg: cfg, log: log.With("mount", cfg.Mount), clock: clock.Real{}, run: execRun,
		host: realHost, procFS: os.DirFS("/proc")}
	for _, o := range opts {
		o(a)
	}
	a.procs = procView{fsys: a.procFS, linkMount: procLinkMount}
	var note string
	a.mode, note, a.modeErr = chooseMode(a.host)
	if note != "" && a.modeErr == nil {
		a.log.Info("filesystem: "+note+"; attaching with nbdfuse and a loop device", "mode", a.mode)
	}
	selfNS, _ := os.Readlink("/proc/self/ns/mnt")
	mounts := mountFinder{proc: a.procFS, selfNS: selfNS}
	kernel := &kernelNBD{uri: cfg.Source, src: src, sys: "/sys", dev: "/dev",
		record: cfg.StateDir + "/nbd-device", mounts: mounts, run: a.run, clock: a.clock, log: a.log}
	fuse := &nbdFuse{uri: cfg.Source, dir: cfg.StateDir, sys: "/sys", proc: a.procFS,
		mounts: mounts, run: a.run, clock: a.clock, log: a.log}
	if a.servedHere {
		var ok bool
		if fuse.serverStart, ok = startTicks(a.procFS, "self"); !ok {
			a.log.Warn("filesystem: cannot read this process's start time (/proc/self/stat): an nbdfuse left by an earlier agent will not be recognised")
		}
	}
	a.attachers = []attacher{fuse, kernel}
	if a.mode == ModeKernelNBD {
		a.attachers = []attacher{kernel, fuse}
	}
	return a, nil
}

// Mode is how this agent attaches the export: ModeKernelNBD or
// ModeNBDFuse; "" when this node can do neither (Start says why).
func (a *Agent) Mode() string { return a.mode }

func cleanPath(p string) string {
	if p == "" {
		return p
	}
	return strings.TrimSuffix(p, "/")
}

func (a *Agent) errorf(s resource.Severity, format string, args ...any) error {
	return resource.Failf(s, "filesystem: %s: "+format, append([]any{a.cfg.Mount}, args...)...)
}

// state is what the agent sees of its resource on the host.
type state struct {
	mounts []mount
	atts   []attachment // one per attacher, in a.attachers order
	top    mount        // what shows at the mount point
	onTop  bool         // something is mounted at the mount point
}

// look reads the state within ctx: a /proc read can block on a process
// stuck in a hung file system (its mmap lock), and a call must still
// return at its deadline.
func (a *Agent) look(ctx context.Context) (state, error) {
	return boundedValue(ctx, a.lookNow)
}

func (a *Agent) lookNow() (state, error) {
	ms, err := readMounts()
	if err != nil {
		return state{}, err
	}
	st := state{mounts: ms}
	for _, at := range a.attachers {
		st.atts = append(st.atts, at.inspect(ms))
	}
	st.top, st.onTop = topAt(ms, a.cfg.Mount)
	return st, nil
}

// ours reports whether m is on a device this resource attached, and
// which attachment.
func (st state) ours(m mount) (attachment, bool) {
	for _, at := range st.atts {
		if at.holds(m) {
			return at, true
		}
	}
	return attachment{}, false
}

// isOurs reports whether m is on a device this resource attached.
func (st state) isOurs(m mount) bool { _, ok := st.ours(m); return ok }

// mountedHere reports whether one of our devices is mounted at the mount
// point, on top or beneath another mount.
func (st state) mountedHere(point string) bool {
	return len(toUnmount(st.mounts, point, st.isOurs)) > 0
}

// leftovers lists every piece of an attachment found.
func (st state) leftovers() []string {
	var parts []string
	for _, at := range st.atts {
		parts = append(parts, at.parts...)
	}
	return parts
}

func (st state) stale() bool {
	for _, at := range st.atts {
		if at.stale {
			return true
		}
	}
	return false
}

// running reports whether the resource runs as configured: our device
// on top of the mount point with the configured type, attached by the
// chosen mode, whole, from the configured source.
func (a *Agent) running(st state) bool {
	cur := st.atts[0]
	return st.onTop && cur.holds(st.top) && cur.broken == "" && cur.source == a.cfg.Source &&
		st.top.fstype == a.cfg.FSType
}

// Start attaches the export, checks the file system, and mounts it. A
// resource already running as configured (also one a previous agent
// started) is left as it is; anything less (a dead nbdfuse, a loop
// device without its mount, another source) is taken down first. A
// mount point that holds another file system is a hard failure.
func (a *Agent) Start(ctx context.Context) error {
	a.op.Lock()
	defer a.op.Unlock()
	begin := a.clock.Now()
	if a.modeErr != nil {
		return a.errorf(resource.Hard, "start: %w", a.modeErr)
	}
	if m := a.host.missing(a.tools()...); len(m) > 0 {
		return a.errorf(resource.Hard, "start: not installed: %s", strings.Join(m, ", "))
	}
	if err := ctx.Err(); err != nil {
		return a.errorf(resource.Soft, "start: %w", err)
	}
	st, err := a.look(ctx)
	if err != nil {
		return a.errorf(resource.Soft, "start: %w", err)
	}
	if a.running(st) {
		if a.adopted.CompareAndSwap(false, true) {
			a.log.Info("filesystem already mounted; kept", "device", st.top.source, "mode", a.mode)
		}
		return nil
	}
	if st.onTop {
		if _, ours := st.ours(st.top); !ours {
			return a.errorf(resource.Hard, "start: the mount point is in use: %s (%s) is mounted there",
				st.top.source, st.top.fstype)
		}
	}
	if left := st.leftovers(); len(left) > 0 || st.stale() {
		a.log.Warn("filesystem: cleaning up an earlier attachment before starting", "found", strings.Join(left, "; "))
		if err := a.teardown(ctx); err != nil {
			return a.errorf(resource.Soft, "start: cleaning up an earlier attachment: %w", err)
		}
	}
	if err := a.makeMountPoint(); err != nil {
		return err
	}
	at := a.attachers[0]
	dev, err := at.attach(ctx)
	if err != nil {
		return a.failStart(ctx, resource.Soft, "attach %s: %w", a.cfg.Source, err)
	}
	attached := a.clock.Now()
	if a.cfg.Mkfs {
		if err := a.mkfsIfBlank(ctx, dev); err != nil {
			return a.failStart(ctx, resource.Hard, "%w", err)
		}
	}
	if a.cfg.Fsck {
		if sev, err := a.fsck(ctx, dev); err != nil {
			return a.failStart(ctx, sev, "%w", err)
		}
	}
	checked := a.clock.Now()
	args := []string{"-t", a.cfg.FSType}
	if a.cfg.Options != "" {
		args = append(args, "-o", a.cfg.Options)
	}
	args = append(args, dev, a.cfg.Mount)
	if out, err := a.run(ctx, "mount", args...); err != nil {
		return a.failStart(ctx, resource.Soft, "%w", cmdError(err, out, "mount", args...))
	}
	a.adopted.Store(true)
	a.log.Info("filesystem mounted", "device", dev, "fstype", a.cfg.FSType, "mode", a.mode,
		"attach_ms", attached.Sub(begin).Milliseconds(), "check_ms", checked.Sub(attached).Milliseconds(),
		"mount_ms", a.clock.Since(checked).Milliseconds())
	return nil
}

// failStart takes down what a failed start attached (within ctx; what
// it cannot, the next start or stop finds) and returns the error.
func (a *Agent) failStart(ctx context.Context, s resource.Severity, format string, args ...any) error {
	err := a.errorf(s, "start: "+format, args...)
	if terr := a.teardown(ctx); terr != nil {
		a.log.Warn("filesystem: cannot take down what the failed start attached", "err", terr)
		return errors.Join(err, fmt.Errorf("and taking it down: %w", terr))
	}
	return err
}

// tools are the programs a start runs.
func (a *Agent) tools() []string {
	need := []string{"mount"}
	if a.cfg.Fsck {
		if c := fsckCommand(a.cfg.FSType, ""); c != nil {
			need = append(need, c[0])
		}
	}
	if a.cfg.Mkfs {
		need = append(need, "blkid", "mkfs."+a.cfg.FSType)
	}
	return need
}

func (a *Agent) makeMountPoint() error {
	fi, err := os.Stat(a.cfg.Mount)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(a.cfg.Mount, 0o755); err != nil {
			return a.errorf(resource.Hard, "start: make the mount point: %w", err)
		}
	case err != nil:
		return a.errorf(resource.Soft, "start: %w", err)
	case !fi.IsDir():
		return a.errorf(resource.Hard, "start: the mount point is not a directory")
	}
	return nil
}

// mkfsIfBlank makes the file system on a device without any signature.
func (a *Agent) mkfsIfBlank(ctx context.Context, dev string) error {
	out, err := a.run(ctx, "blkid", "-p", dev)
	switch exitCode(err) {
	case 0:
		return nil // something is there: never overwritten
	case 2: // no signature found
	default:
		return cmdError(err, out, "blkid", "-p", dev)
	}
	args := []string{"-q", dev}
	if out, err := a.run(ctx, "mkfs."+a.cfg.FSType, args...); err != nil {
		return cmdError(err, out, "mkfs."+a.cfg.FSType, args...)
	}
	a.log.Info("filesystem: made a file system on a blank volume", "device", dev, "fstype", a.cfg.FSType)
	return nil
}

// fsck runs the file system's check (Config.Fsck says which) and says
// how bad a failure is.
func (a *Agent) fsck(ctx context.Context, dev string) (resource.Severity, error) {
	c := fsckCommand(a.cfg.FSType, dev)
	if c == nil {
		return 0, nil
	}
	out, err := a.run(ctx, c[0], c[1:]...)
	code := exitCode(err)
	switch classifyE2fsck(code) {
	case fsckClean:
		return 0, nil
	case fsckRepaired:
		a.log.Warn("filesystem: the check repaired the file system", "device", dev, "exit", code,
			"output", strings.TrimSpace(string(out)))
		return 0, nil
	}
	if ctx.Err() != nil || code < 0 { // cut short: nothing is known of the file system
		return resource.Soft, cmdError(err, out, c[0], c[1:]...)
	}
	return resource.Hard, fmt.Errorf("the file system needs a repair by hand: %w", cmdError(err, out, c[0], c[1:]...))
}

// Stop unmounts the file system (after ForceUnmount, killing what holds
// it) and detaches the device, also what a previous agent left. It
// fails, saying what is left, when it cannot.
func (a *Agent) Stop(ctx context.Context) error {
	a.op.Lock()
	defer a.op.Unlock()
	if err := a.teardown(ctx); err != nil {
		return a.errorf(resource.Soft, "stop: %w", err)
	}
	return nil
}

// teardown unmounts our file system (and what was mounted on it or in
// it since, which would hold it), then detaches every attachment found, then checks that
// nothing is left.
func (a *Agent) teardown(ctx context.Context) error {
	st, err := a.look(ctx)
	if err != nil {
		return err
	}
	if off := toUnmount(st.mounts, a.cfg.Mount, st.isOurs); len(off) > 0 {
		for _, m := range off {
			if err := a.unmount(ctx, m); err != nil {
				return err
			}
		}
		if st, err = a.look(ctx); err != nil {
			return err
		}
	}
	for i, at := range a.attachers {
		if st.atts[i].empty() && !st.atts[i].stale {
			continue
		}
		if err := at.detach(ctx); err != nil {
			return fmt.Errorf("detach (%s): %w", at.mode(), err)
		}
	}
	if st, err = a.look(ctx); err != nil {
		return err
	}
	if left := st.leftovers(); len(left) > 0 {
		return fmt.Errorf("still attached: %s", strings.Join(left, "; "))
	}
	return nil
}

// Monitor: running when our device is mounted at the mount point with
// the configured type, its attachment is whole, and the mount root
// answers a read within ctx; cleanly stopped (resource.ErrNotRunning)
// when nothing is mounted or attached; failed otherwise.
func (a *Agent) Monitor(ctx context.Context) error {
	st, err := a.look(ctx)
	if err != nil {
		return a.errorf(resource.Soft, "monitor: %w", err)
	}
	at, ours := attachment{}, false
	if st.onTop {
		at, ours = st.ours(st.top)
	}
	left := st.leftovers()
	switch {
	case !ours && st.mountedHere(a.cfg.Mount):
		return a.errorf(resource.Soft, "monitor: covered by another mount: %s (%s)", st.top.source, st.top.fstype)
	case !ours && len(left) == 0:
		return fmt.Errorf("filesystem: %s: %w", a.cfg.Mount, resource.ErrNotRunning)
	case !ours:
		return a.errorf(resource.Soft, "monitor: attached (%s) but not mounted", strings.Join(left, "; "))
	case at.broken != "":
		return a.errorf(resource.Soft, "monitor: %s is mounted but %s", st.top.source, at.broken)
	case st.top.fstype != a.cfg.FSType:
		return a.errorf(resource.Soft, "monitor: mounted as %s, not %s", st.top.fstype, a.cfg.FSType)
	case at.source != "" && at.source != a.cfg.Source:
		return a.errorf(resource.Soft, "monitor: attached to %s, not %s", at.source, a.cfg.Source)
	}
	return a.probe(ctx)
}

// probe reads the mount root within ctx. A probe into a hung file system
// never returns; while one hangs, no other is started.
func (a *Agent) probe(ctx context.Context) error {
	if !a.probing.CompareAndSwap(false, true) {
		return a.errorf(resource.Soft, "monitor: an earlier read of the mount root has not returned (the file system hangs)")
	}
	done := make(chan error, 1)
	go func() {
		defer a.probing.Store(false)
		f, err := os.Open(a.cfg.Mount)
		if err == nil {
			if _, err = f.Readdirnames(1); err == io.EOF {
				err = nil
			}
			f.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return a.errorf(resource.Soft, "monitor: read the mount root: %w", err)
		}
		return nil
	case <-ctx.Done():
		return a.errorf(resource.Soft, "monitor: the mount root did not answer: %w", context.Cause(ctx))
	}
}

// bounded runs fn and waits for it or ctx, so a call into a hung file
// system does not hold the caller past its deadline (fn's goroutine ends
// when the kernel lets it).
func bounded(ctx context.Context, fn func() error) error {
	_, err := boundedValue(ctx, func() (struct{}, error) { return struct{}{}, fn() })
	return err
}

// boundedValue is bounded for a function with a result.
func boundedValue[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := fn()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, context.Cause(ctx)
	}
}
