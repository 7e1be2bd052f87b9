package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// BMC is a node's baseboard management controller: OpenIPMI's ipmi_sim on
// a host of its own (bmc-node1, bmc-node2) on link 0, reached by
// fence_ipmilan from the other node over the bed's network. Its chassis
// power is the node's host: power off kills every process on it (Bed.Kill,
// recorded as a kill for the audit), power status says whether that was
// done, power on lets the host run again (the caller restarts its agent).
type BMC struct {
	Node     string
	Addr     string // the BMC's IPMI-over-LAN address
	Password string // file holding the admin password
	dir      string
	bed      *Bed
}

// BMCUser is the BMC's administrator.
const BMCUser = "admin"

// AddBMC gives node a BMC. Call it before NewCluster (hosts are added
// while nothing else looks at the bed). It waits until the BMC answers
// IPMI.
func (b *Bed) AddBMC(ctx context.Context, node string) (*BMC, error) {
	if err := EnsureTools(ctx, b.logf, "ipmi_sim", "fence_ipmilan"); err != nil {
		return nil, err
	}
	name := "bmc-" + node
	if err := b.addHost(name); err != nil {
		return nil, err
	}
	m := &BMC{Node: node, Addr: b.Host(name).Addrs[0].String(), dir: filepath.Join(b.Dir, name), bed: b}
	if err := os.MkdirAll(filepath.Join(m.dir, "state"), 0o700); err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	pw := "bmc-" + node + "-pw"
	m.Password = filepath.Join(m.dir, "password")
	chassis := filepath.Join(m.dir, "chassis.sh")
	lan := filepath.Join(m.dir, "lan.conf")
	emu := filepath.Join(m.dir, "bmc.emu")
	files := map[string]string{
		m.Password: pw + "\n",
		// ipmi_sim's chassis_control: DEVICE get PARM... | DEVICE set
		// PARM VALUE.... Power off asks the bed (off-request) and returns
		// once the host is dead (off-done), as a real chassis cuts the
		// power at once: returning earlier made fence_ipmilan's first
		// status read say "on" and wait a whole second for the next.
		chassis: `#!/bin/sh
d=` + m.dir + `
shift; op=$1; shift
case $op in
get) for p in "$@"; do
       case $p in
       power) if [ -e $d/off-done ]; then echo power:0; else echo power:1; fi ;;
       boot) echo boot:default ;;
       *) echo "no $p"; exit 1 ;;
       esac
     done ;;
set) while [ $# -ge 2 ]; do
       if [ "$1" = power ] && [ "$2" = 0 ] && [ ! -e $d/off-done ]; then
         touch $d/off-request
         i=0; while [ ! -e $d/off-done ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done
       fi
       if [ "$1" = power ] && [ "$2" = 1 ]; then rm -f $d/off-done $d/off-request; fi
       shift 2
     done ;;
*) exit 1 ;;
esac
`,
		lan: `name "tandem-bed-` + name + `"
set_working_mc 0x20
  startlan 1
    addr ` + m.Addr + ` 623
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "` + chassis + ` 0x20"
  user 1 false "" "unused" user 10 none md2 md5 straight
  user 2 true "` + BMCUser + `" "` + pw + `" admin 10 none md2 md5 straight
`,
		emu: "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n",
	}
	for path, text := range files {
		mode := os.FileMode(0o600)
		if path == chassis {
			mode = 0o755
		}
		if err := os.WriteFile(path, []byte(text), mode); err != nil {
			return nil, fmt.Errorf("testbed: %w", err)
		}
	}
	cmd := b.Command(name, "ipmi_sim", "-n", "-c", lan, "-f", emu, "-s", filepath.Join(m.dir, "state"))
	out, err := os.Create(filepath.Join(m.dir, "ipmi_sim.log"))
	if err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := b.start(cmd); err != nil {
		out.Close()
		return nil, fmt.Errorf("testbed: ipmi_sim for %s: %w", node, err)
	}
	out.Close()
	go m.watch()
	// A busy machine starts ipmi_sim (and fence_ipmilan, Python) slowly.
	deadline := time.Now().Add(60 * time.Second)
	for {
		power, err := m.Status(ctx)
		if err == nil && power == "on" {
			return m, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("testbed: the BMC of %s never answered: %v", node, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// watch carries out the power-off requests until the bed closes.
func (m *BMC) watch() {
	req, done := filepath.Join(m.dir, "off-request"), filepath.Join(m.dir, "off-done")
	for {
		m.bed.mu.Lock()
		closed := m.bed.closed
		m.bed.mu.Unlock()
		if closed {
			return
		}
		if _, err := os.Stat(req); err == nil {
			m.bed.logf("testbed: the BMC of %s powers it off", m.Node)
			m.bed.Kill(m.Node)
			os.WriteFile(done, nil, 0o600)
			os.Remove(req)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// PoweredOff reports whether the BMC has powered its node off.
func (m *BMC) PoweredOff() bool {
	_, err := os.Stat(filepath.Join(m.dir, "off-done"))
	return err == nil
}

// PowerOn ends a power-off (the caller restarts the node's agent).
func (m *BMC) PowerOn() {
	os.Remove(filepath.Join(m.dir, "off-done"))
}

// Status asks the BMC for its chassis power with fence_ipmilan, from the
// client host, as an operator would: "on" or "off".
func (m *BMC) Status(ctx context.Context) (string, error) {
	cmd := m.bed.Host("client").NS.Command(ctx, "/usr/sbin/fence_ipmilan")
	cmd.Stdin = strings.NewReader("action=status\n" + m.agentParams())
	out, err := cmd.CombinedOutput()
	s := string(out)
	switch {
	case strings.Contains(s, "Status: ON"):
		return "on", nil
	case strings.Contains(s, "Status: OFF"):
		return "off", nil
	case err != nil:
		return "", fmt.Errorf("fence_ipmilan status: %v: %s", err, strings.TrimSpace(s))
	}
	return "", errors.New("fence_ipmilan status: no answer: " + strings.TrimSpace(s))
}

func (m *BMC) agentParams() string {
	pw, _ := os.ReadFile(m.Password)
	return "ip=" + m.Addr + "\nusername=" + BMCUser + "\npassword=" + strings.TrimSpace(string(pw)) + "\n" + bmcParams
}

// bmcParams are fence_ipmilan's settings for ipmi_sim: cipher 3
// (RAKP-HMAC-SHA1, AES), because ipmi_sim does not answer Get Channel
// Cipher Suites and ipmitool waits 10 s without it.
const bmcParams = "lanplus=1\ncipher=3\npower_wait=0\n"

// FenceDeviceYAML is the fence_devices entry of m, kind ipmi.
func (m *BMC) FenceDeviceYAML() string {
	return fmt.Sprintf("  - {name: bmc-%s, kind: ipmi, nodes: [%s], timeout: 20s, retries: 1, params: {ip: %s, username: %s, lanplus: \"1\", cipher: \"3\", power_wait: \"0\"}, secret_files: {password: %s}}\n",
		m.Node, m.Node, m.Addr, BMCUser, m.Password)
}
