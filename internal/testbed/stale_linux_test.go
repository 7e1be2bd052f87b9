package testbed

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"tandem/internal/netutil"
)

// What a crashed run left behind — a namespace with a process in it and a
// work directory, named after a pid that no longer runs — goes; a live
// run's namespace stays.
func TestRemoveStaleCleansUpDeadRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	const base = "tbedstale"    // not "ttb…": a concurrent bed would take it for its own leftovers
	dead := base + "999999999x" // no such pid
	live := base + strconv.Itoa(os.Getpid()) + "x"
	deadNS, err := netutil.NewNS(dead + "-node1")
	if err != nil {
		t.Fatal(err)
	}
	liveNS, err := netutil.NewNS(live + "-node1")
	if err != nil {
		deadNS.Delete()
		t.Fatal(err)
	}
	t.Cleanup(func() { killNamespace(deadNS.Path()); deadNS.Delete(); liveNS.Delete() })
	sleeper := deadNS.Command(t.Context(), "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { sleeper.Wait(); close(done) }()
	// `ip netns exec` enters the namespace after Start returns: wait until
	// sleep runs in it, or RemoveStale may look before anything is there
	// (and the namespace, deleted under ip's open handle, outlive it).
	inNS := func() bool {
		var ns, proc syscall.Stat_t
		if syscall.Stat(deadNS.Path(), &ns) != nil || syscall.Stat("/proc/"+strconv.Itoa(sleeper.Process.Pid)+"/ns/net", &proc) != nil {
			return false
		}
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(sleeper.Process.Pid) + "/comm")
		return ns.Ino == proc.Ino && string(comm) == "sleep\n"
	}
	for deadline := time.Now().Add(5 * time.Second); !inNS(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("sleep did not start in the namespace")
		}
	}
	dir := filepath.Join(os.TempDir(), dead+"-work")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	removed := RemoveStale(base)
	t.Logf("removed %v", removed)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the process in the stale namespace still runs")
	}
	if _, err := os.Stat(deadNS.Path()); !os.IsNotExist(err) {
		t.Errorf("stale namespace still there: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("stale work directory still there: %v", err)
	}
	if _, err := os.Stat(liveNS.Path()); err != nil {
		t.Errorf("a live run's namespace was removed: %v", err)
	}
}
