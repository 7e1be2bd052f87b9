package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(args ...string) (string, string, error) {
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errb.String(), err
}

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if err != nil {
		return 1
	}
	return 0
}

func TestConfigValidateReportsEveryProblemAndExits2(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(p, []byte("cluster: Bad Name\nnodes:\n  - {name: a, links: [10.0.0.1]}\n  - {name: a, links: [10.0.0.1]}\nbogus: 1\n"), 0o600)
	_, stderr, err := run("config", "validate", p)
	if exitCode(err) != 2 {
		t.Fatalf("exit %d, want 2 (%v)", exitCode(err), err)
	}
	for _, want := range []string{"bad.yaml:1:", "bad.yaml:5:", "bogus", "key_file"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("missing %q in:\n%s", want, stderr)
		}
	}
	if len(strings.Split(strings.TrimSpace(stderr), "\n")) < 4 {
		t.Errorf("expected every problem on its own line:\n%s", stderr)
	}
}

func TestExampleConfigValidates(t *testing.T) {
	out, _, err := run("config", "example")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ex.yaml")
	os.WriteFile(p, []byte(out), 0o600)
	if _, stderr, err := run("config", "validate", p); err != nil {
		t.Fatalf("example does not validate: %v\n%s", err, stderr)
	}
}

func TestAgentRefusesBadConfigAndStartsNothing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(p, []byte("cluster: x\n"), 0o600)
	_, _, err := run("agent", "-c", p, "--node", "a")
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "nothing started") {
		t.Fatalf("exit %d: %v", exitCode(err), err)
	}
}

func TestBadArguments(t *testing.T) {
	if _, _, err := run("maintenance", "sideways", "--socket", "/nonexistent"); exitCode(err) != 2 {
		t.Fatalf("maintenance sideways: %v", err)
	}
	if _, _, err := run("status", "--api", "127.0.0.1:1"); exitCode(err) != 2 {
		t.Fatalf("--api without token: %v", err)
	}
	if _, _, err := run("status", "--socket", filepath.Join(t.TempDir(), "none.sock")); err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("no agent: %v", err)
	}
	if _, _, err := run("failover"); err == nil {
		t.Fatal("failover without a group accepted")
	}
}
