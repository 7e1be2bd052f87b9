package drill

import (
	"strings"
	"testing"

	"tandem/internal/heartbeat"
	"tandem/internal/node"
	"tandem/internal/state"
	"tandem/internal/volume"
)

// healthy is a pair with a witness, group db running on a, b in sync,
// as the witness sees it.
func healthy() node.Status {
	return node.Status{
		Cluster: "shop", Node: "w", Role: "witness", Leader: "w", Quorum: true, Config: "c1",
		Nodes: []node.NodeStatus{
			{Name: "a", Role: "node", Up: true, Config: "c1", Links: []heartbeat.LinkStatus{{Index: 0, Up: true}}},
			{Name: "b", Role: "node", Up: true, Config: "c1", Links: []heartbeat.LinkStatus{{Index: 0, Up: true}, {Index: 1, Up: true}}},
			{Name: "w", Role: "witness", Up: true, Self: true},
		},
		Groups: []node.GroupStatus{{Name: "db", Holder: "a", Epoch: 3, Running: true, Phase: "running"}},
		Volumes: []node.VolumeStatus{{Name: "pg", Group: "db", Replicas: map[string]state.Replica{
			"a": {Disk: state.DiskUpToDate, Epoch: 3, By: "a"}, "b": {Disk: state.DiskUpToDate, Epoch: 3, By: "a"}}}},
	}
}

func TestPrecheckHealthyPlansTheSwitch(t *testing.T) {
	c := Precheck(healthy(), "db", "")
	if !c.OK() || c.Plan.From != "a" || c.Plan.To != "b" || len(c.Plan.Volumes) != 1 || len(c.Warnings) != 0 {
		t.Fatalf("healthy pair: %+v", c)
	}
}

// Each thing that makes a takeover unsafe or unlikely to work refuses the
// drill, with a reason that names it.
func TestPrecheckRefuses(t *testing.T) {
	cases := []struct {
		name   string
		to     string
		change func(s *node.Status)
		want   string
	}{
		{"no such group", "", func(s *node.Status) { s.Groups[0].Name = "other" }, `no group "db" (groups: other)`},
		{"no quorum", "", func(s *node.Status) { s.Quorum, s.Leader = false, "" }, "no quorum"},
		{"maintenance", "", func(s *node.Status) { s.Maintenance = true }, "maintenance mode"},
		{"group stopped", "", func(s *node.Status) { s.Groups[0].Holder, s.Groups[0].Running = "", false }, "runs nowhere"},
		{"group degraded", "", func(s *node.Status) { s.Groups[0].Phase, s.Groups[0].Running = "degraded", false }, `not running on a (phase "degraded"`},
		{"group moving", "", func(s *node.Status) { s.Groups[0].Handover = "b" }, "already moving to b"},
		{"group blocked", "", func(s *node.Status) { s.Groups[0].Blocked = "fatal" }, "blocked (fatal)"},
		{"standby down", "", func(s *node.Status) { s.Nodes[1].Up = false }, "standby b: down as w sees it"},
		{"standby in standby", "", func(s *node.Status) { s.Nodes[1].Standby = true }, "standby b: in standby"},
		{"standby leaving", "", func(s *node.Status) { s.Nodes[1].Leaving = true }, "shutting down"},
		{"standby other config", "", func(s *node.Status) { s.Nodes[1].Config, s.Nodes[1].ConfigDiffers = "c2", true }, "another configuration"},
		{"standby banned", "", func(s *node.Status) {
			s.Groups[0].Banned, s.Groups[0].Failures = []string{"b"}, map[string]int{"b": 3}
		}, "banned for group db"},
		{"standby failed lately", "", func(s *node.Status) { s.Groups[0].Failures = map[string]int{"b": 1} }, "1 recent failure(s)"},
		{"replica outdated", "", func(s *node.Status) {
			s.Volumes[0].Replicas["b"] = state.Replica{Disk: state.DiskOutdated, Epoch: 3, By: "a"}
		}, "volume pg: b's replica is Outdated (recorded by a at epoch 3): the standby is not in sync"},
		{"replica never reported", "", func(s *node.Status) { delete(s.Volumes[0].Replicas, "b") }, "never reported in sync"},
		{"target is the witness", "w", func(s *node.Status) {}, "w is the witness"},
		{"target is the holder", "a", func(s *node.Status) {}, "already runs on a"},
		{"target unknown", "zz", func(s *node.Status) {}, `"zz" is not a member`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := healthy()
			tc.change(&s)
			c := Precheck(s, "db", tc.to)
			if c.OK() || !strings.Contains(strings.Join(c.Refusals, "\n"), tc.want) {
				t.Fatalf("refusals %q, want one with %q", c.Refusals, tc.want)
			}
		})
	}
}

// Seen from a node with a replica, the live link counts too: a replica the
// cluster still records UpToDate is not in sync once its link is down or
// a resync runs.
func TestPrecheckLocalReplicationLink(t *testing.T) {
	local := func(v volume.Status) node.Status {
		s := healthy()
		s.Node = "a"
		s.Volumes[0].Local = &v
		return s
	}
	ok := volume.Status{Connection: "Connected", Disk: state.DiskUpToDate, PeerDisk: state.DiskUpToDate}
	if c := Precheck(local(ok), "db", ""); !c.OK() {
		t.Fatalf("connected and in sync: %v", c.Refusals)
	}
	for want, v := range map[string]volume.Status{
		"replication link is Connecting":    {Connection: "Connecting", Disk: state.DiskUpToDate},
		"a resync is under way (source":     {Connection: "Connected", Disk: state.DiskUpToDate, PeerDisk: "Inconsistent", Sync: "source", ResyncPct: 40},
		"4096 bytes are out of sync":        {Connection: "Connected", Disk: state.DiskUpToDate, PeerDisk: state.DiskUpToDate, OutOfSync: 4096},
		"b's disk is Outdated as a sees it": {Connection: "Connected", Disk: state.DiskUpToDate, PeerDisk: state.DiskOutdated},
	} {
		c := Precheck(local(v), "db", "")
		if c.OK() || !strings.Contains(strings.Join(c.Refusals, "\n"), want) {
			t.Errorf("%+v: refusals %q, want %q", v, c.Refusals, want)
		}
	}
}

func TestPrecheckWarnsWithoutRefusing(t *testing.T) {
	s := healthy()
	s.Nodes[1].Links[1].Up = false
	s.Groups[0].Failures = map[string]int{"a": 2}
	c := Precheck(s, "db", "")
	if !c.OK() || len(c.Warnings) != 2 {
		t.Fatalf("a link down and failures on the holder warn only: %+v", c)
	}
}
