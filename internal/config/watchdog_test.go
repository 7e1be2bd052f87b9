package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"tandem/internal/keyfile"
	"testing"
	"time"
)

func TestWatchdogDefaultsAndWait(t *testing.T) {
	c := mustParse(t, edit(nil, "watchdog: {}\nfence_devices:\n  - {name: self, kind: watchdog, nodes: [db1, db2]}\n"))
	if w := c.Watchdog; w == nil || w.Device != "/dev/watchdog" || w.Timeout.D() != 5*time.Second || w.FixedTimeout {
		t.Fatalf("watchdog defaults: %+v", c.Watchdog)
	}
	if got := c.WatchdogDevice("db1"); got != "/dev/watchdog" {
		t.Errorf("device %q", got)
	}
	// 2 × 5 s + the 180 ms lease + 1 s.
	if got := c.WatchdogFenceWait(); got != 11180*time.Millisecond {
		t.Errorf("fence wait %v", got)
	}
	c = mustParse(t, edit(nil, "watchdog: {node_devices: {db2: /dev/watchdog1}}\n"))
	if c.WatchdogDevice("db1") != "/dev/watchdog" || c.WatchdogDevice("db2") != "/dev/watchdog1" {
		t.Errorf("node devices: %q %q", c.WatchdogDevice("db1"), c.WatchdogDevice("db2"))
	}
	if c := mustParse(t, base); c.Watchdog != nil || c.WatchdogDevice("db1") != "" || c.WatchdogFenceWait() != 0 {
		t.Errorf("no section: %+v", c.Watchdog)
	}
}

func TestWatchdogValidation(t *testing.T) {
	for _, tt := range []struct {
		name, add string
		want      []string
	}{
		{"every mistake", `watchdog:
  device: dev/watchdog
  timeout: 1500ms
  node_devices: {db3: /dev/watchdog1, db1: rel}
fence_devices:
  - {name: self, kind: watchdog, nodes: [db1, db2], agent: fence_dummy}
  - {name: short, kind: watchdog, nodes: db1, timeout: 3s}
`, []string{
			`t.yaml:17: watchdog.device: "dev/watchdog" must be an absolute path`,
			`t.yaml:18: watchdog.timeout: 1.5s: a watchdog device counts whole seconds`,
			`t.yaml:19: watchdog.node_devices.db1: "rel" must be an absolute path`,
			`t.yaml:19: watchdog.node_devices: "db3" is not a data node (nodes are db1, db2)`,
			`t.yaml:21: fence_devices[0].kind: a watchdog device runs nothing and calls nothing: give it only nodes (and timeout, retries)`,
			`t.yaml:22: fence_devices[1].timeout: 3s is not longer than the watchdog fence's wait 4.18s (2 × watchdog.timeout + timing.lease + 1s)`,
		}},
		{"too long", "watchdog: {timeout: 5m}\n", []string{`t.yaml:16: watchdog.timeout: 5m0s is outside 1s to 2m0s`}},
		{"a watchdog fence without the section", "fence_devices:\n  - {name: self, kind: watchdog, nodes: [db1, db2]}\n", []string{
			`t.yaml:17: fence_devices[0].kind: watchdog needs the watchdog section: a node is counted as reset only when it runs one`}},
		{"the watchdog fences for fence: always", "    fence: always\nwatchdog: {timeout: 2s}\nfence_devices:\n  - {name: self, kind: watchdog, nodes: [db1, db2]}\n", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			text := edit(nil, tt.add)
			_, err := Parse("t.yaml", []byte(text))
			if got := problemLines(err); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("config:\n%s\ngot:\n  %s\nwant:\n  %s", text, strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

// --local checks that this node's device exists and is a device (or a
// FIFO, the test bed's stand-in); the other node's is not looked at.
func TestWatchdogCheckHost(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "wd")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	host := StaticHost{"db1", []HostInterface{iface("lo", "127.0.0.1"), iface("eth0", "10.0.0.1")}}
	key, _ := keyfile.Generate()
	if err := keyfile.Write(filepath.Join(dir, "cluster.key"), key, false); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "plain"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, wd string
		want     []string
	}{
		{"a FIFO", "watchdog: {device: DIR/wd}", nil},
		{"a character device", "watchdog: {device: /dev/null}", nil},
		{"another node's device is not checked here", "watchdog: {device: /dev/null, node_devices: {db2: /nonexistent}}", nil},
		{"missing", "watchdog: {device: /dev/null, node_devices: {db1: /nonexistent/watchdog}}", []string{
			`t.yaml:14: watchdog.node_devices.db1: /nonexistent/watchdog does not exist on this machine (db1); a machine without a hardware watchdog can load softdog (modprobe softdog)`}},
		{"a plain file", "watchdog: {device: DIR/plain}", []string{
			`t.yaml:14: watchdog.device: DIR/plain is not a device`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			text := edit(map[int]string{2: "key_file: DIR/cluster.key", 14: "", 15: ""}, tt.wd+"\n")
			c, err := Parse("t.yaml", []byte(strings.ReplaceAll(text, "DIR", dir)))
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.CheckHost(host, "")
			wantProblems(t, "CheckHost", err, tt.want, dir)
		})
	}
}
