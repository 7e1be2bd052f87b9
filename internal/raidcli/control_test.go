package raidcli

import (
	"net"
	"os"
	"strings"
	"testing"
)

// A serving process that dies (or hangs up) in the middle of a command is
// named, with its socket and what to do, instead of Go's HTTP error about
// a made-up URL ("Post "http://raid/fail": EOF").
func TestDeadServerIsExplained(t *testing.T) {
	g := &globals{stateDir: t.TempDir()}
	os.MkdirAll(raidDir(g.stateDir), 0o700)
	path := socketPath(g.stateDir, "r1")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close() // a server that dies as it is asked
		}
	}()
	c := g.control("r1")
	if c == nil {
		t.Fatal("the socket answers but no control client")
	}
	err = c.call("POST", "fail", controlRequest{}, nil)
	if err == nil {
		t.Fatal("a call to a dead server succeeded")
	}
	for _, want := range []string{"array r1", path, "did not answer fail", "still runs", "run this command again"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "http://raid") {
		t.Errorf("error %q shows the made-up URL", err)
	}
}
