package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fenceConfig writes a configuration whose node b is fenced by Debian's
// fence_dummy keeping its power in statusFile.
func fenceConfig(t *testing.T, statusFile, extra string) string {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/fence_dummy"); err != nil {
		if _, err := exec.LookPath("fence_dummy"); err != nil {
			t.Skip("fence_dummy not installed (Debian package fence-agents)")
		}
	}
	p := filepath.Join(t.TempDir(), "tandem.yaml")
	cfg := `cluster: c
insecure: true
nodes:
  - {name: a, links: [10.0.0.1]}
  - {name: b, links: [10.0.0.2]}
witness: {name: w, links: [10.0.0.3]}
fence_devices:
  - {name: dummy-b, kind: agent, agent: fence_dummy, nodes: b, params: {status_file: ` + statusFile + `}, timeout: 20s}
` + extra
	os.WriteFile(p, []byte(cfg), 0o600)
	return p
}

func TestFenceCommand(t *testing.T) {
	st := filepath.Join(t.TempDir(), "power")
	os.WriteFile(st, []byte("on"), 0o644)
	cfg := fenceConfig(t, st, "")

	out, _, err := run("fence", "-c", cfg, "--test", "dummy-b")
	if err != nil || !strings.Contains(out, "dummy-b monitor: ok") || !strings.Contains(out, "dummy-b status of b: power on") {
		t.Fatalf("--test: %v\n%s", err, out)
	}
	if _, _, err := run("fence", "-c", cfg, "--test", "nope"); exitCode(err) != 2 {
		t.Fatalf("--test of an unknown device: exit %d", exitCode(err))
	}
	_, _, err = run("fence", "-c", cfg, "b", "--local")
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("without --yes: exit %d %v", exitCode(err), err)
	}
	if b, _ := os.ReadFile(st); string(b) != "on" {
		t.Fatalf("refused fence changed the power: %q", b)
	}
	if _, _, err := run("fence", "-c", cfg, "a", "--yes", "--local"); exitCode(err) != 2 {
		t.Fatalf("a node without a device: exit %d", exitCode(err))
	}
	out, _, err = run("fence", "-c", cfg, "b", "--yes", "--local")
	if err != nil || !strings.Contains(out, "b fenced: confirmed off by level 1") {
		t.Fatalf("fence: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(st); strings.TrimSpace(string(b)) != "off" {
		t.Fatalf("power after the fence %q", b)
	}
}

// A device that cannot power off: the fence fails (exit 1) after its
// retries, each attempt printed.
func TestFenceCommandFails(t *testing.T) {
	cfg := fenceConfig(t, "/nonexistent", `  - {name: broken-b, kind: agent, agent: fence_dummy, nodes: b, params: {type: fail, power_timeout: "1"}, retries: 1}
fence_levels:
  - {node: b, devices: broken-b}
`)
	out, _, err := run("fence", "-c", cfg, "b", "--yes", "--local")
	if exitCode(err) != 1 || strings.Count(out, "broken-b off") != 2 || !strings.Contains(err.Error(), "not confirmed off") {
		t.Fatalf("exit %d %v\n%s", exitCode(err), err, out)
	}
}

// tandem fence NODE --yes goes through the agent: the fence runs there,
// its audit log records who asked and every attempt; the agent refuses to
// fence its own node.
func TestFenceCommandThroughTheAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-agent cluster")
	}
	dir := t.TempDir()
	st := filepath.Join(dir, "power-b")
	os.WriteFile(st, []byte("on"), 0o644)
	base := fmt.Sprintf("127.%d.%d.", 100+rand.IntN(100), rand.IntN(250))
	ips := map[string]string{"a": base + "1", "b": base + "2", "w": base + "3"}
	port := freePort(t, ips["a"], ips["b"], ips["w"])
	key := filepath.Join(dir, "cluster.key")
	if _, _, err := run("keygen", "--out", key); err != nil {
		t.Fatal(err)
	}
	cfg := fenceConfig(t, st, "")
	text, _ := os.ReadFile(cfg)
	conf := strings.Replace(string(text), "insecure: true\n", fmt.Sprintf("key_file: %s\nport: %d\n", key, port), 1)
	for n, ip := range map[string]string{"a": "10.0.0.1", "b": "10.0.0.2", "w": "10.0.0.3"} {
		conf = strings.Replace(conf, "["+ip+"]", "["+ips[n]+"]", 1)
	}
	os.WriteFile(cfg, []byte(conf), 0o600)
	startAgents(t, dir, func(string) string { return cfg }, nil)
	sock := filepath.Join(dir, "a", "api.sock")
	var out string
	var err error
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, _, err = run("fence", "--socket", sock, "b", "--yes")
		if err == nil || time.Now().After(deadline) || !strings.Contains(err.Error(), "socket") {
			break
		}
	}
	if err != nil || !strings.Contains(out, "b fenced: confirmed off by level 1") {
		t.Fatalf("fence through the agent: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(st); strings.TrimSpace(string(b)) != "off" {
		t.Fatalf("power after the fence %q", b)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "a", "events.jsonl"))
	me := fmt.Sprintf(`"actor":"%s(uid %d,`, currentUser(t), os.Getuid())
	var asked, done bool
	for _, line := range strings.Split(string(log), "\n") {
		asked = asked || strings.Contains(line, `"kind":"fence_requested"`) && strings.Contains(line, me)
		done = done || strings.Contains(line, `"kind":"fence_succeeded"`) && strings.Contains(line, `"subject":"b"`)
	}
	if !asked || !done {
		t.Fatalf("the audit log lacks the fence or who asked:\n%s", log)
	}
	if _, _, err := run("fence", "--socket", sock, "a", "--yes"); exitCode(err) != 2 || !strings.Contains(err.Error(), "own node") {
		t.Fatalf("fencing the agent's own node: exit %d %v", exitCode(err), err)
	}
}

func currentUser(t *testing.T) string {
	u, err := user.Current()
	if err != nil {
		t.Skip("no user name: ", err)
	}
	return u.Username
}
