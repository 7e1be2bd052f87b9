package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A second agent for a node whose agent runs said "address already in
// use": it is refused before it binds anything, naming the agent that runs.
func TestSecondAgentForTheSameNodeSaysSo(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t, "127.0.0.1")
	cfg := filepath.Join(dir, "tandem.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("cluster: c\ninsecure: true\nstate_dir: %[1]s\nport: %[2]d\napi: {socket: %[1]s/api.sock}\n"+
		"nodes:\n  - {name: a, links: [192.0.2.201]}\n  - {name: b, links: [192.0.2.202]}\nwitness: {name: w, links: [127.0.0.1]}\n", dir, port)), 0o600)

	first := exec.Command(os.Args[0], "witness", "-c", cfg, "--no-realtime")
	first.Env = append(os.Environ(), "TANDEM_TEST_MAIN=1")
	logs := &lockedBuffer{}
	first.Stderr = logs
	first.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAgent(first) })
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, "api.sock")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first agent did not start:\n%s", logs)
		}
	}

	_, _, err := run("witness", "-c", cfg, "--no-realtime")
	want := fmt.Sprintf("another tandem agent already runs for node w (pid %d, state dir %s)", first.Process.Pid, dir)
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "address already in use") {
		t.Errorf("second agent: %v\nwant it to say %q", err, want)
	}
	if first.ProcessState != nil {
		t.Errorf("the first agent stopped:\n%s", logs)
	}
}
