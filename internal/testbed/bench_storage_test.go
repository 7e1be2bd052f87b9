package testbed

import (
	"bytes"
	"strings"
	"testing"
)

func TestSummarizeStorageCountsPerFaultAndOverall(t *testing.T) {
	res := StorageBenchResult{Runs: 2, ReplicatedTPS: 800, LocalTPS: 1000, Samples: []StorageRun{
		{Fault: "kill", OK: true, OutageMs: 1000, Parts: map[string]float64{"detect": 180, "mount": 70}},
		{Fault: "kill", OK: true, OutageMs: 3000, Parts: map[string]float64{"detect": 190, "mount": 90}},
		{Fault: "freeze", OK: true, OutageMs: 1500, Lost: 2},
		{Fault: "freeze", OK: false},
	}}
	summarizeStorage(&res, []string{"kill", "freeze"})
	k, f, o := res.Faults[0], res.Faults[1], res.Overall
	if k.Failovers != 2 || k.OutageMedianMs != 1000 || k.OutageP95Ms != 3000 || k.Split["detect"].Median != 180 || k.Split["mount"].P95 != 90 {
		t.Errorf("kill: %+v", k)
	}
	if f.Failovers != 1 || f.Unrecovered != 1 || f.LostTransactions != 2 {
		t.Errorf("freeze: %+v", f)
	}
	if o.Failovers != 3 || o.LostTransactions != 2 || o.OutageMedianMs != 1500 {
		t.Errorf("overall: %+v", o)
	}
	if res.TPSRatio != 0.8 || !res.TargetsMet["tps_ratio_ge_0.7"] || res.TargetsMet["lost_transactions_0"] || res.TargetsMet["failovers_ge_20_per_fault"] {
		t.Errorf("ratio %v, targets %v", res.TPSRatio, res.TargetsMet)
	}
	var b bytes.Buffer
	PrintStorageBench(&b, res)
	for _, want := range []string{"kill     failovers  2  lost 0", "(1 never recovered)", "ratio 0.80", "detect 180/190"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, b.String())
		}
	}
}
