package config

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

// base is a small valid configuration; the table below edits its lines.
const base = `cluster: shop
key_file: /etc/tandem/cluster.key
nodes:
  - {name: db1, links: [10.0.0.1]}
  - {name: db2, links: [10.0.0.2]}
witness: {name: arbiter, links: [10.0.0.3]}
timing: {heartbeat_interval: 60ms, node_timeout: 180ms}
api: {socket: /run/tandem/tandem.sock}
events: {retention: 180d}
groups:
  - name: web
    resources:
      - vip: {address: 10.0.0.50/24, interface: eth0}
      - exec: {command: [/bin/web], check: {tcp: "127.0.0.1:80"}}
      - ocf: {agent: heartbeat/Dummy}
`

// edit replaces lines of base (1-based); "" deletes the line, and a
// replacement may hold several lines. add is appended at the end.
func edit(lines map[int]string, add string) string {
	in := strings.Split(strings.TrimSuffix(base, "\n"), "\n")
	var out []string
	for i, l := range in {
		if r, ok := lines[i+1]; ok {
			if r != "" {
				out = append(out, r)
			}
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n") + "\n" + add
}

func problemLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func TestBaseIsValid(t *testing.T) {
	if _, err := Parse("t.yaml", []byte(base)); err != nil {
		t.Fatalf("base config: %v", err)
	}
}

func nodesYAML(n int) string {
	var b strings.Builder
	b.WriteString("nodes:\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  - {name: n%d, links: [10.0.1.%d]}\n", i, i)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

const noWitness = "" // delete the witness line

var validateTests = []struct {
	name  string
	lines map[int]string
	add   string
	want  []string // nil: valid
}{
	// Decoding.
	{"unknown top-level field", nil, "colour: blue\n", []string{
		"t.yaml:16: colour: unknown field (known: cluster, key_file, insecure, state_dir, port, nodes, witness, timing, api, events, notify, groups, volumes, fence_devices, fence_levels, watchdog, two_node, config_mismatch)"}},
	{"unknown nested field", map[int]string{13: "      - vip: {address: 10.0.0.50/24, interface: eth0, mask: 24}"}, "", []string{
		"t.yaml:13: groups[0].resources[0].vip.mask: unknown field (known: address, interface, garp_count, garp_interval)"}},
	{"misspelt field", map[int]string{7: "timing: {heartbeat_intervall: 50ms}"}, "", []string{
		"t.yaml:7: timing.heartbeat_intervall: unknown field (did you mean heartbeat_interval?)"}},
	{"misspelt top-level field", map[int]string{2: "keyfile: /etc/tandem/cluster.key"}, "", []string{
		`t.yaml: key_file: required (create one with "tandem keygen"), unless insecure: true`,
		"t.yaml:2: keyfile: unknown field (did you mean key_file?)"}},
	{"integer forms", nil, "port: 0x1E61\n", nil},
	{"fraction for an integer", nil, "port: 7789.5\n", []string{`t.yaml:16: port: expected a whole number, got "7789.5"`}},
	{"field given twice", map[int]string{2: "key_file: /a\nkey_file: /b"}, "", []string{
		"t.yaml:3: key_file: given twice (first on line 2)"}},
	{"not a number", nil, "port: abc\n", []string{`t.yaml:16: port: expected a whole number, got "abc"`}},
	{"not a boolean", nil, "insecure: maybe\n", []string{`t.yaml:16: insecure: expected true or false, got "maybe"`}},
	{"not a float", map[int]string{7: "timing: {max_clock_drift: lots}"}, "", []string{
		`t.yaml:7: timing.max_clock_drift: expected a number, got "lots"`}},
	{"not a mapping", map[int]string{7: "timing: fast"}, "", []string{`t.yaml:7: timing: expected a mapping, got "fast"`}},
	{"not a list", map[int]string{4: "  - {name: db1, links: 10.0.0.1}"}, "", []string{
		`t.yaml:4: nodes[0].links: expected a list, got "10.0.0.1"`}},
	{"list where a string belongs", map[int]string{1: "cluster: [shop]"}, "", []string{
		`t.yaml:1: cluster: expected a string, got a list`}},
	{"duration without unit", map[int]string{7: "timing: {heartbeat_interval: 50}"}, "", []string{
		`t.yaml:7: timing.heartbeat_interval: "50" has no unit (write e.g. 50ms or 50s)`}},
	{"bad duration", map[int]string{9: "events: {retention: half a year}"}, "", []string{
		`t.yaml:9: events.retention: "half a year" is not a duration (e.g. 150ms, 2s, 10m, 180d)`}},
	{"bad failback", map[int]string{11: "  - name: web\n    failback: sometimes"}, "", []string{
		`t.yaml:12: groups[0].failback: "sometimes" is not auto, manual or delay <duration> (e.g. delay 30s)`}},
	{"prefer as mapping", map[int]string{11: "  - name: web\n    prefer: {db1: 1}"}, "", []string{
		`t.yaml:12: groups[0].prefer: expected a string or a list of strings, got a mapping`}},
	{"nested env value", map[int]string{14: "      - exec: {command: [/bin/web], env: {A: [1]}}"}, "", []string{
		`t.yaml:14: groups[0].resources[1].exec.env.A: expected a plain value, got a list`}},
	{"syntax error", map[int]string{4: "  - {name: db1, links: [10.0.0.1}"}, "", []string{
		`t.yaml:4: YAML syntax: did not find expected ',' or ']'`}},
	{"block mapping syntax error", map[int]string{7: "timing:\n  heartbeat_interval: 50ms\n node_timeout: 150ms"}, "", []string{
		`t.yaml:9: YAML syntax: did not find expected key`}},
	{"scanner syntax error", map[int]string{9: "events: {retention: 180d}: x"}, "", []string{
		`t.yaml:9: YAML syntax: mapping values are not allowed in this context`}},
	{"tab indentation", map[int]string{9: "events:\n\tretention: 180d"}, "", []string{
		`t.yaml:10: YAML syntax: found character that cannot start any token`}},
	{"two documents", nil, "---\ncluster: other\n", []string{
		`t.yaml:16: a second YAML document; the file must hold one`}},

	// Cluster, key, state dir, port.
	{"cluster missing", map[int]string{1: ""}, "", []string{`t.yaml: cluster: required: the cluster's name`}},
	{"cluster invalid", map[int]string{1: "cluster: Shop"}, "", []string{
		`t.yaml:1: cluster: "Shop" is not a valid name (1 to 63 of a-z, 0-9 and -)`}},
	{"cluster too long", map[int]string{1: "cluster: " + strings.Repeat("a", 64)}, "", []string{
		`t.yaml:1: cluster: "` + strings.Repeat("a", 64) + `" is not a valid name (1 to 63 of a-z, 0-9 and -)`}},
	{"key_file missing", map[int]string{2: ""}, "", []string{
		`t.yaml: key_file: required (create one with "tandem keygen"), unless insecure: true`}},
	{"insecure without key", map[int]string{2: "insecure: true"}, "", nil},
	{"insecure with key", nil, "insecure: true\n", []string{
		`t.yaml:16: insecure: insecure: true turns encryption off, but key_file is set; remove one of them`}},
	{"key_file relative", map[int]string{2: "key_file: cluster.key"}, "", []string{
		`t.yaml:2: key_file: "cluster.key" must be an absolute path`}},
	{"state_dir empty", nil, "state_dir: \"\"\n", []string{`t.yaml:16: state_dir: required`}},
	{"state_dir relative", nil, "state_dir: var/lib\n", []string{`t.yaml:16: state_dir: "var/lib" must be an absolute path`}},
	{"port zero", nil, "port: 0\n", []string{`t.yaml:16: port: 0 is not a port (1-65535)`}},
	{"port too big", nil, "port: 70000\n", []string{`t.yaml:16: port: 70000 is not a port (1-65535)`}},

	// Members.
	{"one data node", map[int]string{5: ""}, "", []string{`t.yaml:3: nodes: need 2 to 9 data nodes, got 1`}},
	{"no nodes", map[int]string{3: "", 4: "", 5: "", 11: "  - name: web\n    nodes: db1"}, "", []string{
		`t.yaml: nodes: need 2 to 9 data nodes, got 0`}},
	{"ten data nodes", map[int]string{3: nodesYAML(10), 4: "", 5: "", 6: noWitness}, "", []string{
		`t.yaml:3: nodes: need 2 to 9 data nodes, got 10`}},
	{"two nodes without witness", map[int]string{6: noWitness}, "", []string{
		`t.yaml: witness: two data nodes without a witness need a fence device for every data node (two-node mode, docs/two-node.md); none fences db1 (fence_devices), or add a witness`,
		`t.yaml: witness: two data nodes without a witness need a fence device for every data node (two-node mode, docs/two-node.md); none fences db2 (fence_devices), or add a witness`}},
	{"three nodes without witness", map[int]string{5: "  - {name: db2, links: [10.0.0.2]}\n  - {name: db3, links: [10.0.0.4]}", 6: noWitness}, "", nil},
	{"nine nodes and a witness", map[int]string{3: nodesYAML(9), 4: "", 5: ""}, "", []string{
		`t.yaml:13: witness: 9 data nodes and a witness make 10 voters; at most 9 are allowed`}},
	{"node name missing", map[int]string{4: "  - {links: [10.0.0.1]}"}, "", []string{`t.yaml:4: nodes[0].name: required`}},
	{"node name invalid", map[int]string{4: "  - {name: db_1, links: [10.0.0.1]}"}, "", []string{
		`t.yaml:4: nodes[0].name: "db_1" is not a valid name (1 to 63 of a-z, 0-9 and -)`}},
	{"node name twice", map[int]string{5: "  - {name: db1, links: [10.0.0.2]}"}, "", []string{
		`t.yaml:5: nodes[1].name: "db1" is already the name of nodes[0]`}},
	{"witness named like a node", map[int]string{6: "witness: {name: db2, links: [10.0.0.3]}"}, "", []string{
		`t.yaml:6: witness.name: "db2" is already the name of nodes[1]`}},
	{"no links", map[int]string{4: "  - {name: db1, links: []}"}, "", []string{`t.yaml:4: nodes[0].links: need 1 to 8 links, got 0`}},
	{"links missing", map[int]string{4: "  - {name: db1}"}, "", []string{`t.yaml:4: nodes[0].links: need 1 to 8 links, got 0`}},
	{"nine links", map[int]string{4: "  - {name: db1, links: [10.0.0.1, 10.1.0.1, 10.2.0.1, 10.3.0.1, 10.4.0.1, 10.5.0.1, 10.6.0.1, 10.7.0.1, 10.8.0.1]}"}, "", []string{
		`t.yaml:4: nodes[0].links: need 1 to 8 links, got 9`}},
	{"link not an IP", map[int]string{4: "  - {name: db1, links: [db1.example.com]}"}, "", []string{
		`t.yaml:4: nodes[0].links[0]: "db1.example.com" is not an IP or IP:PORT`}},
	{"link with port 0", map[int]string{4: "  - {name: db1, links: [\"10.0.0.1:0\"]}"}, "", []string{
		`t.yaml:4: nodes[0].links[0]: "10.0.0.1:0" has port 0`}},
	{"link unspecified", map[int]string{4: "  - {name: db1, links: [0.0.0.0]}"}, "", []string{
		`t.yaml:4: nodes[0].links[0]: "0.0.0.0" is not a unicast address`}},
	{"link multicast", map[int]string{4: "  - {name: db1, links: [\"ff02::1\"]}"}, "", []string{
		`t.yaml:4: nodes[0].links[0]: "ff02::1" is not a unicast address`}},
	{"address used twice", map[int]string{5: "  - {name: db2, links: [10.0.0.2, \"10.0.0.1:7789\"]}"}, "", []string{
		`t.yaml:5: nodes[1].links[1]: 10.0.0.1:7789 is already used by nodes[0].links[0]`}},
	{"witness reuses an address", map[int]string{6: "witness: {name: arbiter, links: [10.0.0.2]}"}, "", []string{
		`t.yaml:6: witness.links[0]: 10.0.0.2:7789 is already used by nodes[1].links[0]`}},
	{"same IP other ports", map[int]string{
		4: "  - {name: db1, links: [\"127.0.0.1:7001\"]}",
		5: "  - {name: db2, links: [\"127.0.0.1:7002\"]}",
		6: "witness: {name: arbiter, links: [\"[::1]:7003\", \"[fe80::1%lo]:7003\"]}"}, "", nil},
	{"link lines in block lists", map[int]string{4: "  - name: db1\n    links:\n      - 10.0.0.1\n      - 10.0.0.x"}, "", []string{
		`t.yaml:7: nodes[0].links[1]: "10.0.0.x" is not an IP or IP:PORT`}},

	// Timing.
	{"heartbeat zero", map[int]string{7: "timing: {heartbeat_interval: 0s}"}, "", []string{
		`t.yaml:7: timing.heartbeat_interval: must be at least 1ms, got 0s`}},
	{"heartbeat too fast", map[int]string{7: "timing: {heartbeat_interval: 100us, node_timeout: 1ms}"}, "", []string{
		`t.yaml:7: timing.heartbeat_interval: must be at least 1ms, got 100µs`}},
	{"node timeout below twice heartbeat", map[int]string{7: "timing: {heartbeat_interval: 50ms, node_timeout: 80ms}"}, "", []string{
		`t.yaml:7: timing.node_timeout: 80ms is less than twice heartbeat_interval (50ms): one lost heartbeat would declare a node dead`}},
	{"node timeout zero", map[int]string{7: "timing: {node_timeout: 0s}"}, "", []string{
		`t.yaml:7: timing.node_timeout: must be more than 0, got 0s`}},
	{"lease below node timeout", map[int]string{7: "timing: {lease: 100ms}"}, "", []string{
		`t.yaml:7: timing.lease: 100ms is shorter than node_timeout (180ms): groups would stop on blips the failure detector tolerates`}},
	{"negative lease", map[int]string{7: "timing: {lease: -1s}"}, "", []string{
		`t.yaml:7: timing.lease: must be more than 0, got -1s`}},
	{"raft timeout below node timeout", map[int]string{7: "timing:\n  node_timeout: 400ms\n  raft_timeout: 300ms"}, "", []string{
		`t.yaml:9: timing.raft_timeout: 300ms is shorter than node_timeout (400ms): raft would change leader on blips the failure detector tolerates`}},
	{"drift too big", map[int]string{7: "timing: {max_clock_drift: 0.2}"}, "", []string{
		`t.yaml:7: timing.max_clock_drift: 0.2 is outside 0 to 0.1 (a clock 10 % off is broken, not drifting)`}},
	{"drift negative", map[int]string{7: "timing: {max_clock_drift: -0.01}"}, "", []string{
		`t.yaml:7: timing.max_clock_drift: -0.01 is outside 0 to 0.1 (a clock 10 % off is broken, not drifting)`}},
	{"slow profile", map[int]string{7: "timing: {heartbeat_interval: 200ms, node_timeout: 1s, raft_timeout: 2s, max_clock_drift: 0}"}, "", nil},

	// API and events.
	{"tcp without token", map[int]string{8: "api: {tcp_port: 7790}"}, "", []string{
		`t.yaml:8: api.token_file: required when tcp_port is set (create one with "tandem keygen --token FILE")`}},
	{"tcp with token", map[int]string{8: "api: {tcp_port: 7790, token_file: /etc/tandem/api.token, bind_all: true}"}, "", nil},
	{"tcp on the cluster port", map[int]string{8: "api: {tcp_port: 7789, token_file: /etc/tandem/api.token}"}, "", []string{
		`t.yaml:8: api.tcp_port: 7789 is the cluster port, which raft uses on TCP`}},
	{"tcp port negative", map[int]string{8: "api: {tcp_port: -1}"}, "", []string{
		`t.yaml:8: api.tcp_port: -1 is not a port (0 turns TCP off, or 1-65535)`,
		`t.yaml:8: api.token_file: required when tcp_port is set (create one with "tandem keygen --token FILE")`}},
	{"socket relative", map[int]string{8: "api: {socket: tandem.sock}"}, "", []string{
		`t.yaml:8: api.socket: "tandem.sock" must be an absolute path`}},
	{"token relative", map[int]string{8: "api: {tcp_port: 7790, token_file: api.token}"}, "", []string{
		`t.yaml:8: api.token_file: "api.token" must be an absolute path`}},
	{"retention negative", map[int]string{9: "events: {retention: -1d}"}, "", []string{
		`t.yaml:9: events.retention: must not be negative, got -1d`}},
	{"retention zero keeps for ever", map[int]string{9: "events: {retention: 0s}"}, "", nil},
	{"events file relative", map[int]string{9: "events: {file: events.jsonl}"}, "", []string{
		`t.yaml:9: events.file: "events.jsonl" must be an absolute path`}},

	// Groups.
	{"group name missing", map[int]string{11: "  - resources:", 12: ""}, "", []string{`t.yaml:11: groups[0].name: required`}},
	{"group name invalid", map[int]string{11: "  - name: Web"}, "", []string{
		`t.yaml:11: groups[0].name: "Web" is not a valid name (1 to 63 of a-z, 0-9 and -)`}},
	{"group name twice", nil, "  - name: web\n    resources: [{exec: {command: [/bin/x]}}]\n", []string{
		`t.yaml:16: groups[1].name: "web" is already the name of groups[0]`}},
	{"group node unknown", map[int]string{11: "  - name: web\n    nodes: [db1, db3]"}, "", []string{
		`t.yaml:12: groups[0].nodes[1]: "db3" is not a data node (nodes are db1, db2)`}},
	{"group node is the witness", map[int]string{11: "  - name: web\n    nodes: [db1, arbiter]"}, "", []string{
		`t.yaml:12: groups[0].nodes[1]: "arbiter" is the witness, which never runs resources`}},
	{"group node twice", map[int]string{11: "  - name: web\n    nodes: [db1, db1]"}, "", []string{
		`t.yaml:12: groups[0].nodes[1]: "db1" is listed twice`}},
	{"prefer unknown", map[int]string{11: "  - name: web\n    prefer: db3"}, "", []string{
		`t.yaml:12: groups[0].prefer: "db3" is not a data node (nodes are db1, db2)`}},
	{"prefer the witness", map[int]string{11: "  - name: web\n    prefer: [arbiter]"}, "", []string{
		`t.yaml:12: groups[0].prefer[0]: "arbiter" is the witness, which never runs resources`}},
	{"prefer outside the group's nodes", map[int]string{11: "  - name: web\n    nodes: db1\n    prefer: [db1, db2]"}, "", []string{
		`t.yaml:13: groups[0].prefer[1]: "db2" is not one of this group's nodes (db1)`}},
	{"prefer twice", map[int]string{11: "  - name: web\n    prefer:\n      - db2\n      - db2"}, "", []string{
		`t.yaml:14: groups[0].prefer[1]: "db2" is listed twice`}},
	{"failback delay zero", map[int]string{11: "  - name: web\n    failback: delay 0s"}, "", []string{
		`t.yaml:12: groups[0].failback: delay must be more than 0, got 0s`}},
	{"stickiness negative", map[int]string{11: "  - name: web\n    stickiness: -1"}, "", []string{
		`t.yaml:12: groups[0].stickiness: must not be negative, got -1`}},
	{"max_restarts negative", map[int]string{11: "  - name: web\n    max_restarts: -1"}, "", []string{
		`t.yaml:12: groups[0].max_restarts: must not be negative, got -1`}},
	{"failure_timeout negative", map[int]string{11: "  - name: web\n    failure_timeout: -1m"}, "", []string{
		`t.yaml:12: groups[0].failure_timeout: must not be negative, got -1m0s`}},
	{"zero values allowed", map[int]string{11: "  - name: web\n    stickiness: 0\n    max_restarts: 0\n    failure_timeout: 0s\n    failback: auto"}, "", nil},
	{"no resources", map[int]string{12: "    resources: []", 13: "", 14: "", 15: ""}, "", []string{
		`t.yaml:12: groups[0].resources: a group needs at least one resource`}},
	{"resources missing", map[int]string{12: "", 13: "", 14: "", 15: ""}, "", []string{
		`t.yaml:11: groups[0].resources: a group needs at least one resource`}},

	// Resources.
	{"resource without kind", map[int]string{15: "      - name: nothing"}, "", []string{
		`t.yaml:15: groups[0].resources[2]: give one of vip, exec, ocf, volume, filesystem, nbd_export`}},
	{"resource with two kinds", map[int]string{15: "      - {ocf: {agent: heartbeat/Dummy}, exec: {command: [/bin/x]}}"}, "", []string{
		`t.yaml:15: groups[0].resources[2]: give exactly one of vip, exec, ocf, volume, filesystem, nbd_export, not exec and ocf`}},
	{"resource name invalid", map[int]string{15: "      - {name: My_DB, ocf: {agent: heartbeat/Dummy}}"}, "", []string{
		`t.yaml:15: groups[0].resources[2].name: "My_DB" is not a valid name (1 to 63 of a-z, 0-9 and -)`}},
	{"resource name clashes with a default name", map[int]string{15: "      - {name: vip-0, ocf: {agent: heartbeat/Dummy}}"}, "", []string{
		`t.yaml:15: groups[0].resources[2].name: "vip-0" is already the name of groups[0].resources[0]`}},
	{"resource timeouts zero", map[int]string{15: "      - {ocf: {agent: heartbeat/Dummy}, monitor_interval: 0s, start_timeout: 0s, stop_timeout: 0s, monitor_timeout: 0s}"}, "", []string{
		`t.yaml:15: groups[0].resources[2].monitor_interval: must be more than 0, got 0s`,
		`t.yaml:15: groups[0].resources[2].start_timeout: must be more than 0, got 0s`,
		`t.yaml:15: groups[0].resources[2].stop_timeout: must be more than 0, got 0s`,
		`t.yaml:15: groups[0].resources[2].monitor_timeout: must be more than 0, got 0s`}},

	// vip.
	{"vip address missing", map[int]string{13: "      - vip: {interface: eth0}"}, "", []string{
		`t.yaml:13: groups[0].resources[0].vip.address: required (e.g. 10.0.0.50/24)`}},
	{"vip address bad", map[int]string{13: "      - vip: {address: 10.0.0.300/24, interface: eth0}"}, "", []string{
		`t.yaml:13: groups[0].resources[0].vip.address: "10.0.0.300/24" is not an IP prefix`}},
	{"vip without prefix length", map[int]string{13: "      - vip: {address: 10.0.0.50, interface: eth0}"}, "", []string{
		`t.yaml:13: groups[0].resources[0].vip.address: "10.0.0.50" is not an IP prefix`}},
	{"vip loopback", map[int]string{13: "      - vip: {address: 127.0.0.2/8, interface: lo}"}, "", []string{
		`t.yaml:13: groups[0].resources[0].vip.address: "127.0.0.2/8" is not a unicast address: a loopback address: it never leaves the host`}},
	{"vip network address", map[int]string{13: "      - vip: {address: 10.88.0.0/24, interface: eth0}"}, "", []string{
		`t.yaml:13: groups[0].resources[0].vip.address: "10.88.0.0/24" is not a unicast address: the network address of 10.88.0.0/24`}},
	{"vip broadcast address", map[int]string{13: "      - vip: {address: 10.88.0.255/24, interface: eth0}"}, "", []string{
		`t.yaml:13: groups[0].resources[0].vip.address: "10.88.0.255/24" is not a unicast address: the broadcast address of 10.88.0.0/24`}},
	{"vip limited broadcast", map[int]string{13: "      - vip: {address: 255.255.255.255/32, interface: eth0}"}, "", []string{
		`t.yaml:13: groups[0].resources[0].vip.address: "255.255.255.255/32" is not a unicast address: the limited broadcast address`}},
	{"vip IPv6 link-local", map[int]string{13: "      - vip: {address: \"fe80::5/64\", interface: eth0}"}, "", []string{
		`t.yaml:13: groups[0].resources[0].vip.address: "fe80::5/64" is not a unicast address: a link-local address (169.254.0.0/16, fe80::/10): routers do not forward it, and hosts give it out on their own`}},
	{"vip IPv4 link-local", map[int]string{13: "      - vip: {address: 169.254.10.5/16, interface: eth0}"}, "", []string{
		`t.yaml:13: groups[0].resources[0].vip.address: "169.254.10.5/16" is not a unicast address: a link-local address (169.254.0.0/16, fe80::/10): routers do not forward it, and hosts give it out on their own`}},
	{"vip multicast", map[int]string{13: "      - vip: {address: 224.0.0.18/24, interface: eth0}"}, "", []string{
		`t.yaml:13: groups[0].resources[0].vip.address: "224.0.0.18/24" is not a unicast address: a multicast address`}},
	{"vip unspecified", map[int]string{13: "      - vip: {address: \"::/64\", interface: eth0}"}, "", []string{
		`t.yaml:13: groups[0].resources[0].vip.address: "::/64" is not a unicast address: the unspecified address`}},
	{"vip IPv6 subnet-router anycast", map[int]string{13: "      - vip: {address: \"fd00::/64\", interface: eth0}"}, "", []string{
		`t.yaml:13: groups[0].resources[0].vip.address: "fd00::/64" is not a unicast address: the subnet-router anycast address of fd00::/64 (RFC 4291)`}},
	{"vip reserved", map[int]string{13: "      - vip: {address: 250.0.0.1/24, interface: eth0}"}, "", []string{
		`t.yaml:13: groups[0].resources[0].vip.address: "250.0.0.1/24" is not a unicast address: in the reserved 240.0.0.0/4`}},
	{"vip ends in .0 or .255 of a wider prefix", map[int]string{13: "      - vip: {address: 10.88.1.0/16, interface: eth0}"}, "", nil},
	{"vip /31 and /32 have no broadcast", map[int]string{13: "      - vip: {address: 10.88.0.1/31, interface: eth0}"},
		"  - name: db\n    resources:\n      - vip: {address: 10.88.5.255/32, interface: eth1}\n", nil},
	{"vip IPv6", map[int]string{13: "      - vip: {address: \"fd00::50/64\", interface: eth0}"}, "", nil},
	{"vip is a link address", map[int]string{13: "      - vip: {address: 10.0.0.2/24, interface: eth0}"}, "", []string{
		`t.yaml:13: groups[0].resources[0].vip.address: 10.0.0.2 is a link address of node db2; a floating address must be one no node owns`}},
	{"vip used by two groups", nil, "  - name: db\n    resources:\n      - vip: {address: 10.0.0.50/16, interface: eth1}\n", []string{
		`t.yaml:18: groups[1].resources[0].vip.address: 10.0.0.50 is already used by groups[0].resources[0].vip`}},
	{"vip interface missing", map[int]string{13: "      - vip: {address: 10.0.0.50/24}"}, "", []string{
		`t.yaml:13: groups[0].resources[0].vip.interface: required (e.g. eth0)`}},
	{"vip interface invalid", map[int]string{13: "      - vip: {address: 10.0.0.50/24, interface: eth0/1}"}, "", []string{
		`t.yaml:13: groups[0].resources[0].vip.interface: "eth0/1" is not an interface name`}},
	{"vip interface too long", map[int]string{13: "      - vip: {address: 10.0.0.50/24, interface: enp0s31f6-backup}"}, "", []string{
		`t.yaml:13: groups[0].resources[0].vip.interface: "enp0s31f6-backup" is not an interface name`}},
	{"garp count negative", map[int]string{13: "      - vip: {address: 10.0.0.50/24, interface: eth0, garp_count: -1}"}, "", []string{
		`t.yaml:13: groups[0].resources[0].vip.garp_count: must not be negative, got -1`}},
	{"garp interval zero", map[int]string{13: "      - vip: {address: 10.0.0.50/24, interface: eth0, garp_interval: 0s}"}, "", []string{
		`t.yaml:13: groups[0].resources[0].vip.garp_interval: must be more than 0, got 0s`}},
	{"no garp", map[int]string{13: "      - vip: {address: 10.0.0.50/24, interface: eth0, garp_count: 0, garp_interval: 0s}"}, "", nil},

	// exec.
	{"exec command missing", map[int]string{14: "      - exec: {dir: /srv}"}, "", []string{
		`t.yaml:14: groups[0].resources[1].exec.command: required: a list, the program and its arguments`}},
	{"exec program empty", map[int]string{14: "      - exec: {command: [\"\", x]}"}, "", []string{
		`t.yaml:14: groups[0].resources[1].exec.command[0]: the program must not be empty`}},
	{"exec command a string", map[int]string{14: "      - exec: {command: /bin/web --port 80}"}, "", []string{
		`t.yaml:14: groups[0].resources[1].exec.command: expected a list, got "/bin/web --port 80"`}},
	{"exec dir relative", map[int]string{14: "      - exec: {command: [/bin/web], dir: srv}"}, "", []string{
		`t.yaml:14: groups[0].resources[1].exec.dir: "srv" must be an absolute path`}},
	{"exec env name", map[int]string{14: "      - exec:\n          command: [/bin/web]\n          env:\n            GOOD: 1\n            not-good: 2\n            9LIVES: 3"}, "", []string{
		`t.yaml:18: groups[0].resources[1].exec.env.not-good: not a valid environment variable name (letters, digits and _, not first a digit)`,
		`t.yaml:19: groups[0].resources[1].exec.env.9LIVES: not a valid environment variable name (letters, digits and _, not first a digit)`}},
	{"exec stop signal unknown", map[int]string{14: "      - exec: {command: [/bin/web], stop_signal: STOP}"}, "", []string{
		`t.yaml:14: groups[0].resources[1].exec.stop_signal: "STOP" is not a known signal (one of TERM, INT, QUIT, HUP, KILL, USR1, USR2)`}},
	{"exec stop signal with SIG", map[int]string{14: "      - exec: {command: [/bin/web], stop_signal: SIGINT}"}, "", nil},
	{"check empty", map[int]string{14: "      - exec: {command: [/bin/web], check: {}}"}, "", []string{
		`t.yaml:14: groups[0].resources[1].exec.check: give one of tcp, http, command`}},
	{"check with two probes", map[int]string{14: "      - exec: {command: [/bin/web], check: {tcp: \"127.0.0.1:80\", command: [/bin/true]}}"}, "", []string{
		`t.yaml:14: groups[0].resources[1].exec.check: give exactly one of tcp, http, command, not tcp and command`}},
	{"check tcp without port", map[int]string{14: "      - exec: {command: [/bin/web], check: {tcp: localhost}}"}, "", []string{
		`t.yaml:14: groups[0].resources[1].exec.check.tcp: "localhost" is not HOST:PORT`}},
	{"check tcp bad port", map[int]string{14: "      - exec: {command: [/bin/web], check: {tcp: \"localhost:http\"}}"}, "", []string{
		`t.yaml:14: groups[0].resources[1].exec.check.tcp: "localhost:http" is not HOST:PORT`}},
	{"check http not a URL", map[int]string{14: "      - exec: {command: [/bin/web], check: {http: \"localhost:80/health\"}}"}, "", []string{
		`t.yaml:14: groups[0].resources[1].exec.check.http: "localhost:80/health" is not an http:// or https:// URL`}},
	{"check https", map[int]string{14: "      - exec: {command: [/bin/web], check: {http: \"https://[::1]:8443/health\"}}"}, "", nil},
	{"check command empty program", map[int]string{14: "      - exec: {command: [/bin/web], check: {command: [\"\"]}}"}, "", []string{
		`t.yaml:14: groups[0].resources[1].exec.check.command[0]: the program must not be empty`}},

	// ocf.
	{"ocf agent missing", map[int]string{15: "      - ocf: {params: {a: b}}"}, "", []string{
		`t.yaml:15: groups[0].resources[2].ocf.agent: required: provider/type, e.g. heartbeat/Dummy`}},
	{"ocf agent without provider", map[int]string{15: "      - ocf: {agent: Dummy}"}, "", []string{
		`t.yaml:15: groups[0].resources[2].ocf.agent: "Dummy" is not provider/type (e.g. heartbeat/Dummy)`}},
	{"ocf agent escaping root", map[int]string{15: "      - ocf: {agent: ../../bin/sh}"}, "", []string{
		`t.yaml:15: groups[0].resources[2].ocf.agent: "../../bin/sh" is not provider/type (e.g. heartbeat/Dummy)`}},
	{"ocf root relative", map[int]string{15: "      - ocf: {agent: heartbeat/Dummy, root: ocf}"}, "", []string{
		`t.yaml:15: groups[0].resources[2].ocf.root: "ocf" must be an absolute path`}},
	{"ocf param name", map[int]string{15: "      - ocf: {agent: heartbeat/Dummy, params: {state-file: /tmp/x}}"}, "", []string{
		`t.yaml:15: groups[0].resources[2].ocf.params.state-file: not a valid parameter name (letters, digits and _, not first a digit)`}},
}

func TestValidateRules(t *testing.T) {
	for _, tt := range validateTests {
		t.Run(tt.name, func(t *testing.T) {
			text := edit(tt.lines, tt.add)
			c, err := Parse("t.yaml", []byte(text))
			got := problemLines(err)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("config:\n%s\ngot:\n  %s\nwant:\n  %s", text, strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
			if (c == nil) != (err != nil) {
				t.Errorf("Parse returned config %v with error %v", c != nil, err)
			}
		})
	}
}

// TestManyProblemsAllReported checks that one pass finds every problem, in
// the order of the file.
func TestManyProblemsAllReported(t *testing.T) {
	text := `cluster: Shop
key_file: rel.key
bogus: 1
nodes:
  - name: db1
    links: [10.0.0.1, 10.0.0.1]
  - name: DB2
    links: [10.0.0.x]
timing:
  heartbeat_interval: 50ms
  node_timeout: 60ms
  max_clock_drift: 2
api: {tcp_port: 7790}
groups:
  - name: g
    prefer: [db9]
    failback: sometimes
    resources:
      - vip: {address: 10.0.0.300/24}
      - vip: {address: 10.0.0.5/24, interface: eth0}
        exec: {command: []}
      - ocf: {agent: Dummy, params: {a-b: 1}}
      - exec: {command: [x], stop_signal: FOO, check: {tcp: localhost, http: "ftp://x"}}
`
	want := []string{
		`x.yaml: witness: two data nodes without a witness need a fence device for every data node (two-node mode, docs/two-node.md); none fences db1 (fence_devices), or add a witness`,
		`x.yaml: witness: two data nodes without a witness need a fence device for every data node (two-node mode, docs/two-node.md); none fences DB2 (fence_devices), or add a witness`,
		`x.yaml:1: cluster: "Shop" is not a valid name (1 to 63 of a-z, 0-9 and -)`,
		`x.yaml:2: key_file: "rel.key" must be an absolute path`,
		`x.yaml:3: bogus: unknown field (known: cluster, key_file, insecure, state_dir, port, nodes, witness, timing, api, events, notify, groups, volumes, fence_devices, fence_levels, watchdog, two_node, config_mismatch)`,
		`x.yaml:6: nodes[0].links[1]: 10.0.0.1:7789 is already used by nodes[0].links[0]`,
		`x.yaml:7: nodes[1].name: "DB2" is not a valid name (1 to 63 of a-z, 0-9 and -)`,
		`x.yaml:8: nodes[1].links[0]: "10.0.0.x" is not an IP or IP:PORT`,
		`x.yaml:11: timing.node_timeout: 60ms is less than twice heartbeat_interval (50ms): one lost heartbeat would declare a node dead`,
		`x.yaml:12: timing.max_clock_drift: 2 is outside 0 to 0.1 (a clock 10 % off is broken, not drifting)`,
		`x.yaml:13: api.token_file: required when tcp_port is set (create one with "tandem keygen --token FILE")`,
		`x.yaml:16: groups[0].prefer[0]: "db9" is not a data node (nodes are db1, DB2)`,
		`x.yaml:17: groups[0].failback: "sometimes" is not auto, manual or delay <duration> (e.g. delay 30s)`,
		`x.yaml:19: groups[0].resources[0].vip.address: "10.0.0.300/24" is not an IP prefix`,
		`x.yaml:19: groups[0].resources[0].vip.interface: required (e.g. eth0)`,
		`x.yaml:20: groups[0].resources[1]: give exactly one of vip, exec, ocf, volume, filesystem, nbd_export, not vip and exec`,
		`x.yaml:21: groups[0].resources[1].exec.command: required: a list, the program and its arguments`,
		`x.yaml:22: groups[0].resources[2].ocf.agent: "Dummy" is not provider/type (e.g. heartbeat/Dummy)`,
		`x.yaml:22: groups[0].resources[2].ocf.params.a-b: not a valid parameter name (letters, digits and _, not first a digit)`,
		`x.yaml:23: groups[0].resources[3].exec.stop_signal: "FOO" is not a known signal (one of TERM, INT, QUIT, HUP, KILL, USR1, USR2)`,
		`x.yaml:23: groups[0].resources[3].exec.check: give exactly one of tcp, http, command, not tcp and http`,
		`x.yaml:23: groups[0].resources[3].exec.check.tcp: "localhost" is not HOST:PORT`,
		`x.yaml:23: groups[0].resources[3].exec.check.http: "ftp://x" is not an http:// or https:// URL`,
	}
	_, err := Parse("x.yaml", []byte(text))
	got := problemLines(err)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %d problems:\n  %s\nwant %d:\n  %s", len(got), strings.Join(got, "\n  "), len(want), strings.Join(want, "\n  "))
	}
	if ps := AsProblems(err); len(ps) != len(want) {
		t.Errorf("AsProblems: %d problems, want %d", len(ps), len(want))
	}
	lines := make([]int, 0, len(got))
	for _, p := range AsProblems(err) {
		lines = append(lines, p.Line)
	}
	if !sort.IntsAreSorted(lines) {
		t.Errorf("problems not in file order: lines %v", lines)
	}
}

// A Config built in code validates too; its problems have no file or line.
func TestValidateBuiltInCode(t *testing.T) {
	c := Default()
	c.Cluster = "lab"
	c.Insecure = true
	c.Nodes = []Node{{Name: "a", Links: []string{"127.0.0.1:7001"}}, {Name: "b", Links: []string{"127.0.0.1:7002"}}}
	c.Witness = &Node{Name: "w", Links: []string{"127.0.0.1:7003"}}
	g := DefaultGroup()
	g.Name = "svc"
	r := DefaultResource("exec")
	r.Exec = &Exec{Command: []string{"/bin/sleep", "1000"}, StopSignal: "SIGTERM"}
	g.Resources = []Resource{r}
	c.Groups = []Group{g}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if r := c.Groups[0].Resources[0]; r.Name != "exec-0" || r.Exec.StopSignal != "TERM" {
		t.Errorf("resource after defaults: name %q, stop signal %q", r.Name, r.Exec.StopSignal)
	}
	c.Groups[0].Prefer = StringList{"w"}
	c.Timing.Lease = Duration(DefaultNodeTimeout / 2)
	want := "timing.lease: 90ms is shorter than node_timeout (180ms): groups would stop on blips the failure detector tolerates\n" +
		`groups[0].prefer: "w" is the witness, which never runs resources`
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate:\n%v\nwant:\n%s", err, want)
	}
}
