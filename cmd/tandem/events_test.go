package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/config"
	"tandem/internal/events"
)

// stateConfig writes the example configuration with its state (and so its
// audit log and socket) in a temporary directory, and returns its path and
// the audit log's.
func stateConfig(t *testing.T) (cfg, logPath string) {
	t.Helper()
	dir := t.TempDir()
	text := strings.Replace(config.Example, "cluster: shop\n", "cluster: shop\nstate_dir: "+dir+"\n", 1)
	text = strings.Replace(text, "socket: /run/tandem/tandem.sock", "socket: "+filepath.Join(dir, "tandem.sock"), 1)
	cfg = filepath.Join(dir, "tandem.yaml")
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, c.Events.File
}

// writeLog publishes a few events to the log at path, leaves a line torn
// as a crash would, and publishes one more.
func writeLog(t *testing.T, path string) {
	t.Helper()
	l, err := events.OpenLog(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	l.Publish(events.Event{Time: now.Add(-time.Hour), Kind: events.NodeDown, Subject: "db1"})
	l.Publish(events.Event{Time: now.Add(-time.Minute), Kind: events.Takeover, Group: "shop-db", Epoch: 7, Node: "db2"})
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026-11-24T12:00:00Z","kind":"Fa`)
	f.Close()
	l.Publish(events.Event{Time: now, Kind: events.ResRestart, Subject: "web", Group: "shop-db"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// With the agent down, a post-mortem reads the audit log itself: --file
// alone takes events.file of the configuration.
func TestEventsFileWithoutTheAgent(t *testing.T) {
	cfg, logPath := stateConfig(t)
	writeLog(t, logPath)
	out, stderr, err := run("events", "-c", cfg, "--file")
	if err != nil {
		t.Fatalf("events --file: %v\n%s", err, stderr)
	}
	for _, want := range []string{"node_down", "subject=db1", "takeover", "epoch=7", "resource_restart"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if !strings.Contains(stderr, "skipped 1 line(s)") || !strings.Contains(stderr, "line 3:") {
		t.Errorf("the torn line is not reported:\n%s", stderr)
	}
	for _, args := range [][]string{
		{"events", "--file", logPath, "--kind", "takeover"},
		{"events", "--file=" + logPath, "--kind", "takeover", "--json"},
		{"events", "-c", cfg, "--file", "--since", "30m", "--group", "shop-db", "--limit", "1", "--kind", "takeover,resource_restart"},
	} {
		out, _, err := run(args...)
		if err != nil || strings.Count(strings.TrimSpace(out), "\n") != 0 || (!strings.Contains(out, "takeover") && !strings.Contains(out, "resource_restart")) {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
	if _, _, err := run("events", "--file", logPath, "extra"); exitCode(err) == 0 {
		t.Errorf("a second argument accepted")
	}
}

// A misspelt kind selects nothing, which reads as "it never happened": it
// is refused with the list of kinds, before the agent is asked.
func TestEventsUnknownKind(t *testing.T) {
	for _, args := range [][]string{
		{"events", "--kind", "bogus", "--socket", filepath.Join(t.TempDir(), "none.sock")},
		{"events", "--kind", "takeover,bogus", "--file", filepath.Join(t.TempDir(), "events.jsonl")},
	} {
		_, _, err := run(args...)
		if exitCode(err) != 2 || !strings.Contains(err.Error(), `unknown kind "bogus"`) ||
			!strings.Contains(err.Error(), "resource_restart") || !strings.Contains(err.Error(), "config_mismatch") {
			t.Errorf("%v: exit %d, %v", args, exitCode(err), err)
		}
	}
}

func TestEventsVerify(t *testing.T) {
	cfg, logPath := stateConfig(t)
	writeLog(t, logPath)
	out, _, err := run("events", "-c", cfg, "--verify")
	if err != nil || !strings.Contains(out, "the hash chain holds: 3 entries, seq 1 to 3") ||
		!strings.Contains(out, "line 3:") || !strings.Contains(out, "head: 3:") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	head := strings.Fields(out[strings.Index(out, "head: "):])[1]

	// Someone edits the takeover's epoch.
	data, _ := os.ReadFile(logPath)
	os.WriteFile(logPath, []byte(strings.Replace(string(data), `"epoch":7`, `"epoch":6`, 1)), 0o640)
	out, _, err = run("events", "--verify", "--file", logPath)
	if exitCode(err) != 1 || !strings.Contains(out, "BROKEN") ||
		!strings.Contains(out, "first broken link: line 4 (seq 3): its prev is") || !strings.Contains(out, "(line 2, seq 2)") {
		t.Fatalf("verify of an edited log: exit %d, %v\n%s", exitCode(err), err, out)
	}
	t.Log(out)

	// Someone cuts off the newest entry: only the head kept elsewhere shows it.
	os.WriteFile(logPath, data[:strings.Index(string(data), `{"time":"2026-11-24T12:00:00Z","kind":"Fa`)], 0o640)
	if out, _, err := run("events", "--verify", "--file", logPath); err != nil {
		t.Fatalf("verify of a cut log without the head: %v\n%s", err, out)
	}
	out, _, err = run("events", "--verify", "--file", logPath, "--anchor", head)
	if exitCode(err) != 1 || !strings.Contains(out, "the log ends at seq 2, but seq 3 was recorded") {
		t.Fatalf("verify of a cut log with its old head: exit %d\n%s", exitCode(err), out)
	}
	if _, _, err := run("events", "--verify", "--file", logPath, "--anchor", "3:abc"); exitCode(err) != 2 {
		t.Errorf("a malformed anchor: %v", err)
	}
}

// An agent that cannot be reached is named, with what to check.
func TestUnreachableAgentSaysWhatToCheck(t *testing.T) {
	cfg, logPath := stateConfig(t)
	_, _, err := run("status", "-c", cfg)
	sock := filepath.Join(filepath.Dir(cfg), "tandem.sock")
	if err == nil || !strings.Contains(err.Error(), "cannot reach the tandem agent at the socket "+sock+" (api.socket of "+cfg+")") ||
		!strings.Contains(err.Error(), "no such socket") || !strings.Contains(err.Error(), "systemctl status tandem") ||
		strings.Contains(err.Error(), "http://") {
		t.Errorf("status with no agent: %v", err)
	}
	os.WriteFile(sock, nil, 0o600) // a socket left behind by a dead agent
	if _, _, err := run("status", "-c", cfg); err == nil || !strings.Contains(err.Error(), "nobody listens on it") {
		t.Errorf("status with a stale socket: %v", err)
	}
	postMortem := "tandem events -c " + cfg + " --file (" + logPath + ")"
	for _, cmd := range []string{"events", "status", "cleanup"} {
		args := []string{cmd, "-c", cfg}
		if cmd == "cleanup" {
			args = append(args, "web")
		}
		if _, _, err := run(args...); err == nil || !strings.Contains(err.Error(), postMortem) {
			t.Errorf("%s with no agent does not say how to read the audit log: %v", cmd, err)
		}
	}
	if _, _, err := run("status", "--socket", sock); err == nil || !strings.Contains(err.Error(), "tandem events --file STATE_DIR/events.jsonl (/var/lib/tandem/events.jsonl by default)") {
		t.Errorf("with no configuration, the audit log's default place is not named: %v", err)
	}
}

// An agent that closes the connection without an answer (it is stopping,
// or crashed mid-request) is explained too, not shown as the HTTP client's
// `Get "http://tandem/v1/status": EOF`.
func TestAgentClosingTheConnectionSaysWhatToCheck(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, _, err = run("status", "--socket", sock)
	if err == nil || !strings.Contains(err.Error(), "cannot reach the tandem agent at the socket "+sock+" (--socket)") ||
		!strings.Contains(err.Error(), "closed without an answer") || !strings.Contains(err.Error(), "systemctl status tandem") ||
		strings.Contains(err.Error(), "http://") || strings.Contains(err.Error(), "EOF") {
		t.Errorf("status against an agent that hangs up: %v", err)
	}
}
