package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, text string) *Config {
	t.Helper()
	c, err := Parse("t.yaml", []byte(text))
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return c
}

func TestParseAppliesDefaults(t *testing.T) {
	c := mustParse(t, base)
	if c.Port != 7789 || c.StateDir != "/var/lib/tandem" || c.Timing != DefaultTiming() {
		t.Errorf("cluster defaults: port %d, state_dir %q, timing %+v", c.Port, c.StateDir, c.Timing)
	}
	if c.API.Socket != "/run/tandem/tandem.sock" || c.API.TCPPort != 0 || c.API.BindAll {
		t.Errorf("api defaults: %+v", c.API)
	}
	if c.Events.File != "/var/lib/tandem/events.jsonl" || c.Events.Retention != Duration(180*Day) {
		t.Errorf("events defaults: %+v", c.Events)
	}
	g := c.Groups[0]
	if !reflect.DeepEqual(g.Nodes, StringList{"db1", "db2"}) || !reflect.DeepEqual(g.Prefer, StringList{"db1"}) {
		t.Errorf("group nodes %v prefer %v, want all data nodes and the first", g.Nodes, g.Prefer)
	}
	dg := DefaultGroup()
	if g.Failback != dg.Failback || g.Stickiness != 0 || g.MaxRestarts != 3 || g.FailureTimeout != Duration(10*time.Minute) {
		t.Errorf("group defaults: %+v", g)
	}
	wantNames := []string{"vip-0", "exec-1", "ocf-2"}
	wantMonitor := []time.Duration{time.Second, 2 * time.Second, 10 * time.Second}
	for i, r := range g.Resources {
		if r.Name != wantNames[i] || r.MonitorInterval.D() != wantMonitor[i] {
			t.Errorf("resources[%d]: name %q monitor %s, want %q %s", i, r.Name, r.MonitorInterval, wantNames[i], wantMonitor[i])
		}
		if r.StartTimeout.D() != 20*time.Second || r.StopTimeout.D() != 20*time.Second || r.MonitorTimeout.D() != 10*time.Second {
			t.Errorf("resources[%d] timeouts: %+v", i, r)
		}
	}
	if v := g.Resources[0].VIP; v.GARPCount != 5 || v.GARPInterval.D() != 100*time.Millisecond {
		t.Errorf("vip defaults: %+v", v)
	}
	if e := g.Resources[1].Exec; e.StopSignal != "TERM" {
		t.Errorf("exec defaults: %+v", e)
	}
	if o := g.Resources[2].OCF; o.Root != "/usr/lib/ocf" {
		t.Errorf("ocf defaults: %+v", o)
	}
}

func TestParseDerivedDefaults(t *testing.T) {
	c := mustParse(t, edit(map[int]string{
		7: "timing: {node_timeout: 300ms}",
		9: "state_dir: /srv/tandem",
	}, ""))
	if c.Timing.Lease.D() != 300*time.Millisecond {
		t.Errorf("lease %s, want node_timeout (300ms)", c.Timing.Lease)
	}
	if c.Events.File != "/srv/tandem/events.jsonl" {
		t.Errorf("events.file %q, want it under state_dir", c.Events.File)
	}
	c = mustParse(t, edit(map[int]string{
		7: "timing: {node_timeout: 300ms, lease: 1s}",
		9: "state_dir: /srv/tandem\nevents: {file: /var/log/tandem.jsonl}",
	}, ""))
	if c.Timing.Lease.D() != time.Second || c.Events.File != "/var/log/tandem.jsonl" {
		t.Errorf("explicit lease %s, events.file %q were overridden", c.Timing.Lease, c.Events.File)
	}
}

// A zero written in the file stays zero: it is a choice, not a gap.
func TestParseKeepsExplicitZeros(t *testing.T) {
	c := mustParse(t, edit(map[int]string{
		11: "  - name: web\n    stickiness: 0\n    max_restarts: 0",
		13: "      - vip: {address: 10.0.0.50/24, interface: eth0, garp_count: 0}",
	}, ""))
	g := c.Groups[0]
	if g.Stickiness != 0 || g.MaxRestarts != 0 || g.Resources[0].VIP.GARPCount != 0 {
		t.Errorf("explicit zeros lost: stickiness %d max_restarts %d garp_count %d", g.Stickiness, g.MaxRestarts, g.Resources[0].VIP.GARPCount)
	}
}

func TestParseAnchorsAndMerge(t *testing.T) {
	c := mustParse(t, edit(map[int]string{
		11: "  - name: web\n    failback: &fb delay 30s",
		14: "      - exec: &web {command: [/bin/web], stop_signal: INT}",
		15: "      - name: web2\n        exec: {<<: *web, command: [/bin/web2]}",
	}, "  - name: db\n    failback: *fb\n    resources: [{exec: {command: [/bin/db]}}]\n"))
	e := c.Groups[0].Resources[2].Exec
	if e.StopSignal != "INT" || e.Command[0] != "/bin/web2" {
		t.Errorf("merged exec %+v, want stop_signal from the anchor and its own command", e)
	}
	if c.Groups[1].Failback != (Failback{FailbackDelay, 30 * time.Second}) {
		t.Errorf("aliased failback %v", c.Groups[1].Failback)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, text := range []string{"", "# nothing yet\n", "---\n"} {
		_, err := Parse("e.yaml", []byte(text))
		want := "e.yaml: cluster: required: the cluster's name\n" +
			`e.yaml: key_file: required (create one with "tandem keygen"), unless insecure: true` + "\n" +
			"e.yaml: nodes: need 2 to 9 data nodes, got 0"
		if err == nil || err.Error() != want {
			t.Errorf("Parse(%q):\n%v\nwant:\n%s", text, err, want)
		}
	}
	if _, err := Parse("e.yaml", []byte("- a\n- b\n")); err == nil || !strings.HasPrefix(err.Error(), "e.yaml:1: expected a mapping, got a list") {
		t.Errorf("a list as the document: %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tandem.yaml")
	if err := os.WriteFile(path, []byte(edit(map[int]string{1: "cluster: Bad"}, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if want := path + `:1: cluster: "Bad" is not a valid name (1 to 63 of a-z, 0-9 and -)`; err == nil || err.Error() != want {
		t.Errorf("Load: %v\nwant %s", err, want)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, fs.ErrNotExist) || AsProblems(err) != nil {
		t.Errorf("Load(missing): %v, want a plain not-exist error", err)
	}
	os.WriteFile(path, []byte(base), 0o644)
	if c, err := Load(path); err != nil || c.Cluster != "shop" {
		t.Errorf("Load(valid) = %v, %v", c, err)
	}
}

func TestHelpers(t *testing.T) {
	c := mustParse(t, edit(map[int]string{
		5: "  - {name: db2, links: [10.0.0.2, \"[fd00::2]:9000\"]}",
	}, "  - name: db\n    resources: [{exec: {command: [/bin/db]}}]\n"))
	var names []string
	for _, n := range c.Voters() {
		names = append(names, n.Name)
	}
	if strings.Join(names, ",") != "db1,db2,arbiter" {
		t.Errorf("Voters = %v", names)
	}
	if n, ok := c.NodeByName("arbiter"); !ok || n.Links[0] != "10.0.0.3" {
		t.Errorf("NodeByName(arbiter) = %v, %v", n, ok)
	}
	if _, ok := c.NodeByName("db9"); ok {
		t.Error("NodeByName(db9) found a node")
	}
	if !c.IsWitness("arbiter") || c.IsWitness("db1") || c.IsWitness("nope") {
		t.Error("IsWitness is wrong")
	}
	db2, _ := c.NodeByName("db2")
	addrs, err := c.LinkAddrs(db2)
	want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:7789"), netip.MustParseAddrPort("[fd00::2]:9000")}
	if err != nil || !reflect.DeepEqual(addrs, want) {
		t.Errorf("LinkAddrs = %v, %v; want %v", addrs, err, want)
	}
	if _, err := c.LinkAddrs(Node{Name: "x", Links: []string{"nope"}}); err == nil ||
		err.Error() != `config: node x: links[0]: "nope" is not an IP or IP:PORT` {
		t.Errorf("LinkAddrs(bad) error: %v", err)
	}
	if g, ok := c.GroupByName("db"); !ok || g.Resources[0].Name != "exec-0" {
		t.Errorf("GroupByName(db) = %+v, %v", g, ok)
	}
	if _, ok := c.GroupByName("nope"); ok {
		t.Error("GroupByName(nope) found a group")
	}
	if s := c.Summary(); s != "2 nodes, witness arbiter, 2 groups" {
		t.Errorf("Summary = %q", s)
	}
	three := mustParse(t, edit(map[int]string{5: "  - {name: db2, links: [10.0.0.2]}\n  - {name: db3, links: [10.0.0.4]}", 6: ""}, ""))
	if s := three.Summary(); s != "3 nodes, no witness, 1 group" {
		t.Errorf("Summary = %q", s)
	}
}

func TestExampleValidates(t *testing.T) {
	c, err := Parse("example.yaml", []byte(Example))
	if err != nil {
		t.Fatalf("the example does not validate:\n%v", err)
	}
	if c.Summary() != "2 nodes, witness arbiter, 2 groups" {
		t.Errorf("example summary %q", c.Summary())
	}
	if !strings.HasPrefix(Example, "#") {
		t.Error("the example should open with a comment")
	}
}

// The digest covers what must agree (a VIP) and not what may differ per
// machine (state_dir, api).
func TestDigestCoversWhatMustAgree(t *testing.T) {
	parse := func(y string) *Config {
		t.Helper()
		c, err := Parse("t.yaml", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	base := `cluster: c
insecure: true
nodes: [{name: a, links: [10.0.0.1]}, {name: b, links: [10.0.0.2]}]
witness: {name: w, links: [10.0.0.3]}
groups: [{name: web, resources: [{vip: {address: %s/24, interface: eth0}}]}]
`
	a := parse(fmt.Sprintf(base, "10.0.0.50"))
	b := parse(fmt.Sprintf(base, "10.0.0.51"))
	if a.Digest() == b.Digest() {
		t.Fatal("configurations with different VIPs have one digest")
	}
	c := parse(fmt.Sprintf(base, "10.0.0.50") + "state_dir: /srv/tandem\napi: {socket: /run/x.sock}\n")
	if a.Digest() != c.Digest() {
		t.Fatal("state_dir and api must not change the digest")
	}
}

// The example's timing comment calls its values the defaults: they are
// (it said so of 50ms / 150ms while the defaults were 60ms / 180ms), and the
// detection time it quotes is the default node_timeout.
func TestExampleTimingIsTheDefaultItSays(t *testing.T) {
	c, err := Parse("example.yaml", []byte(Example))
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultTiming()
	if c.Timing.HeartbeatInterval != d.HeartbeatInterval || c.Timing.NodeTimeout != d.NodeTimeout || c.Timing.Lease != d.Lease {
		t.Errorf("example timing %s / %s / lease %s, defaults %s / %s / lease %s",
			c.Timing.HeartbeatInterval, c.Timing.NodeTimeout, c.Timing.Lease, d.HeartbeatInterval, d.NodeTimeout, d.Lease)
	}
	for _, want := range []string{
		"# The default profile, written out: a dead node is detected within " + strings.TrimSuffix(d.NodeTimeout.D().String(), "ms") + " ms",
		"# lease: " + d.Lease.D().String() + " ",
	} {
		if !strings.Contains(Example, want) {
			t.Errorf("the example's timing comment does not say %q", want)
		}
	}
}
