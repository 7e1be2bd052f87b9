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
	if _, _, err := run("failover", "db", "--force"); exitCode(err) != 2 || !strings.Contains(err.Error(), "--force needs --to") {
		t.Fatalf("failover --force without --to: %v", err)
	}
}

// validate --local checks this machine as the member it is: before, it
// printed ok for a VIP on an interface the machine does not have and for a
// machine that is none of the nodes.
func TestConfigValidateLocalChecksThisMachine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "local.yaml")
	os.WriteFile(p, []byte(`cluster: c
insecure: true
nodes:
  - {name: a, links: ["127.0.0.1:17921"]}
  - {name: b, links: ["198.51.100.2:17921"]}
witness: {name: w, links: ["198.51.100.3:17921"]}
groups:
  - name: web
    resources:
      - vip: {address: 10.88.0.50/24, interface: tandem-eth9}
`), 0o600)
	_, stderr, err := run("config", "validate", "--local", "--node", "a", p)
	if exitCode(err) != 2 || !strings.Contains(stderr, p+":10: groups[0].resources[0].vip.interface: this machine (a) has no interface tandem-eth9") {
		t.Errorf("a VIP on a missing interface: exit %d\n%s", exitCode(err), stderr)
	}
	_, stderr, err = run("config", "validate", "--local", "--node", "b", p)
	if exitCode(err) != 2 || !strings.Contains(stderr, p+":5: nodes[1].links[0]: 198.51.100.2 is not an address of this machine (b)") {
		t.Errorf("a link address of another machine: exit %d\n%s", exitCode(err), stderr)
	}
	_, stderr, err = run("config", "validate", "--local", "--node", "x", p)
	if exitCode(err) != 2 || !strings.Contains(stderr, p+`:3: nodes: "x" (--node) is not a member of cluster c (members: a, b, w)`) {
		t.Errorf("--node of no member: exit %d\n%s", exitCode(err), stderr)
	}
	os.WriteFile(p, []byte("cluster: c\ninsecure: true\nnodes:\n  - {name: a, links: [\"127.0.0.1:17921\"]}\n"+
		"  - {name: b, links: [\"198.51.100.2:17921\"]}\nwitness: {name: w, links: [\"198.51.100.3:17921\"]}\n"), 0o600)
	out, stderr, err := run("config", "validate", "--local", p)
	if err != nil || !strings.Contains(out, "this machine is a") {
		t.Errorf("the member found by its link address: %v\n%s%s", err, out, stderr)
	}
}

// The help said replicated storage and fencing were not built long after
// both were (volumes fail over with their group, fence devices run).
func TestHelpNamesReplicatedStorageAsBuilt(t *testing.T) {
	out, _, err := run("--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"replicated volumes", "fencing", "Not finished"} {
		if !strings.Contains(out, want) {
			t.Errorf("tandem --help lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Not built yet") {
		t.Errorf("tandem --help calls something not built:\n%s", out)
	}
}
