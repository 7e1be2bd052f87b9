// Package ocf owns the ocf resource agent: it runs any OCF 1.1 resource
// agent (the scripts of Debian's resource-agents package, or a vendor's) as
// Pacemaker does, and turns its exit codes into resource.Agent results. It
// implements resource.Agent; the manager constructs it from config.OCF,
// and the config check uses MetaData to report missing parameters. It
// imports config, resource and exec/proc.
//
// Every action runs as a child in its own process group, with a clean
// environment holding only PATH and the OCF variables: OCF_ROOT,
// OCF_FUNCTIONS_DIR, OCF_RESOURCE_INSTANCE, OCF_RESOURCE_TYPE,
// OCF_RESOURCE_PROVIDER, OCF_RA_VERSION_MAJOR/MINOR (1.1), OCF_RESKEY_<name>
// for each parameter, OCF_RESKEY_CRM_meta_timeout (milliseconds left until
// the context's deadline), OCF_RESKEY_CRM_meta_interval (the monitor
// interval in milliseconds for monitor, 0 otherwise, which agents read as a
// probe), OCF_CHECK_LEVEL=0, and HA_LOGFACILITY=none with HA_LOGFILE empty
// so that ocf_log writes to stderr. Standard output and error are logged
// line by line, capped and rate limited, at Debug: agents print a lot on
// every action (nginx's agent its whole build configuration on each
// start) that tells an operator nothing. Only what ocf_log marks as an
// error (ERROR:, CRIT:) is logged at Warn, and its warnings (WARNING:) at
// Info. The last "ocf-exit-reason:" line becomes part of the error, and is
// logged with it. At the end of the context the whole process
// group is SIGKILLed and the action is a soft failure "timed out after X";
// after a normal exit nothing is killed, because a daemon the agent started
// may share its process group.
//
// Exit codes, as Pacemaker treats them (we never promote, so a promoted
// resource is simply running):
//
//	code  name                   start      monitor          stop       failure
//	0     OCF_SUCCESS            ok         ok               ok
//	1     OCF_ERR_GENERIC        fail       fail             fail       soft
//	2     OCF_ERR_ARGS           fail       fail             fail       hard
//	3     OCF_ERR_UNIMPLEMENTED  fail       fail             fail       hard
//	4     OCF_ERR_PERM           fail       fail             fail       hard
//	5     OCF_ERR_INSTALLED      fail       fail             fail       hard
//	6     OCF_ERR_CONFIGURED     fail       fail             fail       fatal
//	7     OCF_NOT_RUNNING        fail       ErrNotRunning    ok         soft
//	8     OCF_RUNNING_PROMOTED   ok         ok (running)     fail       soft
//	9     OCF_FAILED_PROMOTED    fail       fail             fail       soft
//	190   OCF_DEGRADED           ok (warn)  ok (warn)        fail       soft
//	191   OCF_DEGRADED_PROMOTED  ok (warn)  ok (warn)        fail       soft
//	other                        fail       fail             fail       soft
//	timeout / killed by signal   fail       fail             fail       soft
//
// Soft: restart in place; hard: this node cannot run it, move the group;
// fatal: the configuration is broken, run it nowhere. An agent executable
// that is missing counts as OCF_ERR_INSTALLED, one that may not be run as
// OCF_ERR_PERM.
package ocf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"tandem/internal/clock"
	"tandem/internal/config"
	"tandem/internal/resource"
	"tandem/internal/resource/exec/proc"
)

// DefaultRoot is where Debian (and every other distribution) installs OCF
// agents.
const DefaultRoot = "/usr/lib/ocf"

// DefaultTimeout bounds an action whose context has no deadline; it is
// Pacemaker's default operation timeout.
const DefaultTimeout = 20 * time.Second

// ErrUnimplemented is returned (wrapped) by Validate for an agent without
// validate-all.
var ErrUnimplemented = errors.New("ocf: action not implemented by the agent")

// Option changes an Agent's defaults.
type Option func(*Agent)

// WithMonitorInterval sets the monitor interval the agent is told in
// OCF_RESKEY_CRM_meta_interval. Zero (the default) makes every monitor a
// probe, which some agents treat more quietly.
func WithMonitorInterval(d time.Duration) Option { return func(a *Agent) { a.interval = d } }

// WithClock sets the clock used to rate limit logged output.
func WithClock(c clock.Clock) Option { return func(a *Agent) { a.clock = c } }

// Agent runs one instance of an OCF resource agent. It implements
// resource.Agent. Actions of one Agent never overlap: a call waits (within
// its context) for the previous one to end.
type Agent struct {
	instance string
	provider string
	typ      string
	root     string
	path     string
	params   map[string]string
	interval time.Duration
	logger   *slog.Logger
	clock    clock.Clock
	busy     chan struct{} // a one-slot semaphore
}

var _ resource.Agent = (*Agent)(nil)

var namePart = regexp.MustCompile(`^[A-Za-z0-9_+-][A-Za-z0-9_.+-]*$`)

// ParseAgent splits "provider/type" (or Pacemaker's "ocf:provider:type")
// into provider and type; neither may climb out of the resource.d
// directory.
func ParseAgent(s string) (provider, typ string, err error) {
	if rest, ok := strings.CutPrefix(s, "ocf:"); ok {
		provider, typ, _ = strings.Cut(rest, ":")
	} else {
		provider, typ, _ = strings.Cut(s, "/")
	}
	if !namePart.MatchString(provider) || !namePart.MatchString(typ) || typ == ".." || provider == ".." {
		return "", "", fmt.Errorf("ocf: agent %q: want provider/type, e.g. heartbeat/Dummy", s)
	}
	return provider, typ, nil
}

// New returns an agent for spec (validated by the config loader; New still
// rejects what it cannot pass to an agent).
func New(instance string, spec config.OCF, logger *slog.Logger, opts ...Option) (*Agent, error) {
	provider, typ, err := ParseAgent(spec.Agent)
	if err != nil {
		return nil, err
	}
	root := spec.Root
	if root == "" {
		root = DefaultRoot
	}
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("ocf: %s: root %q is not an absolute path", instance, root)
	}
	for k, v := range spec.Params {
		if err := errors.Join(proc.CheckEnvName(k), proc.CheckEnvValue(k, v)); err != nil {
			return nil, fmt.Errorf("ocf: %s: param: %w", instance, err)
		}
		if strings.HasPrefix(k, "CRM_meta_") {
			return nil, fmt.Errorf("ocf: %s: param %s: the CRM_meta_ prefix is reserved for the cluster", instance, k)
		}
	}
	a := &Agent{
		instance: instance,
		provider: provider,
		typ:      typ,
		root:     root,
		path:     filepath.Join(root, "resource.d", provider, typ),
		params:   spec.Params,
		logger:   logger.With("agent", "ocf:"+provider+":"+typ),
		clock:    clock.Real{},
		busy:     make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(a)
	}
	return a, nil
}

// Start runs the agent's start action.
func (a *Agent) Start(ctx context.Context) error { return a.op(ctx, "start") }

// Stop runs the agent's stop action; "not running" is a successful stop.
func (a *Agent) Stop(ctx context.Context) error { return a.op(ctx, "stop") }

// Monitor runs the agent's monitor action at OCF_CHECK_LEVEL 0.
func (a *Agent) Monitor(ctx context.Context) error { return a.op(ctx, "monitor") }

// Validate runs validate-all: nil when the parameters are valid; an error
// wrapping ErrUnimplemented when the agent has no such action.
func (a *Agent) Validate(ctx context.Context) error {
	res, err := a.run(ctx, "validate-all", nil)
	if err != nil {
		return err
	}
	if res.code == ExitErrUnimplemented {
		return fmt.Errorf("%s: %w", a.prefix("validate-all"), ErrUnimplemented)
	}
	if res.code != ExitSuccess {
		return a.failure("validate-all", res)
	}
	return nil
}

// maxMetaData bounds meta-data output; real agents print a few KiB to 60
// KiB.
const maxMetaData = 1 << 20

// MetaData runs the meta-data action and returns the XML it printed.
func (a *Agent) MetaData(ctx context.Context) ([]byte, error) {
	var out capped
	out.max = maxMetaData
	res, err := a.run(ctx, "meta-data", &out)
	if err != nil {
		return nil, err
	}
	if res.code != ExitSuccess {
		return nil, a.failure("meta-data", res)
	}
	if out.dropped > 0 {
		return nil, fmt.Errorf("%s: output larger than %d bytes", a.prefix("meta-data"), maxMetaData)
	}
	return out.buf, nil
}

func (a *Agent) op(ctx context.Context, action string) error {
	res, err := a.run(ctx, action, nil)
	if err != nil {
		return err
	}
	switch classify(action, res.code) {
	case ok:
		return nil
	case okDegraded:
		a.logger.Warn("resource degraded", "action", action, "rc", CodeName(res.code), "reason", res.reason)
		return nil
	case notRunning:
		return fmt.Errorf("%s: %w", a.prefix(action), resource.ErrNotRunning)
	}
	return a.failure(action, res)
}

func (a *Agent) prefix(action string) string {
	return fmt.Sprintf("ocf: %s (ocf:%s:%s) %s", a.instance, a.provider, a.typ, action)
}

// failure is the classified error for an action that exited with a failing
// code.
func (a *Agent) failure(action string, res result) error {
	why := res.reason
	if why == "" {
		why = res.lastStderr
	}
	if len(why) > maxReason {
		why = strings.ToValidUTF8(why[:maxReason], "") + "…"
	}
	if why != "" {
		return resource.Failf(severityOf(res.code), "%s: %s: %s", a.prefix(action), CodeName(res.code), why)
	}
	return resource.Failf(severityOf(res.code), "%s: %s", a.prefix(action), CodeName(res.code))
}

// maxReason bounds the agent's own words quoted in an error: enough for
// any real exit reason, short enough for a status line.
const maxReason = 300

// result is how an action ended, when it ended by itself.
type result struct {
	code       int
	reason     string // the last ocf-exit-reason
	lastStderr string // the last non-empty line of stderr
}

// run runs one action to its end. The error is for an action that did not
// produce an exit code (timed out, killed, could not start) or that could
// not start for lack of the agent, already classified; otherwise the exit
// code is in the result.
func (a *Agent) run(ctx context.Context, action string, stdout *capped) (result, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	select { // one action at a time, as Pacemaker runs them
	case a.busy <- struct{}{}:
		defer func() { <-a.busy }()
	case <-ctx.Done():
		return result{}, resource.Failf(resource.Soft, "%s: waiting for the previous action: %w", a.prefix(action), context.Cause(ctx))
	}
	deadline, _ := ctx.Deadline()
	timeout := time.Until(deadline)
	log := a.logger.With("action", action)
	var res result
	errOut := proc.NewLogWriter(log, a.clock, "stream", "stderr")
	errOut.Level(outputLevel)
	errOut.Tee(func(line string) {
		if r, ok := strings.CutPrefix(line, "ocf-exit-reason:"); ok {
			res.reason = strings.TrimSpace(r)
		} else if s := strings.TrimSpace(line); s != "" {
			res.lastStderr = s
		}
	})
	var out io.Writer = stdout
	var outLog *proc.LogWriter
	if stdout == nil {
		outLog = proc.NewLogWriter(log, a.clock, "stream", "stdout")
		outLog.Level(outputLevel)
		out = outLog
	}
	start := time.Now()
	pr, err := proc.Run(ctx, proc.Cmd{
		Argv:   []string{a.path, action},
		Env:    a.env(action, timeout),
		Dir:    "/",
		Stdout: out,
		Stderr: errOut,
	})
	errOut.Close()
	if outLog != nil {
		outLog.Close()
	}
	elapsed := time.Since(start)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, exec.ErrNotFound):
		res.code, res.reason = ExitErrInstalled, fmt.Sprintf("agent %s is not installed", a.path)
	case errors.Is(err, fs.ErrPermission):
		res.code, res.reason = ExitErrPerm, fmt.Sprintf("agent %s may not be executed: %v", a.path, err)
	case err != nil:
		return res, resource.Failf(resource.Soft, "%s: %w", a.prefix(action), err)
	case pr.TimedOut:
		log.Warn("agent timed out; killed its process group", "timeout", timeout.Round(time.Millisecond))
		return res, resource.Failf(resource.Soft, "%s: timed out after %s: %w",
			a.prefix(action), timeout.Round(time.Millisecond), context.DeadlineExceeded)
	case pr.Signal != "":
		return res, resource.Failf(resource.Soft, "%s: agent killed by %s", a.prefix(action), pr.Signal)
	default:
		res.code = pr.Code
	}
	log.Debug("agent finished", "rc", CodeName(res.code), "elapsed", elapsed.Round(time.Millisecond))
	return res, nil
}

// ocfPriority finds the priority ocf_log writes before a message
// ("2025/01/02_10:00:00 ERROR: ...", or without the date).
var ocfPriority = regexp.MustCompile(`(?:^|\s)(CRIT|ERROR|WARNING):\s`)

// outputLevel is the level of a line an agent printed: Warn for what
// ocf_log marks as an error, Info for its warnings, Debug for everything
// else (the exit reason too: it is part of the action's error).
func outputLevel(line string) slog.Level {
	m := ocfPriority.FindStringSubmatch(line)
	switch {
	case m == nil:
		return slog.LevelDebug
	case m[1] == "WARNING":
		return slog.LevelInfo
	}
	return slog.LevelWarn
}

// env is the complete environment of an action.
func (a *Agent) env(action string, timeout time.Duration) []string {
	interval := time.Duration(0)
	if action == "monitor" {
		interval = a.interval
	}
	vars := map[string]string{
		"OCF_ROOT":                     a.root,
		"OCF_FUNCTIONS_DIR":            filepath.Join(a.root, "lib", "heartbeat"),
		"OCF_RESOURCE_INSTANCE":        a.instance,
		"OCF_RESOURCE_TYPE":            a.typ,
		"OCF_RESOURCE_PROVIDER":        a.provider,
		"OCF_RA_VERSION_MAJOR":         "1",
		"OCF_RA_VERSION_MINOR":         "1",
		"OCF_CHECK_LEVEL":              "0",
		"OCF_RESKEY_CRM_meta_timeout":  fmt.Sprint(max(timeout.Milliseconds(), 0)),
		"OCF_RESKEY_CRM_meta_interval": fmt.Sprint(interval.Milliseconds()),
		// ocf_log: no syslog, no log file, so it writes to stderr, which
		// we log.
		"HA_LOGFACILITY": "none",
		"HA_LOGFILE":     "",
		"HA_LOGD":        "no",
	}
	for k, v := range a.params {
		vars["OCF_RESKEY_"+k] = v
	}
	return proc.Env(vars)
}

// capped keeps the first max bytes written to it and counts the rest.
type capped struct {
	max     int
	buf     []byte
	dropped int
}

func (c *capped) Write(p []byte) (int, error) {
	room := max(c.max-len(c.buf), 0)
	n := min(room, len(p))
	c.buf = append(c.buf, p[:n]...)
	c.dropped += len(p) - n
	return len(p), nil
}
