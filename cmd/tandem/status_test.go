package main

import (
	"strings"
	"testing"
	"time"

	"tandem/internal/node"
	"tandem/internal/state"
)

// Status never lies: the group's state is what its holder last reported,
// qualified when the holder cannot be reached, and a takeover note belongs
// to the holder's current epoch only (seen items 1 and 6).
func TestPrintStatusIsHonest(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := node.Status{Cluster: "c", Node: "w", Role: "witness", Leader: "w", Quorum: true,
		Nodes: []node.NodeStatus{{Name: "n1", Up: true}, {Name: "n2", Up: false}, {Name: "w", Up: true, Self: true}},
		Groups: []node.GroupStatus{
			{Name: "a", Holder: "n1", Epoch: 7, Running: false, Phase: "degraded", PhaseError: "http: monitor: not running",
				Takeover: &state.Takeover{From: "n2", To: "n1", DetectMs: 181, Epoch: 6}},
			{Name: "b", Holder: "n2", Epoch: 3, Running: true, Phase: "running"},
			{Name: "c", Holder: "n1", Epoch: 2, Running: true, Phase: "running", Handover: "n2"},
			{Name: "d", Holder: "n1", Epoch: 9, Running: true, Phase: "running",
				Takeover: &state.Takeover{From: "n2", To: "n1", DetectMs: 180, Epoch: 9}},
		}}
	var b strings.Builder
	printStatus(&b, s, now)
	out := b.String()
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines[f[0]] = l
		}
	}
	for g, want := range map[string][]string{
		"a": {"DEGRADED", "http: monitor: not running"},
		"b": {"UNREACHABLE (last: running)"},
		"c": {"moving", "handing over to n2"},
		"d": {"running", "took over from n2 (detect 180 ms)"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[g], w) {
				t.Errorf("group %s: %q lacks %q\n%s", g, lines[g], w, out)
			}
		}
	}
	if strings.Contains(lines["a"], "detect 181") {
		t.Errorf("an old epoch's takeover shown as the holder's: %q", lines["a"])
	}
}
