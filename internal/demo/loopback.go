package demo

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
)

// loopbackEnv runs every host on its own loopback address (127.0.0.11…),
// with no VIP: a user without root still sees a real three-process cluster
// and a real failover, probed on both nodes' own addresses.
type loopbackEnv struct{ binary string }

func newLoopbackEnv() *loopbackEnv { return &loopbackEnv{} }

var loopAddr = map[string]string{"node1": "127.0.0.11", "node2": "127.0.0.12", "witness": "127.0.0.13"}

const (
	loopPort        = "17789" // each host's heartbeats (UDP) and raft (TCP)
	loopServicePort = "18080" // the demo service on node1 and node2
)

func (e *loopbackEnv) setup(context.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	e.binary = exe
	return checkLoopbackPorts()
}

// checkLoopbackPorts fails at once, with the bind error, when an address
// and port the demo needs is taken (another demo still running, say).
// Otherwise an agent exits with it, or the service cannot start on either
// node, and the demo learns it only by waiting for a group that never runs.
func checkLoopbackPorts() error {
	type need struct{ host, network, port, what string }
	var needs []need
	for _, h := range []string{"node1", "node2", "witness"} {
		needs = append(needs, need{h, "udp", loopPort, "heartbeats"}, need{h, "tcp", loopPort, "raft"})
	}
	for _, h := range []string{"node1", "node2"} {
		needs = append(needs, need{h, "tcp", loopServicePort, "the demo service"})
	}
	for _, n := range needs {
		addr := net.JoinHostPort(loopAddr[n.host], n.port)
		var c io.Closer
		var err error
		if n.network == "udp" {
			c, err = net.ListenPacket("udp", addr)
		} else {
			c, err = net.Listen("tcp", addr)
		}
		if err != nil {
			return fmt.Errorf("%s %s, for %s's %s: %w\n"+
				"  The loopback demo uses fixed addresses (127.0.0.11 to 127.0.0.13, ports %s and %s): is another\n"+
				"  tandem demo running? `ss -%slpn 'sport = :%s'` shows who has it.",
				strings.ToUpper(n.network), addr, n.host, n.what, err, loopPort, loopServicePort, n.network[:1], n.port)
		}
		c.Close()
	}
	return nil
}

func (e *loopbackEnv) config(dir, key string) string {
	return fmt.Sprintf(`cluster: demo
key_file: %[1]s
state_dir: %[2]s
port: %[8]s
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
`, key, dir, loopAddr["node1"], loopAddr["node2"], loopAddr["witness"], e.binary, loopServicePort, loopPort)
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
