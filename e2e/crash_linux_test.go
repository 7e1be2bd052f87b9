package e2e

import (
	"testing"
	"time"

	"tandem/internal/events"
	"tandem/internal/testbed"
)

// CTS: FlipTest/ComponentFail analogue — the active node's software dies.
func TestPrimaryCrash(t *testing.T) {
	r := startCluster(t, testbed.Spec{})
	f := r.bed.Kill("node1")
	r.failedOver("web", "node2", f)
	tk := r.waitEvent("node2", f.At, 5*time.Second, testbed.Kind(events.Takeover, "web"), "node2's takeover event")
	t.Logf("takeover: detect %v decide %v start %v ms", tk.Attrs["detect_ms"], tk.Attrs["decide_ms"], tk.Attrs["start_ms"])
	// node1's VIP is still configured on its interface: only the kernel
	// lease keeps it silent. Watch a while.
	r.watchQuiet("web", "node2", f.At.Add(maxFailover), 500*time.Millisecond, 100*time.Millisecond)
}
