package fence

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// Action is a FenceAgentAPI action.
type Action string

const (
	Off      Action = "off"
	On       Action = "on"
	Reboot   Action = "reboot"
	Status   Action = "status"
	Monitor  Action = "monitor"
	List     Action = "list"
	Metadata Action = "metadata"
)

// Valid reports whether a is one of the actions tandem sends.
func (a Action) Valid() bool {
	switch a {
	case Off, On, Reboot, Status, Monitor, List, Metadata:
		return true
	}
	return false
}

// Power is what a status action said.
type Power int

const (
	PowerUnknown Power = iota
	PowerOn
	PowerOff
)

func (p Power) String() string {
	switch p {
	case PowerOn:
		return "on"
	case PowerOff:
		return "off"
	}
	return "unknown"
}

// Defaults, each with its reason.
const (
	// DefaultTimeout bounds one attempt: fence_ipmilan's own power_wait and
	// power_timeout (20 s) plus its login fit, and a hung agent is killed
	// well before an operator would give up on a takeover.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxOutput bounds what an agent may print: list of a large PDU
	// and metadata are a few KiB; anything past 256 KiB is not an agent
	// talking the protocol.
	DefaultMaxOutput = 256 << 10
	// stderrTail is how much of an agent's stderr an error carries.
	stderrTail = 512
)

// Agent is one fence agent program driven by the FenceAgentAPI: every
// parameter goes to its stdin as key=value lines (never on its command
// line, where ps would show a password), the agent's exit code says what
// happened (0 success or on, 2 off for status, anything else a failure).
type Agent struct {
	// Path is the agent binary (fence_ipmilan, fence_dummy, a script).
	Path string
	// Params are sent as key=value, sorted by key (ipaddr, login, lanplus…).
	Params map[string]string
	// SecretFiles maps a parameter (passwd, usually) to a file whose
	// content, without its trailing newline, is the value. The file is read
	// at each attempt, so a rotated password needs no restart.
	SecretFiles map[string]string
	// Timeout bounds one attempt; the agent's process group is killed at it.
	Timeout time.Duration
	// MaxOutput bounds stdout and stderr each.
	MaxOutput int
}

// Reply is what one attempt of an action returned.
type Reply struct {
	Action   Action
	Power    Power    // for status: what the agent said
	Plugs    []string // for list: the plugs the device knows
	Output   string   // stdout (metadata's XML, list's lines)
	Duration time.Duration
}

// Error kinds, for errors.Is.
var (
	ErrTimeout   = errors.New("fence: agent timed out")
	ErrOutput    = errors.New("fence: agent output not understood")
	ErrAgentFail = errors.New("fence: agent failed")
)

// IsTimeout reports whether err is an attempt that was killed at its timeout.
func IsTimeout(err error) bool { return errors.Is(err, ErrTimeout) }

// stdin builds the protocol's input. Values with a newline or a NUL would
// let one parameter inject another, so they are refused.
func (a *Agent) stdin(action Action, plug string) ([]byte, []string, error) {
	var b bytes.Buffer
	var secrets []string
	line := func(k, v string) error {
		if strings.ContainsAny(k, "=\n\r\x00") || k == "" {
			return fmt.Errorf("fence: parameter name %q not allowed", k)
		}
		if strings.ContainsAny(v, "\n\r\x00") {
			return fmt.Errorf("fence: parameter %s: a value may not hold a newline or NUL", k)
		}
		fmt.Fprintf(&b, "%s=%s\n", k, v)
		return nil
	}
	if err := line("action", string(action)); err != nil {
		return nil, nil, err
	}
	keys := make([]string, 0, len(a.Params))
	for k := range a.Params {
		if k == "action" || k == "plug" || k == "port" {
			return nil, nil, fmt.Errorf("fence: parameter %s is set by tandem, not by config", k)
		}
		if _, dup := a.SecretFiles[k]; dup {
			return nil, nil, fmt.Errorf("fence: parameter %s is both a value and a secret file", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := line(k, a.Params[k]); err != nil {
			return nil, nil, err
		}
	}
	if plug != "" {
		if err := line("plug", plug); err != nil {
			return nil, nil, err
		}
	}
	keys = keys[:0]
	for k := range a.SecretFiles {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		raw, err := os.ReadFile(a.SecretFiles[k])
		if err != nil {
			// The path is not secret; the content is never in an error.
			return nil, nil, fmt.Errorf("fence: secret %s: %w", k, err)
		}
		v := strings.TrimRight(string(raw), "\r\n")
		if v == "" {
			return nil, nil, fmt.Errorf("fence: secret %s: file %s is empty", k, a.SecretFiles[k])
		}
		if err := line(k, v); err != nil {
			return nil, nil, fmt.Errorf("fence: secret %s: file %s holds more than one line", k, a.SecretFiles[k])
		}
		secrets = append(secrets, v)
	}
	return b.Bytes(), secrets, nil
}

// Run runs one attempt of action on plug ("" for devices with one plug).
// A non-zero exit (other than status's 2) is an ErrAgentFail carrying the
// tail of the agent's stderr with every secret redacted; a hang past
// Timeout is ErrTimeout (its process group killed); output that is too
// large or not text is ErrOutput.
func (a *Agent) Run(ctx context.Context, action Action, plug string) (Reply, error) {
	rep := Reply{Action: action}
	if !action.Valid() {
		return rep, fmt.Errorf("fence: unknown action %q", action)
	}
	input, secrets, err := a.stdin(action, plug)
	if err != nil {
		return rep, err
	}
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	limit := a.MaxOutput
	if limit <= 0 {
		limit = DefaultMaxOutput
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.Path)
	cmd.Stdin = bytes.NewReader(input)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	stdout := &boundedBuffer{limit: limit}
	stderr := &boundedBuffer{limit: limit, keepTail: true}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	inGroup(cmd)
	// Grandchildren (ipmitool under fence_ipmilan) may hold the pipes after
	// the group kill; do not wait for them past this.
	cmd.WaitDelay = time.Second
	start := time.Now()
	runErr := cmd.Run()
	rep.Duration = time.Since(start)
	tail := redact(lastBytes(stderr.String(), stderrTail), secrets)
	if ctx.Err() != nil && (runErr != nil || errors.Is(ctx.Err(), context.DeadlineExceeded)) {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return rep, fmt.Errorf("%w: %s %s after %v (process group killed)%s", ErrTimeout, a.Path, action, timeout, tailSuffix(tail))
		}
		return rep, fmt.Errorf("fence: %s %s: %w", a.Path, action, ctx.Err())
	}
	if stdout.overflow {
		return rep, fmt.Errorf("%w: %s %s printed more than %d bytes", ErrOutput, a.Path, action, limit)
	}
	out := stdout.String()
	if !utf8.ValidString(out) || strings.ContainsRune(out, 0) {
		return rep, fmt.Errorf("%w: %s %s printed binary data", ErrOutput, a.Path, action)
	}
	rep.Output = redact(out, secrets)
	code := 0
	if runErr != nil {
		var exitErr *exec.ExitError
		if !errors.As(runErr, &exitErr) {
			return rep, fmt.Errorf("fence: %s %s: %w", a.Path, action, runErr)
		}
		code = exitErr.ExitCode()
	}
	if action == Status {
		return a.status(rep, code, tail)
	}
	if code != 0 {
		return rep, fmt.Errorf("%w: %s %s exited %d%s", ErrAgentFail, a.Path, action, code, tailSuffix(tail))
	}
	if action == List {
		plugs, err := parseList(out)
		if err != nil {
			return rep, fmt.Errorf("%w: %s list: %v", ErrOutput, a.Path, err)
		}
		rep.Plugs = plugs
	}
	if action == Metadata && !strings.Contains(out, "<resource-agent") {
		return rep, fmt.Errorf("%w: %s metadata is not a resource-agent XML", ErrOutput, a.Path)
	}
	return rep, nil
}

// status reads the exit code (0 on, 2 off) and checks that a "Status:" line,
// when the agent prints one, agrees: an agent whose words and code differ is
// not trusted to confirm a fence.
func (a *Agent) status(rep Reply, code int, tail string) (Reply, error) {
	switch code {
	case 0:
		rep.Power = PowerOn
	case 2:
		rep.Power = PowerOff
	default:
		return rep, fmt.Errorf("%w: %s status exited %d%s", ErrAgentFail, a.Path, code, tailSuffix(tail))
	}
	for _, l := range strings.Split(rep.Output, "\n") {
		l = strings.TrimSpace(l)
		said, ok := strings.CutPrefix(l, "Status:")
		if !ok {
			continue
		}
		said = strings.ToLower(strings.TrimSpace(said))
		if said != rep.Power.String() {
			p := rep.Power
			rep.Power = PowerUnknown
			return rep, fmt.Errorf("%w: %s status exited %d (%s) but printed %q", ErrOutput, a.Path, code, p, l)
		}
	}
	return rep, nil
}

// parseList reads list's "plug,alias" lines (alias optional).
func parseList(out string) ([]string, error) {
	var plugs []string
	for i, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		plug, _, _ := strings.Cut(l, ",")
		if plug == "" || strings.ContainsAny(plug, " \t") {
			return nil, fmt.Errorf("line %d: %q is not plug[,alias]", i+1, l)
		}
		plugs = append(plugs, plug)
	}
	return plugs, nil
}

func redact(s string, secrets []string) string {
	for _, v := range secrets {
		if v != "" {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
	}
	return s
}

func lastBytes(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	for len(s) > 0 && !utf8.RuneStart(s[0]) {
		s = s[1:]
	}
	return "…" + s
}

func tailSuffix(tail string) string {
	tail = dropPythonWarnings(tail)
	if tail == "" {
		return ""
	}
	return ": " + strings.ReplaceAll(tail, "\n", " | ")
}

// pythonWarning is the first line of a warning Python prints to standard
// error ("/usr/sbin/fence_ipmilan:5: DeprecationWarning: 'pipes' is
// deprecated…"); the source line it quotes follows, indented.
var pythonWarning = regexp.MustCompile(`^\S+:\d+: [A-Za-z]*Warning: `)

// dropPythonWarnings removes the warnings the fence agents (Python) print
// on every run, so an error shows the agent's own words.
func dropPythonWarnings(tail string) string {
	var kept []string
	lines := strings.Split(strings.TrimSpace(tail), "\n")
	for i := 0; i < len(lines); i++ {
		if pythonWarning.MatchString(lines[i]) {
			if i+1 < len(lines) && strings.HasPrefix(lines[i+1], " ") {
				i++
			}
			continue
		}
		kept = append(kept, lines[i])
	}
	return strings.TrimSpace(strings.Join(kept, "\n"))
}

// boundedBuffer keeps at most limit bytes: the head (stdout, whose overflow
// is an error) or the tail (stderr, whose last lines say why).
type boundedBuffer struct {
	buf      []byte
	limit    int
	keepTail bool
	overflow bool
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if b.keepTail {
		b.buf = append(b.buf, p...)
		if len(b.buf) > b.limit {
			b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.limit:]...)
			b.overflow = true
		}
		return n, nil
	}
	room := b.limit - len(b.buf)
	if len(p) > room {
		p = p[:max(room, 0)]
		b.overflow = true
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

func (b *boundedBuffer) String() string { return string(b.buf) }
