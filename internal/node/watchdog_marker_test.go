package node

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/clock"
	"tandem/internal/events"
	"tandem/internal/heartbeat"
	"tandem/internal/logcheck"
	"tandem/internal/state"
	"tandem/internal/watchdog"
)

// testBoot points bootIDFile at a file of its own holding id; reboot
// rewrites it. Set before any agent starts: agents read the path.
func testBoot(t *testing.T, id string) (reboot func(id string)) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "boot_id")
	write := func(id string) {
		if err := os.WriteFile(f, []byte(id+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(id)
	old := bootIDFile
	bootIDFile = f
	t.Cleanup(func() { bootIDFile = old })
	return write
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func TestHeldMarker(t *testing.T) {
	reboot := testBoot(t, "8d2e-boot-1")
	marker := heldMarkerFile(t.TempDir())
	if err := checkHeldMarker(marker, 5*time.Second); err != nil {
		t.Fatalf("no marker: %v, want a start", err)
	}
	if err := writeHeldMarker(marker); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(marker); string(b) != "8d2e-boot-1\n" {
		t.Fatalf("marker holds %q, want this boot's id", b)
	}
	if ents, err := os.ReadDir(filepath.Dir(marker)); err != nil || len(ents) != 1 {
		t.Errorf("the marker's directory holds %v (%v), want the marker alone: a temporary file left?", ents, err)
	}

	err := checkHeldMarker(marker, 5*time.Second)
	if !errors.Is(err, errHeldMarker) {
		t.Fatalf("the marker of this boot: %v, want the refusal", err)
	}
	for _, want := range []string{marker, "within 5s", "reboot", "remove " + marker, "docs/fencing.md"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not say %q: %v", want, err)
		}
	}
	if !exists(t, marker) {
		t.Fatal("the refusal removed the marker")
	}
	if err := checkHeldMarker(marker, 5*time.Second); !errors.Is(err, errHeldMarker) {
		t.Fatalf("a second start of the same boot: %v, want the refusal again", err)
	}

	reboot("8d2e-boot-2")
	if err := checkHeldMarker(marker, 5*time.Second); err != nil {
		t.Fatalf("the marker of another boot: %v, want a start", err)
	}
	if exists(t, marker) {
		t.Fatal("the marker of another boot is left")
	}

	// A boot that cannot be named refuses rather than guesses.
	if err := writeHeldMarker(marker); err != nil {
		t.Fatal(err)
	}
	bootIDFile = filepath.Join(t.TempDir(), "missing")
	if err := checkHeldMarker(marker, 5*time.Second); err == nil || errors.Is(err, errHeldMarker) {
		t.Fatalf("a marker and no boot id: %v, want an error reading the boot id", err)
	}
}

// testNodeWatchdog is a nodeWatchdog of node a on a fake clock, armed (a
// 1 s in-memory twin) and not feeding; its marker is in a directory of its
// own.
func testNodeWatchdog(t *testing.T) (*nodeWatchdog, *watchdog.Memory, *clock.Fake) {
	t.Helper()
	testBoot(t, "boot-1")
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	m := &watchdog.Memory{Clock: clk}
	log, _ := logcheck.New(t, slog.LevelDebug)
	w := &nodeWatchdog{wd: m, device: "/dev/watchdog", self: "a", clk: clk, log: log, publish: func(events.Event) {},
		f: watchdog.NewFeeder(), done: make(chan struct{}), marker: heldMarkerFile(t.TempDir())}
	if w.f.Start() != watchdog.Open {
		t.Fatal("the feeder does not open")
	}
	got, err := m.Open(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	w.timeout = got
	return w, m, clk
}

func placed(holder string, epoch uint64, tk *state.Takeover) *state.State {
	return &state.State{Groups: map[string]*state.Group{"web": {Holder: holder, Epoch: epoch, Takeover: tk}}}
}

// testHeld is the lease engine reporting web's lease acquired.
func testHeld(w *nodeWatchdog, epoch uint64, until time.Time) {
	w.leaseChanged(heartbeat.Change{At: w.clk.Now(), Kind: heartbeat.LeaseAcquired, Group: "web", Epoch: epoch, Until: until})
}

// The marker is on disk from the state that names the node a holder until
// a planned move, and stays after a takeover from it (the machine is to be
// reset, and a watchdog fence counts on that).
func TestNodeWatchdogMarkerFollowsTheLeases(t *testing.T) {
	t.Run("planned move", func(t *testing.T) {
		w, _, clk := testNodeWatchdog(t)
		w.applied(placed("b", 1, nil))
		if exists(t, w.marker) {
			t.Fatal("a marker while b holds the group")
		}
		w.applied(placed("a", 2, nil))
		if !exists(t, w.marker) {
			t.Fatal("no marker once the state names this node the holder")
		}
		testHeld(w, 2, clk.Now().Add(400*time.Millisecond))
		w.applied(placed("b", 3, nil))
		if exists(t, w.marker) {
			t.Fatal("the marker is left after a planned move")
		}
	})
	t.Run("takeover", func(t *testing.T) {
		w, _, clk := testNodeWatchdog(t)
		w.applied(placed("a", 2, nil))
		testHeld(w, 2, clk.Now().Add(400*time.Millisecond))
		clk.Advance(100 * time.Millisecond)
		w.applied(placed("b", 3, &state.Takeover{From: "a", To: "b", FromEpoch: 2, Epoch: 3}))
		if _, _, ok := w.f.GaveUp(); !ok {
			t.Fatal("the feeder did not give up on a takeover from this node")
		}
		if !exists(t, w.marker) {
			t.Fatal("the marker went after a takeover from this node: a restart of this boot would feed the watchdog a fence counts on")
		}
		w.applied(placed("b", 3, nil))
		if !exists(t, w.marker) {
			t.Fatal("the marker went on a later state")
		}
	})
}

// A planned stop with nothing held removes the marker (the state still
// naming this node, whose group no other node could take) and disarms; the
// states consensus applies until the agent's end do not write it again.
// A stop holding a lease leaves both.
func TestNodeWatchdogStopAndMarker(t *testing.T) {
	t.Run("nothing held", func(t *testing.T) {
		w, m, _ := testNodeWatchdog(t)
		w.applied(placed("a", 2, nil))
		w.stop()
		if m.Armed() {
			t.Fatal("a stop with nothing held left the watchdog armed")
		}
		if exists(t, w.marker) {
			t.Fatal("a planned stop that disarmed left the marker: no agent of this boot would start")
		}
		w.applied(placed("a", 2, nil))
		if exists(t, w.marker) {
			t.Fatal("a state applied after the stop wrote the marker again")
		}
	})
	t.Run("lease held", func(t *testing.T) {
		w, m, clk := testNodeWatchdog(t)
		w.applied(placed("a", 2, nil))
		testHeld(w, 2, clk.Now().Add(400*time.Millisecond))
		w.stop()
		if !m.Armed() || !exists(t, w.marker) {
			t.Fatalf("a stop holding a lease: armed %v, marker %v; want both", m.Armed(), exists(t, w.marker))
		}
		w.applied(placed("b", 3, nil))
		if !exists(t, w.marker) {
			t.Fatal("a state applied after the stop removed the marker of a watchdog left to reset the machine")
		}
	})
	t.Run("marker not removable", func(t *testing.T) {
		w, m, _ := testNodeWatchdog(t)
		w.applied(placed("a", 2, nil))
		// A directory in the marker's place: the remove fails.
		if err := os.Remove(w.marker); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(w.marker, "x"), 0o700); err != nil {
			t.Fatal(err)
		}
		w.stop()
		if !m.Armed() {
			t.Fatal("the watchdog was disarmed with the marker left: no agent of this boot would start, and no reset would come")
		}
	})
}

// An agent that crashed holding a lease does not start again in the same
// boot, and does not open (feed) the watchdog; after the reset (another
// boot) it does. A planned stop of the holder hands the group over, removes
// the marker and disarms: a restart in the same boot works.
func TestInProcessWatchdogHeldMarker(t *testing.T) {
	reboot := testBoot(t, "boot-1")
	c, twin := watchdogCluster(t)
	c.startAll()
	c.waitRunningOn("a")
	marker := heldMarkerFile(filepath.Join(c.dir, "a"))
	if !exists(t, marker) {
		t.Fatal("a holds web and has no held marker")
	}
	if exists(t, heldMarkerFile(filepath.Join(c.dir, "b"))) {
		t.Error("b holds nothing and has a held marker")
	}
	crashed := twin("a")
	c.crash("a")
	err := c.startErr("a")
	if !errors.Is(err, errHeldMarker) {
		t.Fatalf("a restarted in the boot it crashed in holding a lease: %v, want the refusal", err)
	}
	t.Logf("the refusal: %v", err)
	if twin("a").Armed() {
		t.Error("the refused agent opened the watchdog, which feeds it")
	}
	c.waitFor("a's machine reset", 5*time.Second, func() bool { return isReset(crashed) })
	c.waitRunningOn("b")

	reboot("boot-2")
	c.start("a")
	if exists(t, marker) {
		t.Error("the marker of the boot before is left")
	}
	c.waitFor("b holds a marker", 5*time.Second, func() bool { return exists(t, heldMarkerFile(filepath.Join(c.dir, "b"))) })

	// A planned stop of the holder, b: the group goes back to a first.
	held := twin("b")
	c.mu.Lock()
	nb := c.nodes["b"]
	delete(c.nodes, "b")
	c.mu.Unlock()
	nb.Stop()
	if held.Armed() || isReset(held) {
		t.Fatalf("b stopped after the handover: armed %v, reset %v; want disarmed", held.Armed(), isReset(held))
	}
	if exists(t, heldMarkerFile(filepath.Join(c.dir, "b"))) {
		t.Fatal("b's planned stop left its held marker")
	}
	c.waitRunningOn("a")
	c.start("b")
	c.stays("b runs again, nothing reset", time.Second, func() bool {
		return !isReset(twin("a")) && !isReset(twin("b")) && c.running("a")
	})
}

// The cost the marker adds to the apply that first names this node a
// holder (a takeover's path): a write, two fsyncs and a rename.
func BenchmarkWriteHeldMarker(b *testing.B) {
	marker := heldMarkerFile(b.TempDir())
	for b.Loop() {
		if err := writeHeldMarker(marker); err != nil {
			b.Fatal(err)
		}
	}
}
