package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// twoNodeDevices fence both nodes of base.
const twoNodeDevices = `fence_devices:
  - {name: bmc1, kind: ipmi, nodes: db1, params: {ipaddr: 10.0.9.1, login: admin}, secret_files: {passwd: /etc/tandem/pw}}
  - {name: bmc2, kind: ipmi, nodes: db2, params: {ipaddr: 10.0.9.2, login: admin}, secret_files: {passwd: /etc/tandem/pw}}
`

// Two-node mode: two data nodes without a witness, allowed only with a
// fence device for each; its own mistakes are reported at their lines.
func TestTwoNodeValidation(t *testing.T) {
	for _, tt := range []struct {
		name  string
		lines map[int]string
		add   string
		want  []string
	}{
		{"fenced pair", map[int]string{6: noWitness}, twoNodeDevices, nil},
		{"fenced pair, tuned", map[int]string{6: noWitness}, twoNodeDevices + "two_node: {fence_delay: 400ms, preferred: db2}\n", nil},
		{"one node without a device", map[int]string{6: noWitness}, `fence_devices:
  - {name: bmc2, kind: ipmi, nodes: db2, params: {ipaddr: 10.0.9.2, login: admin}, secret_files: {passwd: /etc/tandem/pw}}
`, []string{`t.yaml: witness: two data nodes without a witness need a fence device for every data node (two-node mode, docs/two-node.md); none fences db1 (fence_devices), or add a witness`}},
		{"two_node with a witness", nil, "two_node: {fence_delay: 3s}\n", []string{
			`t.yaml:16: two_node: only for two data nodes without a witness (this cluster has 2 data nodes and a witness)`}},
		{"mistakes", map[int]string{6: noWitness, 11: "  - name: web\n    fence: never"}, twoNodeDevices +
			"  - {name: wd, kind: watchdog, nodes: [db1, db2], timeout: 30s}\nwatchdog: {timeout: 5s}\ntwo_node: {fence_delay: 150ms, preferred: arbiter}\n", []string{
			`t.yaml:11: groups[0].fence: never is not possible in two-node mode: every takeover from the lost peer fences it first`,
			`t.yaml:19: fence_devices[2].kind: watchdog cannot fence in two-node mode: a node cut off from its peer keeps its lease there, so it keeps feeding its watchdog and is never reset`,
			`t.yaml:21: two_node.fence_delay: 150ms is not longer than timing.node_timeout (180ms): the two nodes can notice the loss that far apart, and both would fence`,
			`t.yaml:21: two_node.preferred: "arbiter" is not a data node (nodes are db1, db2)`}},
		{"delay out of range", map[int]string{6: noWitness}, twoNodeDevices + "two_node: {fence_delay: 2m}\n", []string{
			`t.yaml:18: two_node.fence_delay: 2m0s is outside 100ms to 1m0s`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.yaml", []byte(edit(tt.lines, tt.add)))
			got := problemLines(err)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
			if err == nil && (!c.IsTwoNode() || c.TwoNodeSettings().Preferred == "") {
				t.Fatalf("IsTwoNode %v, settings %+v", c.IsTwoNode(), c.TwoNodeSettings())
			}
		})
	}
	c, err := Parse("t.yaml", []byte(edit(map[int]string{6: noWitness}, twoNodeDevices)))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Summary(); s != "2 nodes, no witness: two-node mode, fenced, 1 group" {
		t.Fatalf("summary %q", s)
	}
	if s := c.TwoNodeSettings(); s.FenceDelay.D() != 2*time.Second || s.Preferred != "db1" {
		t.Fatalf("defaults: %+v", s)
	}
}
