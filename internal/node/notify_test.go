package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A notify hook that never exits does not hold up the cluster: the active
// node crashes and the standby takes over while every node's hook hangs
// (each call killed at its timeout), and the hooks did get the events.
func TestInProcessTakeoverWhileTheNotifyHookHangs(t *testing.T) {
	c := newCluster(t, "manual")
	dir := t.TempDir()
	hook := filepath.Join(dir, "hook.sh")
	os.WriteFile(hook, []byte("#!/bin/sh\necho \"$TANDEM_NODE $TANDEM_KIND $TANDEM_SUBJECT\" >> "+filepath.Join(dir, "seen")+"\nexec sleep 1000\n"), 0o755)
	c.yaml += "notify:\n  kinds: [takeover, node_down, node_up]\n  exec: {command: [" + hook + "]}\n  timeout: 2s\n  retries: 0\n  queue: 4\n"
	c.startAll()
	c.waitRunningOn("a")
	c.waitFor("raft leadership on the witness", 5*time.Second, func() bool { return c.nodes["w"].cons.IsLeader() })
	c.crash("a")
	took := c.waitRunningOn("b")
	t.Logf("crash → running on b with hanging hooks: %v", took)
	c.waitFor("b's hook to be told of a's death", 10*time.Second, func() bool {
		seen, _ := os.ReadFile(filepath.Join(dir, "seen"))
		return strings.Contains(string(seen), "b node_down a") || strings.Contains(string(seen), "b takeover web")
	})
}
