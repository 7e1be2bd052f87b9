package proc_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	. "tandem/internal/resource/exec/proc"
	"tandem/internal/resource/exec/proc/proctest"
)

func TestRunKillsGroupAtDeadline(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pgid")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	// The shell ignores nothing, but its background child is a separate
	// process that would survive a kill of the leader alone.
	res, err := Run(ctx, Cmd{Argv: []string{"sh", "-c", "echo $$ > " + pidFile + "; sleep 30 & sleep 30"}, Env: Env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimedOut || res.Signal != "killed" {
		t.Fatalf("Run = %+v, want timed out and killed", res)
	}
	proctest.WaitGroupGone(t, proctest.ReadPID(t, pidFile))
}

func TestRunReportsExitStatusAndMissingCommand(t *testing.T) {
	res, err := Run(context.Background(), Cmd{Argv: []string{"sh", "-c", "exit 3"}, Env: Env(nil)})
	if err != nil || res.Code != 3 || res.TimedOut {
		t.Errorf("Run = %+v, %v; want code 3", res, err)
	}
	if _, err := Run(context.Background(), Cmd{Argv: []string{"no-such-tool"}, Env: Env(nil)}); err == nil {
		t.Error("missing command did not fail")
	}
}
