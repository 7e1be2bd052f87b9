package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Each fence mistake is reported at its line, all at once.
func TestFenceValidation(t *testing.T) {
	for _, tt := range []struct {
		name string
		add  string
		want []string
	}{
		{"ipmi and levels", `fence_devices:
  - {name: bmc-db2, kind: ipmi, nodes: db2, params: {ipaddr: 10.0.9.2, login: admin}, secret_files: {passwd: /etc/tandem/pw}}
  - {name: pdu, kind: agent, agent: fence_apc_snmp, nodes: [db1, db2], plugs: {db1: "1", db2: "2"}}
  - {name: own, kind: exec, agent: /usr/local/bin/fence-own, nodes: db1, method: reboot}
  - {name: cloud, kind: webhook, url: "https://api.example/fence", token_file: /etc/tandem/tok, nodes: db1}
fence_levels:
  - {node: db2, devices: bmc-db2}
  - {node: db2, devices: [pdu]}
`, nil},
		{"every mistake", `fence_devices:
  - name: a
    kind: agent
    agent: ipmilan
    nodes: []
  - name: b
    kind: ipmi
    nodes: [db3]
    plugs: {db1: "1"}
    params: {passwd: x, plug: "2"}
    secret_files: {login: rel/path}
    method: cycle
    timeout: 0s
    retries: 11
  - {name: c, kind: pdu, nodes: db1}
  - {name: d, kind: webhook, url: "http://h.example/x", nodes: db1}
fence_levels:
  - {node: db1, devices: [b, nope]}
  - {node: arbiter, devices: []}
`, []string{
			`t.yaml:19: fence_devices[0].agent: "ipmilan" is not a fence agent's name (fence_…, as in /usr/sbin; kind exec runs a program of your own)`,
			`t.yaml:20: fence_devices[0].nodes: required: the data nodes this device can fence`,
			`t.yaml:23: fence_devices[1].nodes[0]: "db3" is not a data node (nodes are db1, db2)`,
			`t.yaml:24: fence_devices[1].plugs: "db1" has a plug but is not in this device's nodes`,
			`t.yaml:25: fence_devices[1].params: kind ipmi needs params.ip (or ipaddr): the BMC's address`,
			`t.yaml:25: fence_devices[1].params.passwd: a secret in the configuration would be in every copy of it; put it in a file and name it in secret_files`,
			`t.yaml:25: fence_devices[1].params.plug: set by tandem for each action and node; use plugs for the plug`,
			`t.yaml:26: fence_devices[1].secret_files.login: "rel/path" must be an absolute path`,
			`t.yaml:27: fence_devices[1].method: "cycle" is not off or reboot`,
			`t.yaml:28: fence_devices[1].timeout: must be more than 0, got 0s`,
			`t.yaml:29: fence_devices[1].retries: 11 is outside 0 to 10`,
			`t.yaml:30: fence_devices[2].kind: "pdu" is not agent, ipmi, exec, webhook or watchdog`,
			`t.yaml:31: fence_devices[3].url: "http://h.example/x": a fence request must travel over https`,
			`t.yaml:33: fence_levels[0].devices[0]: "b" does not fence db1 (its nodes: db3)`,
			`t.yaml:33: fence_levels[0].devices[1]: "nope" is not a fence device`,
			`t.yaml:34: fence_levels[1].node: "arbiter" is the witness, which never runs resources`,
			`t.yaml:34: fence_levels[1].devices: required: the devices that must all confirm`,
		}},
		{"group fence", "    fence: sometimes\n", []string{
			`t.yaml:16: groups[0].fence: "sometimes" is not always, when-needed or never`}},
		{"always without a device for a node", `    fence: always
fence_devices:
  - {name: p2, kind: agent, agent: fence_dummy, nodes: [db2]}
`, []string{`t.yaml:16: groups[0].fence: always needs a fence device for every data node; none fences db1 (fence_devices)`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			text := edit(nil, tt.add)
			_, err := Parse("t.yaml", []byte(text))
			got := problemLines(err)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("config:\n%s\ngot:\n  %s\nwant:\n  %s", text, strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestFenceDefaults(t *testing.T) {
	c := mustParse(t, edit(nil, `fence_devices:
  - {name: p1, kind: agent, agent: fence_dummy, nodes: [db1, db2]}
  - {name: p2, kind: agent, agent: fence_dummy, nodes: [db2]}
fence_levels:
  - {node: db1, devices: [p1]}
`))
	if c.Groups[0].Fence != FenceWhenNeeded {
		t.Errorf("group fence default %q", c.Groups[0].Fence)
	}
	d := c.FenceDevices[0]
	if d.Method != FenceMethodOff || d.Retries != 2 || d.Timeout.D().Seconds() != 30 {
		t.Errorf("device defaults %+v", d)
	}
	// db1 has a level; db2 gets one level per device, in file order.
	if got := c.FenceLevelsOf("db1"); len(got) != 1 || !slices.Equal(got[0], []string{"p1"}) {
		t.Errorf("db1 levels %v", got)
	}
	if got := c.FenceLevelsOf("db2"); len(got) != 2 || got[0][0] != "p1" || got[1][0] != "p2" {
		t.Errorf("db2 levels %v", got)
	}
}

// On the machine: an unknown agent, a missing secret file, a secret
// readable by others.
func TestFenceLocalChecks(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "pw")
	os.WriteFile(open, []byte("pw\n"), 0o644)
	c := mustParse(t, edit(nil, `fence_devices:
  - {name: a, kind: agent, agent: fence_nosuchagent, nodes: db1}
  - {name: b, kind: ipmi, nodes: db2, params: {ipaddr: 10.0.9.2}, secret_files: {passwd: `+filepath.Join(dir, "missing")+`, login: `+open+`}}
  - {name: c, kind: exec, agent: /nonexistent/fence, nodes: db1}
`))
	var k checker
	k.src = c.src
	k.localFence(c)
	got := strings.Join(problemLines(k.probs.errOrNil()), "\n")
	for _, want := range []string{
		"t.yaml:17: fence_devices[0].agent: fence_nosuchagent not found here (Debian package fence-agents)",
		"t.yaml:18: fence_devices[1].secret_files.passwd: ",
		"t.yaml:18: fence_devices[1].secret_files.login: ",
		"t.yaml:19: fence_devices[2].agent: /nonexistent/fence cannot be run here",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("local problems lack %q:\n%s", want, got)
		}
	}
}
