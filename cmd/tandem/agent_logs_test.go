package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"tandem/internal/api"
	"tandem/internal/logcheck"
)

// What a new user read in the agents' logs, from real agents: a and the
// witness w share the cluster key, b has another; a runs an exec and an
// OCF resource whose agent prints its build configuration on every start.
// Every record carries each key once (the agent and the node both added
// node=, the node and the resource agents resource=); raft's records have
// no second time stamp inside msg; the OCF agent's chatter is not at INFO;
// a and w say b presents a certificate not derived from the cluster key,
// and b says its own key is the wrong one (it said its healthy peers
// lacked the key); and none of it repeats at every raft retry.
func TestAgentLogs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-agent cluster for about 10 s")
	}
	dir := t.TempDir()
	base := fmt.Sprintf("127.%d.%d.", 100+rand.IntN(100), rand.IntN(250))
	ips := map[string]string{"a": base + "1", "b": base + "2", "w": base + "3"}
	port := freePort(t, ips["a"], ips["b"], ips["w"])
	ocfDir := filepath.Join(dir, "ocf", "resource.d", "tandemtest")
	os.MkdirAll(ocfDir, 0o755)
	chatty := `#!/bin/sh
case "$1" in
start) echo "configure arguments: --with-cc-opt='-g -O2' --prefix=/usr/share/nginx" >&2; touch "$OCF_RESKEY_state";;
stop) rm -f "$OCF_RESKEY_state";;
monitor) [ -e "$OCF_RESKEY_state" ] || exit 7;;
esac
exit 0
`
	if err := os.WriteFile(filepath.Join(ocfDir, "chatty"), []byte(chatty), 0o755); err != nil {
		t.Fatal(err)
	}
	cfgs := map[string]string{}
	for _, k := range []string{"good", "bad"} {
		key := filepath.Join(dir, k+".key")
		if _, _, err := run("keygen", "--out", key); err != nil {
			t.Fatal(err)
		}
		cfgs[k] = filepath.Join(dir, k+".yaml")
		os.WriteFile(cfgs[k], []byte(fmt.Sprintf(`cluster: logs
key_file: %s
port: %d
nodes:
  - {name: a, links: [%s]}
  - {name: b, links: [%s]}
witness: {name: w, links: [%s]}
timing: {heartbeat_interval: 100ms, node_timeout: 1s}
groups:
  - name: web
    prefer: a
    resources:
      - name: svc
        exec: {command: [/bin/sleep, "1000"]}
      - name: nginx
        ocf: {agent: tandemtest/chatty, root: %s, params: {state: %s}}
        monitor_interval: 300ms
`, key, port, ips["a"], ips["b"], ips["w"], filepath.Join(dir, "ocf"), filepath.Join(dir, "nginx.state"))), 0o600)
	}
	logs, procs := startAgents(t, dir, func(n string) string {
		if n == "b" {
			return cfgs["bad"]
		}
		return cfgs["good"]
	}, nil)

	a := api.NewUnixClient(filepath.Join(dir, "a", "api.sock"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := a.Status(ctx)
		cancel()
		if err == nil && len(st.Groups) == 1 && st.Groups[0].Holder == "a" && st.Groups[0].Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("web never ran on a: %+v %v", st, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // raft retries b every few hundred milliseconds
	for _, n := range []string{"a", "b", "w"} {
		stopAgent(procs[n])
	}

	hclogStamp := regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d|\[(TRACE|DEBUG|INFO|WARN|ERROR)\]`)
	says := map[string]*regexp.Regexp{ // at ERROR
		"a": regexp.MustCompile(`^node b \(.*\) .*: a wrong key on that node\?$`),
		"w": regexp.MustCompile(`^node b \(.*\) .*: a wrong key on that node\?$`),
		"b": regexp.MustCompile(`^our key does not match the cluster's`),
	}
	for _, n := range []string{"a", "b", "w"} {
		found := false
		errors := map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(logs[n].String()), "\n") {
			keys, err := logcheck.RepeatedKeys(line)
			if err != nil {
				t.Errorf("%s: not a log record: %v", n, err)
				continue
			}
			if len(keys) > 0 {
				t.Errorf("%s: record repeats %v: %s", n, keys, line)
			}
			msg, _ := logcheck.Field(line, "msg")
			level, _ := logcheck.Field(line, "level")
			if hclogStamp.MatchString(msg) {
				t.Errorf("%s: hclog's own time stamp or level inside msg: %s", n, line)
			}
			if out, _ := logcheck.Field(line, "line"); strings.Contains(out, "configure arguments") && level != "DEBUG" {
				t.Errorf("%s: the OCF agent's chatter at %s: %s", n, level, line)
			}
			if says[n].MatchString(msg) && level == "ERROR" {
				found = true
			}
			if level == "ERROR" {
				about := msg
				for _, k := range []string{"peer", "raft.peer", "raft.target", "raft.server-id"} {
					if v, ok := logcheck.Field(line, k); ok {
						about += " " + k + "=" + v
					}
				}
				errors[about]++
			}
		}
		if !found {
			t.Errorf("%s never said %s at ERROR", n, says[n])
		}
		for k, c := range errors {
			if c > 1 {
				t.Errorf("%s: %q at ERROR %d times in a few seconds; want once a minute", n, k, c)
			}
		}
	}
}
