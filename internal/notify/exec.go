package notify

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Exec runs a program once per event: the event's JSON on its standard
// input, its fields in TANDEM_* variables (TANDEM_KIND, TANDEM_NODE,
// TANDEM_SUBJECT, TANDEM_GROUP, TANDEM_EPOCH, TANDEM_TIME, TANDEM_MESSAGE,
// TANDEM_ACTOR, TANDEM_CLUSTER). Exit status 0 is delivered; anything else
// is retried. A hook still running at the call's deadline is killed with
// every process it started (its process group).
type Exec struct {
	argv []string
}

// NewExec returns the hook running argv.
func NewExec(argv []string) *Exec { return &Exec{argv: argv} }

func (*Exec) Name() string { return "exec" }

// Deliver runs the hook for m.
func (x *Exec) Deliver(ctx context.Context, m Message) error {
	cmd := exec.CommandContext(ctx, x.argv[0], x.argv[1:]...)
	cmd.Stdin = bytes.NewReader(append(m.JSON, '\n'))
	cmd.Env = append(os.Environ(), hookEnv(m)...)
	var out tail
	cmd.Stdout, cmd.Stderr = &out, &out
	ownGroup(cmd)
	// A hook's children that keep its output open are not waited for
	// past this.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if s := strings.TrimSpace(out.String()); s != "" {
		return fmt.Errorf("%s: %w (output: %s)", x.argv[0], err, s)
	}
	return fmt.Errorf("%s: %w", x.argv[0], err)
}

// hookEnv is the event as TANDEM_* variables.
func hookEnv(m Message) []string {
	e := m.Event
	clean := func(s string) string { return strings.ReplaceAll(s, "\x00", "") }
	env := []string{
		"TANDEM_KIND=" + string(e.Kind),
		"TANDEM_NODE=" + clean(e.Node),
		"TANDEM_SUBJECT=" + clean(e.Subject),
		"TANDEM_GROUP=" + clean(e.Group),
		"TANDEM_TIME=" + e.Time.UTC().Format(time.RFC3339Nano),
		"TANDEM_MESSAGE=" + clean(e.Message),
		"TANDEM_ACTOR=" + clean(e.Actor),
		"TANDEM_CLUSTER=" + clean(m.Cluster),
	}
	if e.Epoch != 0 {
		env = append(env, "TANDEM_EPOCH="+strconv.FormatUint(e.Epoch, 10))
	}
	return env
}

// tail keeps the last 2 KiB written to it: a hook's output, for the error.
type tail struct{ b []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 2048 {
		t.b = t.b[len(t.b)-2048:]
	}
	return len(p), nil
}

func (t *tail) String() string { return string(t.b) }
