package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"tandem/internal/durable"
)

// The held marker closes the gap a quick restart would open: a killed
// agent's watchdog stays armed and resets the machine within its timeout,
// unless something feeds it first, and opening the device feeds it. An
// agent restarted by systemd a second later would open it and feed on, and
// the machine a watchdog fence counts as reset would not be, with what the
// dead agent started maybe still running. So the agent writes the marker
// (this boot's id) before it can hold a lease, and removes it once it holds
// none, the state names it the holder of nothing and the feeder has not
// given up, or on a planned stop just before the magic close. An agent
// that finds the marker of this boot does not open the watchdog and does
// not start: the machine resets. A marker of another boot is the one the
// reset (or a reboot) left: removed.
//
// So the marker is on disk only while the watchdog is armed (written after
// the open, removed before the close): an agent refuses to start only on a
// machine its watchdog is about to reset, unless the watchdog failed to.

// heldMarkerFile is the marker's path in the state directory.
func heldMarkerFile(stateDir string) string { return filepath.Join(stateDir, "watchdog-held") }

// bootIDFile names this boot (the kernel's random boot id); a variable for
// tests.
var bootIDFile = "/proc/sys/kernel/random/boot_id"

func bootID() (string, error) {
	b, err := os.ReadFile(bootIDFile)
	if err != nil {
		return "", fmt.Errorf("node: watchdog: this boot's id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if id == "" {
		return "", fmt.Errorf("node: watchdog: this boot's id: %s is empty", bootIDFile)
	}
	return id, nil
}

// errHeldMarker is the refusal to start in a boot whose agent died holding
// a lease.
var errHeldMarker = errors.New("node: watchdog: this machine is to be reset by its watchdog")

// checkHeldMarker refuses to start when this boot's agent died holding a
// lease (the watchdog it left armed, with the given timeout, is to reset
// the machine), and removes a marker an earlier boot left.
func checkHeldMarker(path string, timeout time.Duration) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: watchdog: %w", err)
	}
	boot, err := bootID()
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(b)) == boot {
		return fmt.Errorf("%w: this boot's previous agent ended without a planned stop while this node held a lease (or was named a group's holder); "+
			"the watchdog it left armed resets the machine within %v, and a watchdog fence of this node counts on that, "+
			"so this agent neither opens the watchdog (which would feed it) nor starts in this boot (%s holds the boot's id). "+
			"If the machine was not reset (the watchdog did not fire: softdog soft_noboot=1, a broken driver), reboot it; "+
			"only if you are sure nothing of this node's groups runs here, remove %s instead (docs/fencing.md, \"Watchdog\")",
			errHeldMarker, timeout, path, path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("node: watchdog: %w", err)
	}
	return nil
}

// writeHeldMarker writes this boot's id to path, durably: the file and its
// directory are synced before a lease may be claimed.
func writeHeldMarker(path string) error {
	boot, err := bootID()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("node: watchdog: %w", err)
	}
	if err := durable.WriteFile(path, []byte(boot+"\n"), 0o600); err != nil {
		return fmt.Errorf("node: watchdog: %w", err)
	}
	return nil
}
