package node

import (
	"testing"
	"time"

	"tandem/internal/config"
	"tandem/internal/fence"
)

// A fence device of kind watchdog is built with the configuration's wait
// (2 × watchdog.timeout + timing.lease + 1 s), its status kept by node.
func TestFencerFromConfigWatchdog(t *testing.T) {
	c := newCluster(t, "manual")
	cfg, err := config.Parse("inproc.yaml", []byte(c.yaml+`watchdog: {timeout: 2s}
fence_devices:
  - {name: self-reset, kind: watchdog, nodes: [a, b]}
`))
	if err != nil {
		t.Fatal(err)
	}
	f, err := FencerFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	wd, ok := f.Devices["self-reset"].(*fence.Watchdog)
	if !ok {
		t.Fatalf("device %T, want *fence.Watchdog", f.Devices["self-reset"])
	}
	if want := 2*2*time.Second + cfg.Timing.Lease.D() + time.Second; wd.Wait != want || wd.Wait != cfg.WatchdogFenceWait() {
		t.Fatalf("wait %v, want %v", wd.Wait, want)
	}
	for _, n := range []string{"a", "b"} {
		st := f.Topologies[n].Levels[0][0]
		if st.Plug != n || st.Method != fence.OffStatus || st.Timeout <= wd.Wait {
			t.Errorf("step for %s: %+v", n, st)
		}
	}
}
