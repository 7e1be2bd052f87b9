package demo

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"syscall"

	"tandem/internal/netutil"
)

// netnsEnv runs every host in its own network namespace on one bridge; the
// group has a real VIP guarded by the kernel lease, and a client namespace
// probes the VIP and watches who answers ARP for it.
type netnsEnv struct {
	binary string
	lab    *netutil.Lab
	hosts  map[string]*netutil.Host
}

func newNetnsEnv() *netnsEnv { return &netnsEnv{hosts: map[string]*netutil.Host{}} }

var nsAddr = map[string]string{"node1": "10.77.0.1", "node2": "10.77.0.2", "witness": "10.77.0.3", "client": "10.77.0.10"}

const (
	nsVIP     = "10.77.0.100"
	nsService = "8080"
)

func (e *netnsEnv) setup(ctx context.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	e.binary = exe
	if _, err := netutil.RemoveStale("tdemo"); err != nil {
		return err
	}
	lab, err := netutil.NewLab(netutil.UniquePrefix("tdemo"))
	if err != nil {
		return err
	}
	e.lab = lab
	for _, h := range []string{"node1", "node2", "witness", "client"} {
		host, err := lab.AddHost(h, netip.MustParsePrefix(nsAddr[h]+"/24"))
		if err != nil {
			return err
		}
		e.hosts[h] = host
	}
	return nil
}

func (e *netnsEnv) config(dir, key string) string {
	return fmt.Sprintf(`cluster: demo
key_file: %[1]s
state_dir: %[2]s
nodes:
  - {name: node1, links: [%[3]s]}
  - {name: node2, links: [%[4]s]}
witness: {name: witness, links: [%[5]s]}
groups:
  - name: web
    prefer: node1
    resources:
      - exec:
          command: [%[6]s, demo-service, --all, --port, "%[8]s"]
          check: {tcp: "127.0.0.1:%[8]s"}
        monitor_interval: 1s
      - vip: {address: %[7]s/24, interface: %[9]s}
`, key, dir, nsAddr["node1"], nsAddr["node2"], nsAddr["witness"], e.binary, nsVIP, nsService, netutil.HostLink)
}

func (e *netnsEnv) command(ctx context.Context, h string, args ...string) *exec.Cmd {
	return e.hosts[h].Command(context.Background(), e.binary, args...)
}

// kill crashes a node: every process in its namespace gets SIGKILL. The VIP
// stays configured on the dead node's interface, as after an agent crash;
// only the kernel-enforced lease can silence it.
func (e *netnsEnv) kill(h string, agent *os.Process) error {
	syscall.Kill(agent.Pid, syscall.SIGKILL)
	for _, pid := range netutil.ProcessesIn(e.hosts[h].Path()) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	return nil
}

func (e *netnsEnv) probeTargets() []string {
	return []string{"http://" + nsVIP + ":" + nsService + "/"}
}

func (e *netnsEnv) arp() (string, string) { return netutil.HostLink, nsVIP }

func (e *netnsEnv) addr(h string) string { return nsAddr[h] }

func (e *netnsEnv) notes() []string { return nil }

func (e *netnsEnv) close() error {
	if e.lab == nil {
		return nil
	}
	for h, host := range e.hosts {
		if h == "client" {
			continue
		}
		for _, pid := range netutil.ProcessesIn(host.Path()) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return e.lab.Close()
}
