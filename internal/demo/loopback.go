package demo

import (
	"context"
	"fmt"
	"os"
	"os/exec"
)

// loopbackEnv runs every host on its own loopback address (127.0.0.11…),
// with no VIP: a user without root still sees a real three-process cluster
// and a real failover, probed on both nodes' own addresses.
type loopbackEnv struct{ binary string }

func newLoopbackEnv() *loopbackEnv { return &loopbackEnv{} }

var loopAddr = map[string]string{"node1": "127.0.0.11", "node2": "127.0.0.12", "witness": "127.0.0.13"}

const loopServicePort = "18080"

func (e *loopbackEnv) setup(context.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	e.binary = exe
	return nil
}

func (e *loopbackEnv) config(dir, key string) string {
	return fmt.Sprintf(`cluster: demo
key_file: %[1]s
state_dir: %[2]s
port: 17789
api: {socket: %[2]s/api.sock}
nodes:
  - {name: node1, links: [%[3]s]}
  - {name: node2, links: [%[4]s]}
witness: {name: witness, links: [%[5]s]}
groups:
  - name: web
    prefer: node1
    resources:
      - exec:
          command: [%[6]s, demo-service, --port, "%[7]s"]
          check: {command: [%[6]s, demo-service, --check, --port, "%[7]s"]}
        monitor_interval: 1s
`, key, dir, loopAddr["node1"], loopAddr["node2"], loopAddr["witness"], e.binary, loopServicePort)
}

func (e *loopbackEnv) command(ctx context.Context, h string, args ...string) *exec.Cmd {
	return exec.Command(e.binary, args...)
}

func (e *loopbackEnv) kill(h string, agent *os.Process) error {
	return killTree(agent.Pid)
}

func (e *loopbackEnv) probeTargets() []string {
	return []string{
		"http://" + loopAddr["node1"] + ":" + loopServicePort + "/",
		"http://" + loopAddr["node2"] + ":" + loopServicePort + "/",
	}
}

func (e *loopbackEnv) arp() (string, string) { return "", "" }

func (e *loopbackEnv) addr(h string) string { return loopAddr[h] }

func (e *loopbackEnv) notes() []string {
	return []string{"not root: the nodes share this host's loopback, so there is no floating IP, no ARP and no kernel-enforced lease to show; " +
		"the client probes each node's own address. Run as root for the network-namespace demo with a real VIP."}
}

func (e *loopbackEnv) close() error { return nil }
