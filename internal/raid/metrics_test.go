package raid

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func gauge(t *testing.T, reg *prometheus.Registry, name string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func TestMetricsFollowHealth(t *testing.T) {
	lc := levelCases()[4] // raid5 on 4
	ta := newTestArray(t, lc.co, lc.n, 0, testMemberSize)
	ta.a.Close()
	reg := prometheus.NewRegistry()
	ta.assemble(ta.members(), func(o *Options) { o.Registerer = reg })
	if v, ok := gauge(t, reg, "tandem_raid_degraded"); !ok || v != 0 {
		t.Fatalf("degraded %v %v", v, ok)
	}
	ta.a.Fail("m1")
	if v, _ := gauge(t, reg, "tandem_raid_degraded"); v != 1 {
		t.Fatalf("degraded after fail: %v", v)
	}
	if v, _ := gauge(t, reg, "tandem_raid_members_in_sync"); v != 3 {
		t.Fatalf("in sync after fail: %v", v)
	}
	ta.a.Close()
	if _, ok := gauge(t, reg, "tandem_raid_degraded"); ok {
		t.Fatal("metrics left after Close")
	}
}
