package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
	_, _, err = run("fence", "-c", cfg, "b")
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("without --yes: exit %d %v", exitCode(err), err)
	}
	if b, _ := os.ReadFile(st); string(b) != "on" {
		t.Fatalf("refused fence changed the power: %q", b)
	}
	if _, _, err := run("fence", "-c", cfg, "a", "--yes"); exitCode(err) != 2 {
		t.Fatalf("a node without a device: exit %d", exitCode(err))
	}
	out, _, err = run("fence", "-c", cfg, "b", "--yes")
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
	out, _, err := run("fence", "-c", cfg, "b", "--yes")
	if exitCode(err) != 1 || strings.Count(out, "broken-b off") != 2 || !strings.Contains(err.Error(), "not confirmed off") {
		t.Fatalf("exit %d %v\n%s", exitCode(err), err, out)
	}
}
