package proc

import (
	"context"
	"errors"
	"io"
	"os/exec"
	"syscall"
	"time"
)

// PipeGrace is how long Run waits, after the child exits, for whatever
// else holds its output pipes (a daemon it left behind) before closing
// them: long enough to drain the last lines, short enough not to delay the
// operation.
const PipeGrace = 250 * time.Millisecond

// Cmd is a short-lived child: an OCF action or a health-check command.
type Cmd struct {
	Argv           []string
	Env            []string // complete environment; see Env
	Dir            string
	Stdout, Stderr io.Writer
	// KillGroupOnExit kills what the leader left in its process group once
	// it exits. Health checks set it (nothing may outlive a probe); OCF
	// actions do not, because an agent's daemon may stay in the group.
	KillGroupOnExit bool
}

// Result is how a child ended.
type Result struct {
	Code     int    // exit status, or -1 when killed by a signal
	Signal   string // the signal that killed it, if any
	TimedOut bool   // ctx ended first and the group was killed
}

// Run runs c until it exits or ctx ends; at the end of ctx the whole
// process group is SIGKILLed and reaped. The error is for a child that
// could not be started at all (see LookPath for the classes it wraps).
func Run(ctx context.Context, c Cmd) (Result, error) {
	if len(c.Argv) == 0 {
		return Result{}, errors.New("empty command")
	}
	path, err := LookPath(c.Argv[0], c.Env)
	if err != nil {
		return Result{}, err
	}
	cmd := exec.CommandContext(ctx, path, c.Argv[1:]...)
	cmd.Args[0] = c.Argv[0]
	cmd.Env = c.Env
	cmd.Dir = c.Dir
	cmd.Stdout, cmd.Stderr = c.Stdout, c.Stderr
	cmd.WaitDelay = PipeGrace
	Prepare(cmd)
	if err := cmd.Start(); err != nil {
		return Result{}, err
	}
	waitErr := cmd.Wait()
	if c.KillGroupOnExit {
		_ = Signal(cmd.Process.Pid, syscall.SIGKILL)
	}
	st := cmd.ProcessState
	if st == nil { // Wait failed before reaping; should not happen
		return Result{Code: -1}, waitErr
	}
	res := Result{Code: st.ExitCode()}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.Signal = ws.Signal().String()
	}
	// Killed because ctx ended: a child that exited on its own just before
	// the deadline keeps its real status.
	res.TimedOut = ctx.Err() != nil && res.Code == -1
	return res, nil
}
