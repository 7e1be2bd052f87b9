package e2e

import (
	"testing"

	"tandem/internal/testbed"
)

// The failover benchmark's machinery, once per fault kind, so that
// `tandem bench failover` does not rot between the on-demand runs: tandem
// must never answer from two nodes, keepalived must (its VIP stays on a
// killed node's interface, and a partition makes two masters).
func TestBenchSmoke(t *testing.T) {
	needRoot(t)
	res, err := testbed.RunBench(t.Context(), testbed.BenchOptions{Binary: binary, Runs: 1,
		Faults: []string{"kill", "partition"}, NoDefaultProfile: true, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Faults {
		t.Logf("%s: tandem %.0f ms, keepalived %.0f ms, split brain tandem %v keepalived %v",
			f.Fault, f.TandemMedianMs, f.KeepalivedMedianMs, f.TandemSplitBrain, f.KeepalivedSplitBrain)
		if f.TandemSplitBrain {
			t.Errorf("%s: tandem answered from two nodes: %v", f.Fault, f.Tandem.Why)
		}
		if !f.KeepalivedSplitBrain {
			t.Errorf("%s: keepalived showed no split brain; the bed no longer sees what it must", f.Fault)
		}
		if f.Tandem.Unrecovered+f.Keepalived.Unrecovered > 0 {
			t.Errorf("%s: a system did not recover: %+v", f.Fault, f)
		}
	}
}
