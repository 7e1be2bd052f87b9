package fence

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// script writes an executable shell script standing for a fence agent.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fence_test")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStdinProtocol(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	got := filepath.Join(dir, "stdin")
	// The script records its stdin and its command line.
	a := &Agent{
		Path:        script(t, `cat > `+got+`; echo "$@" > `+got+`.args`),
		Params:      map[string]string{"ipaddr": "10.0.0.9", "login": "admin", "lanplus": "1"},
		SecretFiles: map[string]string{"passwd": pw},
	}
	if _, err := a.Run(context.Background(), Off, "node2"); err != nil {
		t.Fatal(err)
	}
	in, _ := os.ReadFile(got)
	want := "action=off\nipaddr=10.0.0.9\nlanplus=1\nlogin=admin\nplug=node2\npasswd=s3cret\n"
	if string(in) != want {
		t.Fatalf("stdin\n%q, want\n%q", in, want)
	}
	args, _ := os.ReadFile(got + ".args")
	if strings.TrimSpace(string(args)) != "" {
		t.Fatalf("agent got arguments %q; everything goes on stdin", args)
	}
}

func TestStdinRefusesInjection(t *testing.T) {
	for name, a := range map[string]*Agent{
		"newline in value": {Path: "/bin/true", Params: map[string]string{"login": "x\naction=on"}},
		"action in params": {Path: "/bin/true", Params: map[string]string{"action": "on"}},
		"plug in params":   {Path: "/bin/true", Params: map[string]string{"plug": "n"}},
		"missing secret":   {Path: "/bin/true", SecretFiles: map[string]string{"passwd": "/nonexistent/pw"}},
	} {
		if _, err := a.Run(context.Background(), Off, ""); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestSecretNeverInErrors(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("hunter2"), 0o600)
	a := &Agent{
		Path:        script(t, `while read l; do echo "got $l" >&2; done; exit 1`),
		SecretFiles: map[string]string{"passwd": pw},
	}
	_, err := a.Run(context.Background(), Off, "")
	if !errors.Is(err, ErrAgentFail) {
		t.Fatalf("err %v, want ErrAgentFail", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("secret in error: %v", err)
	}
	if !strings.Contains(err.Error(), "passwd=[redacted]") {
		t.Fatalf("stderr tail missing: %v", err)
	}
}

func TestHangingAgentKilledWithGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child")
	// The agent's child sleeps too; both must die.
	a := &Agent{
		Path:    script(t, `sleep 300 & echo $! > `+pidFile+`; wait`),
		Timeout: 300 * time.Millisecond,
	}
	_, err := a.Run(context.Background(), Off, "")
	if !IsTimeout(err) {
		t.Fatalf("err %v, want a timeout", err)
	}
	raw, rerr := os.ReadFile(pidFile)
	if rerr != nil {
		t.Fatal(rerr)
	}
	pid := strings.TrimSpace(string(raw))
	// The child is gone (or a zombie reaped by init): kill -0 fails.
	deadline := time.Now().Add(10 * time.Second)
	for exec.Command("kill", "-0", pid).Run() == nil {
		if state, _ := os.ReadFile("/proc/" + pid + "/stat"); strings.Contains(string(state), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %s of the hung agent still alive", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBadOutput(t *testing.T) {
	cases := map[string]struct {
		body   string
		action Action
		want   error
	}{
		"huge":            {`head -c 2000000 /dev/zero | tr '\0' a; exit 0`, Off, ErrOutput},
		"binary":          {`printf 'Status: \000\377\n'; exit 2`, Status, ErrOutput},
		"status disagree": {`echo "Status: ON"; exit 2`, Status, ErrOutput},
		"status code 1":   {`echo "Status: OFF"; exit 1`, Status, ErrAgentFail},
		"non-zero":        {`echo failed to connect >&2; exit 1`, Off, ErrAgentFail},
		"list garbage":    {`echo "this is not a plug list"; exit 0`, List, ErrOutput},
		"metadata junk":   {`echo hello; exit 0`, Metadata, ErrOutput},
	}
	for name, c := range cases {
		a := &Agent{Path: script(t, `cat >/dev/null; `+c.body)}
		_, err := a.Run(context.Background(), c.action, "")
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", name, err, c.want)
		}
	}
}

func fenceDummy(t *testing.T) string {
	p, err := exec.LookPath("fence_dummy")
	if err != nil {
		p = "/usr/sbin/fence_dummy"
		if _, err := os.Stat(p); err != nil {
			t.Skip("fence_dummy not installed (Debian package fence-agents)")
		}
	}
	return p
}

// TestFenceDummy drives Debian's real fence_dummy through every action.
func TestFenceDummy(t *testing.T) {
	st := filepath.Join(t.TempDir(), "status")
	os.WriteFile(st, []byte("on"), 0o644)
	a := &Agent{Path: fenceDummy(t), Params: map[string]string{"status_file": st}, Timeout: 20 * time.Second}
	ctx := context.Background()
	if r, err := a.Run(ctx, Status, ""); err != nil || r.Power != PowerOn {
		t.Fatalf("status: %+v %v", r, err)
	}
	if _, err := a.Run(ctx, Monitor, ""); err != nil {
		t.Fatalf("monitor: %v", err)
	}
	if _, err := a.Run(ctx, Off, ""); err != nil {
		t.Fatalf("off: %v", err)
	}
	if r, err := a.Run(ctx, Status, ""); err != nil || r.Power != PowerOff {
		t.Fatalf("status after off: %+v %v", r, err)
	}
	if _, err := a.Run(ctx, On, ""); err != nil {
		t.Fatalf("on: %v", err)
	}
	if _, err := a.Run(ctx, Reboot, ""); err != nil {
		t.Fatalf("reboot: %v", err)
	}
	r, err := a.Run(ctx, Metadata, "")
	if err != nil || !strings.Contains(r.Output, `name="fence_dummy"`) {
		t.Fatalf("metadata: %v", err)
	}
	// list is not supported by fence_dummy: a failed attempt with its words.
	if _, err := a.Run(ctx, List, ""); !errors.Is(err, ErrAgentFail) || !strings.Contains(err.Error(), "list") {
		t.Fatalf("list: %v", err)
	}
	// type=fail: a device whose off never sees the power go off and gives up after its power_timeout.
	bad := &Agent{Path: a.Path, Params: map[string]string{"type": "fail", "power_timeout": "1"}, Timeout: 20 * time.Second}
	if _, err := bad.Run(ctx, Off, ""); !errors.Is(err, ErrAgentFail) {
		t.Fatalf("type=fail off: %v", err)
	}
	// A real agent that hangs (its delay before fencing) is killed.
	slow := &Agent{Path: a.Path, Params: map[string]string{"status_file": st, "delay": "60"}, Timeout: 500 * time.Millisecond}
	if _, err := slow.Run(ctx, Off, ""); !IsTimeout(err) {
		t.Fatalf("delayed off: %v", err)
	}
}

// The Python warnings every fence agent prints are not the agent's words.
func TestTailDropsPythonWarnings(t *testing.T) {
	tail := "/usr/sbin/fence_ipmilan:5: DeprecationWarning: 'pipes' is deprecated and slated for removal in Python 3.13\n" +
		"  from pipes import quote\n" +
		"2026-12-03 17:24:46,723 ERROR: Failed: Unable to obtain correct plug status or plug is not available\n"
	if got, want := tailSuffix(tail), ": 2026-12-03 17:24:46,723 ERROR: Failed: Unable to obtain correct plug status or plug is not available"; got != want {
		t.Fatalf("got %q want %q", got, want)
	}
	if got := tailSuffix("x.py:1: UserWarning: w\n"); got != "" {
		t.Fatalf("only a warning: %q", got)
	}
}
