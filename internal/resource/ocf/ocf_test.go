package ocf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/config"
	"tandem/internal/resource"
	"tandem/internal/resource/exec/proc/proctest"
)

func newAgent(t *testing.T, instance string, spec config.OCF, opts ...Option) *Agent {
	t.Helper()
	a, err := New(instance, spec, proctest.Logger(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// opCtx is one operation's deadline, as the manager gives each its own: a
// deadline shared by a whole test ran out on a loaded machine.
func opCtx(t *testing.T) context.Context { return proctest.Ctx(t, 20*time.Second) }

func requireAgent(t *testing.T, name string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(DefaultRoot, "resource.d", name)); err != nil {
		t.Skipf("OCF agent %s not installed (Debian package resource-agents): %v", name, err)
	}
}

// fakeRoot writes shell scripts as agents of provider "tandemtest" under a
// new OCF root and returns the root.
func fakeRoot(t *testing.T, agents map[string]string) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "resource.d", "tandemtest")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range agents {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func wantNotRunning(t *testing.T, what string, err error) {
	t.Helper()
	if !resource.IsNotRunning(err) {
		t.Fatalf("%s = %v, want not running", what, err)
	}
}

func wantFailure(t *testing.T, what string, err error, sev resource.Severity, text string) {
	t.Helper()
	if err == nil || resource.IsNotRunning(err) || resource.SeverityOf(err) != sev || !strings.Contains(err.Error(), text) {
		t.Fatalf("%s = %v, want a %s failure containing %q", what, err, sev, text)
	}
}

func TestDummyLifecycle(t *testing.T) {
	requireAgent(t, "heartbeat/Dummy")
	state := filepath.Join(t.TempDir(), "dummy.state")
	a := newAgent(t, "dummy1", config.OCF{Agent: "heartbeat/Dummy", Params: map[string]string{"state": state}},
		WithMonitorInterval(10*time.Second))
	wantNotRunning(t, "Monitor before start", a.Monitor(opCtx(t)))
	if err := a.Validate(opCtx(t)); err != nil {
		t.Fatalf("Validate = %v", err)
	}
	for i := range 2 {
		if err := a.Start(opCtx(t)); err != nil {
			t.Fatalf("Start #%d = %v", i+1, err)
		}
	}
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("Dummy did not create its state file: %v", err)
	}
	if err := a.Monitor(opCtx(t)); err != nil {
		t.Fatalf("Monitor = %v", err)
	}
	for i := range 2 {
		if err := a.Stop(opCtx(t)); err != nil {
			t.Fatalf("Stop #%d = %v", i+1, err)
		}
	}
	wantNotRunning(t, "Monitor after stop", a.Monitor(opCtx(t)))
}

func TestDummyInvalidStateDirIsHard(t *testing.T) {
	requireAgent(t, "heartbeat/Dummy")
	a := newAgent(t, "dummy2", config.OCF{Agent: "heartbeat/Dummy", Params: map[string]string{"state": "/nonexistent/dir/state"}})
	// Dummy's validate-all exits OCF_ERR_ARGS for a state directory it
	// cannot write.
	wantFailure(t, "Validate", a.Validate(proctest.Ctx(t, 10*time.Second)), resource.Hard, "OCF_ERR_ARGS (2)")
}

func TestMetaDataOfRealAgents(t *testing.T) {
	requireAgent(t, "heartbeat/Dummy")
	requireAgent(t, "heartbeat/anything")
	b, err := newAgent(t, "d", config.OCF{Agent: "heartbeat/Dummy"}).MetaData(opCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMetaData(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "Dummy" || len(m.Required()) != 0 || len(m.Unknown(map[string]string{"state": "x", "fake": "y"})) != 0 {
		t.Errorf("Dummy meta-data: %+v", m)
	}
	b, err = newAgent(t, "a", config.OCF{Agent: "heartbeat/anything"}).MetaData(opCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if m, err = ParseMetaData(b); err != nil {
		t.Fatal(err)
	}
	if got := m.Missing(map[string]string{"pidfile": "/run/x.pid"}); len(got) != 1 || got[0] != "binfile" {
		t.Errorf("anything: Missing = %q, want [binfile]", got)
	}
	missing, unknown, err := newAgent(t, "a", config.OCF{Agent: "heartbeat/anything",
		Params: map[string]string{"pidfile": "/run/x.pid", "cmdline_option": "-v"}}).CheckParams(opCtx(t))
	if err != nil || len(missing) != 1 || missing[0] != "binfile" || len(unknown) != 1 || unknown[0] != "cmdline_option" {
		t.Errorf("CheckParams = %q, %q, %v; want [binfile], [cmdline_option]", missing, unknown, err)
	}
}

func TestExitCodesOfARealProcess(t *testing.T) {
	root := fakeRoot(t, map[string]string{"code": `exit "$OCF_RESKEY_rc"`})
	for _, tc := range []struct {
		rc      int
		action  string
		want    string // "", "not running", or a severity
		message string
	}{
		{0, "start", "", ""},
		{7, "monitor", "not running", ""},
		{7, "stop", "", ""},
		{1, "monitor", "soft", "OCF_ERR_GENERIC (1)"},
		{5, "start", "hard", "OCF_ERR_INSTALLED (5)"},
		{6, "start", "fatal", "OCF_ERR_CONFIGURED (6)"},
		{8, "monitor", "", ""},
		{9, "monitor", "soft", "OCF_FAILED_PROMOTED (9)"},
		{190, "monitor", "", ""},
		{99, "stop", "soft", "exit status 99"},
	} {
		a := newAgent(t, "codes", config.OCF{Agent: "tandemtest/code", Root: root, Params: map[string]string{"rc": fmt.Sprint(tc.rc)}})
		err := map[string]func(context.Context) error{"start": a.Start, "stop": a.Stop, "monitor": a.Monitor}[tc.action](opCtx(t))
		switch tc.want {
		case "":
			if err != nil {
				t.Errorf("%s exit %d = %v, want success", tc.action, tc.rc, err)
			}
		case "not running":
			wantNotRunning(t, tc.action, err)
		default:
			if err == nil || resource.SeverityOf(err).String() != tc.want || !strings.Contains(err.Error(), tc.message) {
				t.Errorf("%s exit %d = %v, want %s failure with %q", tc.action, tc.rc, err, tc.want, tc.message)
			}
		}
	}
}

func TestExitReasonAndSeverity(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"unconfigured": `echo "ocf-exit-reason:config file /etc/x.conf missing" >&2; exit 6`,
		"notinstalled": `echo "INFO: looking for the binary" >&2; echo "ERROR: /usr/sbin/xd not found" >&2; echo >&2; exit 5`,
		"novalidate":   `exit 3`,
	})
	ctx := proctest.Ctx(t, 10*time.Second)
	a := newAgent(t, "x", config.OCF{Agent: "tandemtest/unconfigured", Root: root})
	wantFailure(t, "start exit 6", a.Start(ctx), resource.Fatal, "OCF_ERR_CONFIGURED (6): config file /etc/x.conf missing")
	a = newAgent(t, "x", config.OCF{Agent: "tandemtest/notinstalled", Root: root})
	wantFailure(t, "start exit 5", a.Start(ctx), resource.Hard, "OCF_ERR_INSTALLED (5): ERROR: /usr/sbin/xd not found")
	a = newAgent(t, "x", config.OCF{Agent: "tandemtest/novalidate", Root: root})
	if err := a.Validate(ctx); !errors.Is(err, ErrUnimplemented) {
		t.Errorf("Validate of an agent without validate-all = %v", err)
	}
}

func TestMissingOrUnrunnableAgentIsHard(t *testing.T) {
	root := fakeRoot(t, map[string]string{"noexec": "exit 0"})
	os.Chmod(filepath.Join(root, "resource.d", "tandemtest", "noexec"), 0o644)
	ctx := proctest.Ctx(t, 10*time.Second)
	wantFailure(t, "missing agent", newAgent(t, "x", config.OCF{Agent: "tandemtest/nope", Root: root}).Start(ctx),
		resource.Hard, "not installed")
	wantFailure(t, "non-executable agent", newAgent(t, "x", config.OCF{Agent: "tandemtest/noexec", Root: root}).Monitor(ctx),
		resource.Hard, "OCF_ERR_PERM (4)")
}

func TestEnvironment(t *testing.T) {
	out := filepath.Join(t.TempDir(), "env")
	root := fakeRoot(t, map[string]string{"env": `env > "$OCF_RESKEY_out.$1"; exit 0`})
	t.Setenv("TANDEM_LEAK", "secret")
	a := newAgent(t, "web-1", config.OCF{Agent: "tandemtest/env", Root: root,
		Params: map[string]string{"out": out, "config": "/etc/web.conf"}}, WithMonitorInterval(10*time.Second))
	if err := a.Monitor(proctest.Ctx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(proctest.Ctx(t, 3*time.Second)); err != nil {
		t.Fatal(err)
	}
	read := func(action string) map[string]string {
		b, err := os.ReadFile(out + "." + action)
		if err != nil {
			t.Fatal(err)
		}
		env := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			k, v, _ := strings.Cut(l, "=")
			env[k] = v
		}
		return env
	}
	mon, start := read("monitor"), read("start")
	for k, want := range map[string]string{
		"OCF_ROOT": root, "OCF_FUNCTIONS_DIR": root + "/lib/heartbeat",
		"OCF_RESOURCE_INSTANCE": "web-1", "OCF_RESOURCE_TYPE": "env", "OCF_RESOURCE_PROVIDER": "tandemtest",
		"OCF_RA_VERSION_MAJOR": "1", "OCF_RA_VERSION_MINOR": "1", "OCF_CHECK_LEVEL": "0",
		"OCF_RESKEY_config": "/etc/web.conf", "OCF_RESKEY_CRM_meta_interval": "10000",
		"HA_LOGFACILITY": "none", "HA_LOGFILE": "",
	} {
		if got, ok := mon[k]; !ok || got != want {
			t.Errorf("monitor env %s = %q (set %v), want %q", k, got, ok, want)
		}
	}
	if got := start["OCF_RESKEY_CRM_meta_interval"]; got != "0" {
		t.Errorf("start: interval = %q, want 0", got)
	}
	var ms int
	fmt.Sscan(start["OCF_RESKEY_CRM_meta_timeout"], &ms)
	if ms < 2500 || ms > 3000 {
		t.Errorf("start: meta_timeout = %q, want just under 3000", start["OCF_RESKEY_CRM_meta_timeout"])
	}
	if _, ok := mon["TANDEM_LEAK"]; ok {
		t.Error("the agent's own environment leaked into the OCF agent")
	}
}

func TestHungAgentIsKilledWithItsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pgid")
	root := fakeRoot(t, map[string]string{"hang": `echo $$ > "$OCF_RESKEY_pidfile"; sleep 60 & sleep 60`})
	a := newAgent(t, "hung", config.OCF{Agent: "tandemtest/hang", Root: root, Params: map[string]string{"pidfile": pidFile}})
	start := time.Now()
	err := a.Start(proctest.Ctx(t, 400*time.Millisecond))
	wantFailure(t, "hung start", err, resource.Soft, "timed out after")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err does not wrap DeadlineExceeded: %v", err)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("Start returned after %v; want right after the 400ms deadline", d)
	}
	proctest.WaitGroupGone(t, proctest.ReadPID(t, pidFile))
}

func TestGarbageSpewingAgent(t *testing.T) {
	root := fakeRoot(t, map[string]string{"spew": `head -c 4000000 /dev/urandom; head -c 4000000 /dev/urandom >&2; exit "$OCF_RESKEY_rc"`})
	for _, rc := range []string{"0", "1"} {
		h := &proctest.CountingHandler{}
		a, err := New("spew", config.OCF{Agent: "tandemtest/spew", Root: root, Params: map[string]string{"rc": rc}}, slog.New(h))
		if err != nil {
			t.Fatal(err)
		}
		err = a.Start(proctest.Ctx(t, 10*time.Second))
		if rc == "0" && err != nil {
			t.Errorf("Start = %v", err)
		}
		if rc == "1" {
			wantFailure(t, "Start", err, resource.Soft, "OCF_ERR_GENERIC (1)")
			if len(err.Error()) > 600 {
				t.Errorf("error quoting garbage is %d bytes", len(err.Error()))
			}
		}
		if r, b := h.Records.Load(), h.Bytes.Load(); r > 1000 || b > 2<<20 {
			t.Errorf("8 MB of garbage logged as %d records, %d bytes; want bounded", r, b)
		} else {
			t.Logf("8 MB of garbage → %d log records, %d bytes", r, b)
		}
	}
}

func TestMetaDataTooLarge(t *testing.T) {
	root := fakeRoot(t, map[string]string{"big": `head -c 2000000 /dev/zero; exit 0`})
	_, err := newAgent(t, "big", config.OCF{Agent: "tandemtest/big", Root: root}).MetaData(proctest.Ctx(t, 10*time.Second))
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("MetaData = %v, want too large", err)
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	for _, spec := range []config.OCF{
		{Agent: "heartbeat/../../x"},
		{Agent: "heartbeat/Dummy", Root: "relative/root"},
		{Agent: "heartbeat/Dummy", Params: map[string]string{"bad-name": "x"}},
		{Agent: "heartbeat/Dummy", Params: map[string]string{"state": "a\x00b"}},
		{Agent: "heartbeat/Dummy", Params: map[string]string{"CRM_meta_timeout": "1"}},
	} {
		if _, err := New("x", spec, slog.New(slog.DiscardHandler)); err == nil {
			t.Errorf("New(%+v) accepted", spec)
		}
	}
}
