package demo

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain makes this test binary a stand-in for tandem when the demo runs
// it as an agent: it fails as an agent whose port is taken does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "agent" || os.Args[1] == "witness") {
		fmt.Fprintln(os.Stderr, `level=INFO msg="starting"`)
		fmt.Fprintln(os.Stderr, "tandem: node: heartbeat: link 0: listen udp 127.0.0.11:17789: bind: address already in use")
		os.Exit(1)
	}
	if len(os.Args) > 1 && os.Args[1] == "probe" {
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runFast runs the loopback demo and fails the test if it takes more than
// a few seconds: before, a taken address cost 20 s of waiting for a group
// that never ran, and the error blamed the socket.
func runFast(t *testing.T) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	res, err := Run(ctx, Options{Loopback: true})
	if res.WorkDir != "" {
		os.RemoveAll(res.WorkDir) // kept for a look after a failure
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the demo took %v to fail", took.Round(time.Millisecond))
	}
	if err == nil {
		t.Fatal("the demo did not fail")
	}
	if strings.Contains(err.Error(), "not running on") {
		t.Errorf("the error blames the group or the socket: %v", err)
	}
	return err
}

func TestLoopbackDemoFailsFastOnATakenPort(t *testing.T) {
	if c, err := net.ListenPacket("udp", "127.0.0.12:17789"); err == nil {
		defer c.Close()
	}
	err := runFast(t)
	for _, want := range []string{"UDP 127.0.0.12:17789, for node2's heartbeats", "address already in use", "is another\n  tandem demo running?"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q:\n%v", want, err)
		}
	}
}

func TestLoopbackDemoFailsFastWhenAnAgentExits(t *testing.T) {
	if err := checkLoopbackPorts(); err != nil {
		t.Skipf("the demo's addresses are in use here: %v", err)
	}
	err := runFast(t)
	for _, want := range []string{"'s agent exited (exit status 1) before the group ran", "bind: address already in use"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q:\n%v", want, err)
		}
	}
	t.Log(err)
}
