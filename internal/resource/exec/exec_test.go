package exec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/internal/config"
	"tandem/internal/resource"
	"tandem/internal/resource/exec/proc"
	"tandem/internal/resource/exec/proc/proctest"
)

var server string // path of the test HTTP server binary

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tandem-exec-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	server, err = proctest.BuildServer(dir)
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func newAgent(t *testing.T, spec config.Exec, opts ...Option) *Agent {
	t.Helper()
	a, err := New("web", spec, proctest.Logger(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Stop(context.Background()) })
	return a
}

func get(url string) error {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

func TestServiceLifecycleWithEachCheck(t *testing.T) {
	for _, kind := range []string{"tcp", "http", "command"} {
		t.Run(kind, func(t *testing.T) {
			addr, err := proctest.FreeAddr()
			if err != nil {
				t.Fatal(err)
			}
			pidFile := filepath.Join(t.TempDir(), "pid")
			chk := map[string]*config.Check{
				"tcp":  {TCP: addr},
				"http": {HTTP: "http://" + addr + "/"},
				// The server writes its pid file before it listens; the
				// command also proves the service env reaches the check.
				"command": {Command: []string{"sh", "-c", `test "$WHO" = web && test -s ` + pidFile + ` && test -d /proc/$(cat ` + pidFile + `)`}},
			}[kind]
			a := newAgent(t, config.Exec{
				Command: []string{server, "-addr", addr, "-pidfile", pidFile, "-ready-after", "300ms"},
				Env:     map[string]string{"WHO": "web"},
				Check:   chk,
			})
			if err := a.Monitor(proctest.Ctx(t, time.Second)); !resource.IsNotRunning(err) {
				t.Fatalf("Monitor before start = %v, want not running", err)
			}
			if err := a.Start(proctest.Ctx(t, 5*time.Second)); err != nil {
				t.Fatal(err)
			}
			if kind != "command" { // the command check passes before the listener is up
				if err := get("http://" + addr + "/"); err != nil {
					t.Fatalf("service not serving after Start: %v", err)
				}
			}
			pid := a.PID()
			if err := a.Start(proctest.Ctx(t, 5*time.Second)); err != nil || a.PID() != pid {
				t.Fatalf("second Start = %v, pid %d → %d; want a no-op", err, pid, a.PID())
			}
			if err := a.Monitor(proctest.Ctx(t, time.Second)); err != nil {
				t.Fatalf("Monitor = %v", err)
			}
			if err := a.Stop(proctest.Ctx(t, 5*time.Second)); err != nil {
				t.Fatal(err)
			}
			if err := a.Monitor(proctest.Ctx(t, time.Second)); !resource.IsNotRunning(err) {
				t.Fatalf("Monitor after stop = %v, want not running", err)
			}
			if err := get("http://" + addr + "/"); err == nil {
				t.Fatal("service still answers after Stop")
			}
			proctest.WaitGroupGone(t, pid)
			if err := a.Stop(proctest.Ctx(t, time.Second)); err != nil {
				t.Fatalf("second Stop = %v", err)
			}
		})
	}
}

func TestKill9IsNoticedAtOnce(t *testing.T) {
	addr, _ := proctest.FreeAddr()
	a := newAgent(t, config.Exec{Command: []string{server, "-addr", addr}, Check: &config.Check{TCP: addr}})
	if err := a.Start(proctest.Ctx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	pid := a.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case ex := <-a.Exited():
		if ex.PID != pid || ex.Code != -1 || ex.Status != "signal: killed" {
			t.Errorf("exit notice = %+v", ex)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no exit notice within 2s of kill -9")
	}
	err := a.Monitor(proctest.Ctx(t, time.Second))
	if err == nil || resource.IsNotRunning(err) || resource.SeverityOf(err) != resource.Soft ||
		!strings.Contains(err.Error(), "exited unexpectedly: signal: killed") {
		t.Fatalf("Monitor after kill -9 = %v, want a soft failure", err)
	}
	// Restart in place.
	if err := a.Start(proctest.Ctx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if a.PID() == pid || a.Monitor(proctest.Ctx(t, time.Second)) != nil {
		t.Fatal("restart did not bring up a new healthy process")
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	addr, _ := proctest.FreeAddr()
	pidFile := filepath.Join(t.TempDir(), "pid")
	a := newAgent(t, config.Exec{
		Command:    []string{server, "-addr", addr, "-pidfile", pidFile, "-ignore-term", "-child"},
		StopSignal: "TERM",
		Check:      &config.Check{TCP: addr},
	})
	if err := a.Start(proctest.Ctx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	child := proctest.ReadPID(t, pidFile+".child")
	pid := a.PID()
	start := time.Now()
	if err := a.Stop(proctest.Ctx(t, 400*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 350*time.Millisecond || d > 3*time.Second {
		t.Errorf("Stop took %v; want the TERM grace then a prompt kill", d)
	}
	proctest.WaitGroupGone(t, pid)
	if err := syscall.Kill(child, 0); !errors.Is(err, syscall.ESRCH) {
		// The child may linger as a zombie of init; Members already proved it is not live.
		t.Logf("child %d: kill -0 = %v", child, err)
	}
	select {
	case ex := <-a.Exited():
		t.Errorf("a requested stop was announced as an unexpected exit: %+v", ex)
	default:
	}
}

func TestStopSignalIsConfigurable(t *testing.T) {
	dir := t.TempDir()
	out, ready := filepath.Join(dir, "got"), filepath.Join(dir, "ready")
	// The check passes only once the trap is in place: a stop signal sent
	// before (a settle time on a loaded machine) would kill the shell.
	a := newAgent(t, config.Exec{
		Command:    []string{"sh", "-c", `trap 'echo INT > ` + out + `; exit 0' INT; touch ` + ready + `; while :; do sleep 0.05; done`},
		StopSignal: "SIGINT",
		Check:      &config.Check{Command: []string{"test", "-f", ready}},
	})
	if err := a.Start(proctest.Ctx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(proctest.Ctx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); strings.TrimSpace(string(b)) != "INT" {
		t.Errorf("process saw %q, want INT", b)
	}
}

func TestStartFailures(t *testing.T) {
	t.Run("exits at once", func(t *testing.T) {
		a := newAgent(t, config.Exec{Command: []string{"sh", "-c", "echo bad flag >&2; exit 3"}})
		err := a.Start(proctest.Ctx(t, 5*time.Second))
		if resource.SeverityOf(err) != resource.Soft || err == nil || !strings.Contains(err.Error(), "exit status 3: bad flag") {
			t.Fatalf("Start = %v, want soft failure with exit status 3 and the stderr line", err)
		}
		if err := a.Monitor(proctest.Ctx(t, time.Second)); !resource.IsNotRunning(err) {
			t.Errorf("Monitor after failed start = %v", err)
		}
	})
	t.Run("daemonizes", func(t *testing.T) {
		addr, _ := proctest.FreeAddr()
		pidFile := filepath.Join(t.TempDir(), "pid")
		a := newAgent(t, config.Exec{Command: []string{server, "-daemon", "-addr", addr, "-pidfile", pidFile}})
		err := a.Start(proctest.Ctx(t, 5*time.Second))
		if err == nil || !strings.Contains(err.Error(), "exit status 0 (exec supervises a foreground process") {
			t.Fatalf("Start = %v, want a hint not to daemonize", err)
		}
		// The detached daemon escaped our group, as daemons do; clean it up.
		deadline := time.Now().Add(2 * time.Second)
		for {
			if b, err := os.ReadFile(pidFile); err == nil && len(b) > 0 {
				pid := proctest.ReadPID(t, pidFile)
				syscall.Kill(pid, syscall.SIGKILL)
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("detached test daemon never wrote its pid file")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("not installed", func(t *testing.T) {
		a := newAgent(t, config.Exec{Command: []string{"/nonexistent/daemon"}})
		if err := a.Start(proctest.Ctx(t, 5*time.Second)); resource.SeverityOf(err) != resource.Hard {
			t.Fatalf("Start = %v, want hard failure", err)
		}
	})
	t.Run("never healthy", func(t *testing.T) {
		addr, _ := proctest.FreeAddr()
		other, _ := proctest.FreeAddr()
		pidFile := filepath.Join(t.TempDir(), "pid")
		a := newAgent(t, config.Exec{
			Command: []string{server, "-addr", addr, "-pidfile", pidFile},
			Check:   &config.Check{HTTP: "http://" + other + "/"},
		})
		err := a.Start(proctest.Ctx(t, 500*time.Millisecond))
		if err == nil || resource.SeverityOf(err) != resource.Soft || !strings.Contains(err.Error(), "check did not pass") ||
			!errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Start = %v, want soft failure: check did not pass", err)
		}
		proctest.WaitGroupGone(t, proctest.ReadPID(t, pidFile))
		if err := a.Monitor(proctest.Ctx(t, time.Second)); !resource.IsNotRunning(err) {
			t.Errorf("Monitor after failed start = %v", err)
		}
	})
}

func TestMonitorReportsFailingCheck(t *testing.T) {
	sick := filepath.Join(t.TempDir(), "sick")
	a := newAgent(t, config.Exec{
		Command: []string{"sleep", "30"},
		Check:   &config.Check{Command: []string{"sh", "-c", "echo feeling sick; test ! -e " + sick}},
	})
	if err := a.Start(proctest.Ctx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(sick, nil, 0o644)
	err := a.Monitor(proctest.Ctx(t, time.Second))
	if err == nil || resource.SeverityOf(err) != resource.Soft || resource.IsNotRunning(err) ||
		!strings.Contains(err.Error(), `exit status 1: "feeling sick"`) {
		t.Fatalf("Monitor = %v, want soft failure quoting the check", err)
	}
}

// A probe asks whether the service runs, not how it is: a check that
// cannot answer (it goes through the VIP the guard silences while a
// restarted agent holds no lease) does not hold the probe for the
// monitor timeout; the next monitor runs it.
func TestProbeDoesNotRunTheCheck(t *testing.T) {
	a := newAgent(t, config.Exec{
		Command: []string{"sleep", "30"},
		Check:   &config.Check{Command: []string{"true"}},
	})
	if err := a.Start(proctest.Ctx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	a.probe = func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() } // the VIP is silent
	if err := a.Monitor(resource.WithProbe(proctest.Ctx(t, 5*time.Second))); err != nil {
		t.Fatalf("probe of a running service whose check cannot answer: %v", err)
	}
	if err := a.Monitor(proctest.Ctx(t, 200*time.Millisecond)); err == nil || resource.IsNotRunning(err) {
		t.Fatalf("monitor with a check that cannot answer: %v", err)
	}
}

func TestEnvironmentIsCleanAndMerged(t *testing.T) {
	t.Setenv("TANDEM_LEAK", "secret")
	out := filepath.Join(t.TempDir(), "env")
	dir := t.TempDir()
	// The file appears whole (a rename) and the check waits for it: the
	// shell may take its time on a loaded machine.
	a := newAgent(t, config.Exec{
		Command: []string{"sh", "-c", `{ env; pwd; } > ` + out + `.tmp; mv ` + out + `.tmp ` + out + `; exec sleep 30`},
		Env:     map[string]string{"FOO": "bar baz"},
		Dir:     dir,
		Check:   &config.Check{Command: []string{"test", "-f", out}},
	})
	if err := a.Start(proctest.Ctx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	got := string(b)
	for _, want := range []string{"FOO=bar baz\n", "PATH=" + proc.DefaultPath + "\n", dir + "\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("child env/cwd lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "TANDEM_LEAK") {
		t.Error("the agent's environment leaked into the child")
	}
}

func TestGarbageOutputIsBounded(t *testing.T) {
	addr, _ := proctest.FreeAddr()
	h := &proctest.CountingHandler{}
	a, err := New("spew", config.Exec{
		Command: []string{server, "-addr", addr, "-spew", "8000000"},
		Check:   &config.Check{TCP: addr},
	}, slog.New(h))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop(context.Background())
	if err := a.Start(proctest.Ctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(proctest.Ctx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	// 8 MB of random bytes hold ~31000 newlines; the rate limit lets the
	// burst through and folds the rest into a count.
	if r, b := h.Records.Load(), h.Bytes.Load(); r > 2*logBurstForTest || b > 2<<20 {
		t.Errorf("logged %d records, %d bytes for 8 MB of garbage; want bounded", r, b)
	} else {
		t.Logf("8 MB of garbage → %d log records, %d bytes", r, b)
	}
}

const logBurstForTest = 200

// Seen item 5: a check slower than a second made start fail whatever
// monitor_timeout said; the start probe now takes the check timeout the
// manager gives (the resource's monitor_timeout).
func TestStartCheckTakesTheCheckTimeout(t *testing.T) {
	a := newAgent(t, config.Exec{Command: []string{"sleep", "30"},
		Check: &config.Check{Command: []string{"sh", "-c", "sleep 1.5"}}}, WithCheckTimeout(5*time.Second))
	ctx := proctest.Ctx(t, 10*time.Second)
	if err := a.Start(ctx); err != nil {
		t.Fatalf("a 1.5 s check with a 5 s check timeout failed the start: %v", err)
	}
	b := newAgent(t, config.Exec{Command: []string{"sleep", "30"},
		Check: &config.Check{Command: []string{"sh", "-c", "sleep 1.5"}}}, WithCheckTimeout(300*time.Millisecond))
	if err := b.Start(proctest.Ctx(t, 2*time.Second)); err == nil {
		t.Fatal("a 1.5 s check with a 300 ms check timeout passed")
	}
}

// startAndCrash starts a process with an agent that records it in
// pidFile, then forgets that agent (as if it had crashed); the process
// runs on.
func startAndCrash(t *testing.T, ctx context.Context, pidFile string) (int, config.Exec) {
	t.Helper()
	spec := config.Exec{Command: []string{"sleep", "30"}}
	first, err := New("web", spec, proctest.Logger(t), WithPIDFile(pidFile), WithSettle(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid := first.PID()
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
	return pid, spec
}

// Seen item 9: an agent restarted after a crash finds the process its
// predecessor started (pid file with the start time), reports it running,
// keeps it on Start and stops it on Stop.
func TestRestartedAgentFindsItsProcess(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "run", "web.pid")
	ctx := proctest.Ctx(t, 5*time.Second)
	pid, spec := startAndCrash(t, ctx, pidFile)
	second := newAgent(t, spec, WithPIDFile(pidFile))
	if err := second.Monitor(ctx); err != nil {
		t.Fatalf("the restarted agent does not see its process: %v", err)
	}
	if second.PID() != pid {
		t.Fatalf("adopted pid %d, started %d", second.PID(), pid)
	}
	if err := second.Start(ctx); err != nil || second.PID() != pid {
		t.Fatalf("start of an adopted process must keep it: %v (pid %d)", err, second.PID())
	}
	if err := second.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if startTime(pid) != 0 {
		t.Fatal("the adopted process still runs after Stop")
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Fatalf("pid file left after stop: %v", err)
	}
	// A pid file naming a process that is gone: not running, file removed.
	if err := os.WriteFile(pidFile, []byte(fmt.Sprintf("%d %d\n", pid, 12345)), 0o640); err != nil {
		t.Fatal(err)
	}
	third := newAgent(t, spec, WithPIDFile(pidFile))
	if err := third.Monitor(ctx); !resource.IsNotRunning(err) {
		t.Fatalf("stale pid file: %v", err)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Fatal("stale pid file kept")
	}
}

// An adopted process that dies is announced like a child that dies.
func TestAdoptedProcessDeathIsAnnounced(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "web.pid")
	ctx := proctest.Ctx(t, 5*time.Second)
	pid, spec := startAndCrash(t, ctx, pidFile)
	second := newAgent(t, spec, WithPIDFile(pidFile))
	if err := second.Monitor(ctx); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-second.Watch():
	case <-ctx.Done():
		t.Fatal("death of the adopted process not announced")
	}
	if err := second.Monitor(ctx); err == nil || resource.IsNotRunning(err) {
		t.Fatalf("monitor after the adopted process died: %v", err)
	}
}
