package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tandem/internal/api"
)

// TestMain lets a test run this binary as the tandem command, in a child
// process (TANDEM_TEST_MAIN=1), with its descriptor limit lowered to
// TANDEM_TEST_NOFILE first.
func TestMain(m *testing.M) {
	if os.Getenv("TANDEM_TEST_MAIN") == "1" {
		if n, err := strconv.ParseUint(os.Getenv("TANDEM_TEST_NOFILE"), 10, 64); err == nil {
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
				fmt.Fprintln(os.Stderr, "setrlimit:", err)
				os.Exit(99)
			}
		}
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// lockedBuffer collects a child's stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startAgents runs agents a, b and witness w of the configuration
// cfgFor gives each, in this test binary as the tandem command, each with
// its state under dir and env added to its environment. Their standard
// error is kept; they are stopped (SIGTERM, and the logs shown if the test
// failed) at its end.
func startAgents(t *testing.T, dir string, cfgFor func(node string) string, env map[string][]string) (map[string]*lockedBuffer, map[string]*exec.Cmd) {
	logs := map[string]*lockedBuffer{}
	procs := map[string]*exec.Cmd{}
	for _, n := range []string{"w", "b", "a"} {
		state := filepath.Join(dir, n)
		use := "agent"
		if n == "w" {
			use = "witness"
		}
		cmd := exec.Command(os.Args[0], use, "-c", cfgFor(n), "--node", n, "--state-dir", state, "--socket", filepath.Join(state, "api.sock"), "--no-realtime")
		cmd.Env = append(append(os.Environ(), "TANDEM_TEST_MAIN=1"), env[n]...)
		logs[n] = &lockedBuffer{}
		cmd.Stderr = logs[n]
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[n] = cmd
		t.Cleanup(func() {
			stopAgent(cmd)
			if t.Failed() {
				t.Logf("agent %s:\n%s", n, logs[n].String())
			}
		})
	}
	return logs, procs
}

// stopAgent stops an agent started by startAgents and waits for it (once
// it has stopped, again is a no-op).
func stopAgent(cmd *exec.Cmd) {
	if cmd.ProcessState != nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// freePort is a port free for TCP and UDP on every address in ips.
func freePort(t *testing.T, ips ...string) int {
	t.Helper()
	for tries := 0; tries < 50; tries++ {
		port := 20000 + rand.IntN(30000)
		ok := true
		for _, ip := range ips {
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
			pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			pc.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// An agent whose descriptor limit is low (128), flooded on its TCP API by
// hundreds of connections that send nothing or half a request from many
// sources, keeps its API bounded and keeps working: raft keeps its leader,
// the resource checks keep running, the group stays where it is, nothing
// fails with "too many open files", and other clients are still served.
// Before the limits, 95 such connections made raft and the exec checks
// fail and forced a failover.
func TestAgentKeepsWorkingUnderAnAPIFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-agent cluster for about 20 s")
	}
	dir := t.TempDir()
	base := fmt.Sprintf("127.%d.%d.", 100+rand.IntN(100), rand.IntN(250))
	ips := map[string]string{"a": base + "1", "b": base + "2", "w": base + "3"}
	port := freePort(t, ips["a"], ips["b"], ips["w"])
	apiPort := freePort(t, ips["a"], ips["b"], ips["w"])
	key, token := filepath.Join(dir, "cluster.key"), filepath.Join(dir, "api.token")
	if _, _, err := run("keygen", "--out", key); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run("keygen", "--token", token); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "tandem.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`cluster: fdtest
key_file: %s
port: %d
nodes:
  - {name: a, links: [%s]}
  - {name: b, links: [%s]}
witness: {name: w, links: [%s]}
timing: {heartbeat_interval: 100ms, node_timeout: 1s}
api: {tcp_port: %d, token_file: %s}
groups:
  - name: web
    prefer: a
    failback: manual
    resources:
      - name: svc
        exec:
          command: [/bin/sleep, "1000"]
          check: {command: [/bin/true]}
        monitor_interval: 300ms
`, key, port, ips["a"], ips["b"], ips["w"], apiPort, token)), 0o600)
	if _, stderr, err := run("config", "validate", "--local", "--node", "a", cfg); err != nil {
		t.Fatalf("config: %v\n%s", err, stderr)
	}

	logs, procs := startAgents(t, dir, func(string) string { return cfg }, map[string][]string{"a": {"TANDEM_TEST_NOFILE=128"}})
	a := api.NewUnixClient(filepath.Join(dir, "a", "api.sock"))
	running := func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := a.Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, g := range st.Groups {
			if g.Name == "web" {
				return st.Quorum && g.Holder == "a" && g.Running, fmt.Sprintf("quorum %v leader %q, web on %q running %v (%s %s)", st.Quorum, st.Leader, g.Holder, g.Running, g.Phase, g.PhaseError)
			}
		}
		return false, "no group web"
	}
	deadline := time.Now().Add(30 * time.Second)
	for ok, why := running(); !ok; ok, why = running() {
		if time.Now().After(deadline) {
			t.Fatalf("the group never ran on a: %s", why)
		}
		time.Sleep(200 * time.Millisecond)
	}
	started := time.Now()

	// The flood: 400 connections from 40 sources, silent or stalled
	// after half the headers, held open for the rest of the test.
	apiAddr := net.JoinHostPort(ips["a"], strconv.Itoa(apiPort))
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for src := 0; src < 40; src++ {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("127.0.1.%d", 10+src))}, Timeout: 2 * time.Second}
		for i := 0; i < 10; i++ {
			c, err := d.Dial("tcp", apiAddr)
			if err != nil {
				continue // the listen queue is full: refused before it costs the agent anything
			}
			if i%2 == 1 {
				io.WriteString(c, "GET /v1/status HTTP/1.1\r\nHost: x\r\n")
			}
			flood = append(flood, c)
		}
	}
	t.Logf("%d flood connections open", len(flood))

	// For 8 s (many monitor intervals, raft heartbeats and the API's
	// header timeout) the agent keeps working.
	for end := time.Now().Add(8 * time.Second); time.Now().Before(end); {
		if ok, why := running(); !ok {
			t.Fatalf("during the flood: %s", why)
		}
		// keep stalled clients coming as the old ones time out
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.1.200")}, Timeout: time.Second}
		for i := 0; i < 20; i++ {
			if c, err := d.Dial("tcp", apiAddr); err == nil {
				flood = append(flood, c)
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", procs["a"].Process.Pid))
	t.Logf("agent a holds %d descriptors of 128", len(fds))

	// Another client is still served over TCP, with the token.
	tok, _ := os.ReadFile(token)
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.2.1")}}).DialContext}
	req, _ := http.NewRequest("GET", "http://"+apiAddr+"/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a client with the token during the flood: %v %v", resp, err)
	}
	resp.Body.Close()

	if strings.Contains(logs["a"].String(), "too many open files") {
		t.Fatalf("agent a ran out of descriptors:\n%s", logs["a"].String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	evs, err := a.Events(ctx, map[string][]string{"kind": {"takeover,resource_failure,resource_restart,lease_lost,quorum_lost"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Time.After(started) {
			t.Errorf("during the flood: %s %s %s", e.Kind, e.Subject, e.Message)
		}
	}
}
