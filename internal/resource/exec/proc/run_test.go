package proc_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	. "tandem/internal/resource/exec/proc"
	"tandem/internal/resource/exec/proc/proctest"
)

// TestRunKillsGroupAtDeadline: when ctx ends, the whole group dies — the
// shell and the background child it started, which would survive a kill of
// the leader alone. The deadline is set once both run: a fixed 300 ms from
// before the start was sometimes shorter than a loaded machine takes to
// start a shell, which then died before writing its pid.
func TestRunKillsGroupAtDeadline(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pgid")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		res Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := Run(ctx, Cmd{Argv: []string{"sh", "-c",
			"sleep 30 & echo $$ > " + pidFile + ".new && mv " + pidFile + ".new " + pidFile + "; sleep 30"}, Env: Env(nil)})
		done <- result{res, err}
	}()
	ready := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(pidFile); err == nil {
			break
		}
		select {
		case r := <-done:
			t.Fatalf("Run ended before the group was up: %+v %v", r.res, r.err)
		case <-time.After(5 * time.Millisecond): // polling the child's file, not timing anything
		}
		if time.Now().After(ready) {
			t.Fatal("the shell never wrote its pid")
		}
	}
	pgid := proctest.ReadPID(t, pidFile)
	cancel() // the deadline
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !r.res.TimedOut || r.res.Signal != "killed" {
		t.Fatalf("Run = %+v, want timed out and killed", r.res)
	}
	proctest.WaitGroupGone(t, pgid)
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

// TestLinesFromAChild is the splitter on real process output (FuzzSplitLines
// covers the logic in-process): lines written in pieces by a child, an
// over-long one, a CRLF line, a terminal escape and an unterminated tail.
func TestLinesFromAChild(t *testing.T) {
	var got []string
	var truncated []bool
	l := NewLines(func(s string, tr bool) { got, truncated = append(got, s), append(truncated, tr) })
	script := `printf 'one\ntw'; printf 'o\r\n'; head -c 5000 /dev/zero | tr '\0' x; printf '\nesc\033[31m\ntail'`
	res, err := Run(context.Background(), Cmd{Argv: []string{"sh", "-c", script}, Env: Env(nil), Stdout: l})
	if err != nil || res.Code != 0 {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	l.Close()
	want := []string{"one", "two", strings.Repeat("x", MaxLine), "esc\uFFFD[31m", "tail"}
	if !slices.Equal(got, want) || !slices.Equal(truncated, []bool{false, false, true, false, false}) {
		t.Errorf("lines %q truncated %v, want %q with the third truncated", got, truncated, want)
	}
}
