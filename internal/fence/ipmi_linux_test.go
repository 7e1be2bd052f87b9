package fence

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/internal/clock"
	"tandem/internal/events"
)

// bmc is OpenIPMI's ipmi_sim in a network namespace of its own, whose
// chassis power is a process standing for the node: power off kills it,
// power status is whether it lives.
type bmc struct {
	ns     string
	dir    string
	node   *exec.Cmd
	nodeOK chan error // the node process's end
	agent  string     // fence_ipmilan run inside the namespace
}

const bmcPassword = "s3cret-Bmc"

func newBMC(t *testing.T) *bmc {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	for _, p := range []string{"ipmi_sim", "ip"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed (Debian package openipmi)", p)
		}
	}
	if _, err := os.Stat("/usr/sbin/fence_ipmilan"); err != nil {
		t.Skip("fence_ipmilan not installed (Debian package fence-agents)")
	}
	b := &bmc{ns: fmt.Sprintf("tfbmc%d", os.Getpid()), dir: t.TempDir()}
	exec.Command("ip", "netns", "del", b.ns).Run() // a leftover of a killed run
	if out, err := exec.Command("ip", "netns", "add", b.ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", b.ns).Run() })
	exec.Command("ip", "netns", "exec", b.ns, "ip", "link", "set", "lo", "up").Run()

	// The node: a process whose death is the power going off.
	b.node = exec.Command("sleep", "100000")
	if err := b.node.Start(); err != nil {
		t.Fatal(err)
	}
	b.nodeOK = make(chan error, 1)
	go func() { b.nodeOK <- b.node.Wait() }()
	t.Cleanup(func() { b.node.Process.Kill() })
	os.WriteFile(filepath.Join(b.dir, "node.pid"), []byte(fmt.Sprint(b.node.Process.Pid)), 0o644)

	chassis := filepath.Join(b.dir, "chassis.sh")
	os.WriteFile(chassis, []byte(`#!/bin/sh
# ipmi_sim's chassis_control: DEVICE get PARM... | DEVICE set PARM VALUE...
pidfile=`+b.dir+`/node.pid
shift; op=$1; shift
case $op in
get) for p in "$@"; do
       case $p in
       power) if kill -0 "$(cat $pidfile)" 2>/dev/null; then echo power:1; else echo power:0; fi ;;
       boot) echo boot:default ;;
       *) echo "no $p"; exit 1 ;;
       esac
     done ;;
set) while [ $# -ge 2 ]; do
       if [ "$1" = power ] && [ "$2" = 0 ]; then kill -9 "$(cat $pidfile)"; fi
       shift 2
     done ;;
*) exit 1 ;;
esac
`), 0o755)
	lan := filepath.Join(b.dir, "lan.conf")
	os.WriteFile(lan, []byte(`name "tandem-test-bmc"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 623
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "`+chassis+` 0x20"
  user 1 false "" "unused" user 10 none md2 md5 straight
  user 2 true "admin" "`+bmcPassword+`" admin 10 none md2 md5 straight
`), 0o644)
	emu := filepath.Join(b.dir, "bmc.emu")
	os.WriteFile(emu, []byte("mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n"), 0o644)
	state := filepath.Join(b.dir, "state")
	os.Mkdir(state, 0o700)
	sim := exec.Command("ip", "netns", "exec", b.ns, "ipmi_sim", "-n", "-c", lan, "-f", emu, "-s", state)
	var simOut strings.Builder
	sim.Stdout, sim.Stderr = &simOut, &simOut
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sim.Process.Signal(syscall.SIGTERM)
		sim.Wait()
		if t.Failed() {
			t.Logf("ipmi_sim said: %s", simOut.String())
		}
	})
	b.agent = filepath.Join(b.dir, "fence_ipmilan_in_bmc_ns")
	os.WriteFile(b.agent, []byte("#!/bin/sh\nexec ip netns exec "+b.ns+" /usr/sbin/fence_ipmilan\n"), 0o755)
	// Wait until the simulated BMC answers (a busy machine starts slowly).
	a := b.device(t, bmcPassword)
	deadline := time.Now().Add(60 * time.Second)
	for {
		r, err := a.Run(context.Background(), Status, "")
		if err == nil && r.Power == PowerOn {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the BMC never answered: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return b
}

// device is fence_ipmilan against the BMC, its password from a file.
func (b *bmc) device(t *testing.T, password string) *Agent {
	pw := filepath.Join(t.TempDir(), "bmc.pw")
	os.WriteFile(pw, []byte(password+"\n"), 0o600)
	return &Agent{Path: b.agent, Timeout: 60 * time.Second,
		// cipher 3 (RAKP-HMAC-SHA1, AES): ipmi_sim does not answer Get
		// Channel Cipher Suites, and ipmitool waits 10 s on that without it.
		Params:      map[string]string{"ip": "127.0.0.1", "username": "admin", "lanplus": "1", "cipher": "3", "power_wait": "0"},
		SecretFiles: map[string]string{"password": pw}}
}

// TestIPMIFence fences a node through Debian's fence_ipmilan and OpenIPMI's
// simulated BMC: a wrong password fails every attempt and leaves the node
// running; the right one kills the node's process and confirms off.
func TestIPMIFence(t *testing.T) {
	b := newBMC(t)
	ctx := context.Background()
	rec := &events.Recorder{}
	wrong := "not-" + bmcPassword
	f := &Fencer{
		Devices: map[string]Device{"bmc": b.device(t, wrong)},
		Topologies: map[string]Topology{"node2": {Node: "node2", Levels: [][]Step{
			{{Device: "bmc", Timeout: 90 * time.Second, Retries: 1}}}}},
		Clock: clock.Real{}, Events: rec,
	}
	r, err := f.Fence(ctx, "node2", "test: wrong password")
	if err == nil || r.Confirmed || len(r.Attempts) != 2 {
		t.Fatalf("a wrong password fenced: %+v %v", r, err)
	}
	if !strings.Contains(r.Attempts[0].Err, "exited 1") {
		t.Errorf("attempt error %q", r.Attempts[0].Err)
	}
	select {
	case <-b.nodeOK:
		t.Fatal("the node died though the fence failed")
	default:
	}
	for _, e := range rec.Events() {
		if strings.Contains(fmt.Sprint(e), wrong) || strings.Contains(fmt.Sprint(e), bmcPassword) {
			t.Fatalf("a password in an event: %+v", e)
		}
	}

	if _, err := b.device(t, bmcPassword).Run(ctx, Monitor, ""); err != nil {
		t.Fatalf("monitor: %v", err)
	}
	f.Devices["bmc"] = b.device(t, bmcPassword)
	start := time.Now()
	r, err = f.Fence(ctx, "node2", "test")
	if err != nil || !r.Confirmed {
		t.Fatalf("fence: %+v %v", r, err)
	}
	t.Logf("fence_ipmilan off + status against ipmi_sim: %v", time.Since(start))
	for _, a := range r.Attempts {
		t.Logf("  %s %s: %v", a.Device, a.Action, a.Duration)
	}
	select {
	case err := <-b.nodeOK:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("the node ended but not by the BMC's kill: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("confirmed off, but the node process lives")
	}
	if r, err := b.device(t, bmcPassword).Run(ctx, Status, ""); err != nil || r.Power != PowerOff {
		t.Fatalf("status after the fence: %+v %v", r, err)
	}
}
