package config

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Watchdog is the data nodes' self-fencing watchdog (issue 13 item 4,
// docs/fencing.md "Watchdog"): while a node holds a lease its agent feeds
// the device, and a takeover guarded by a fence device of kind watchdog
// counts the old holder as reset once WatchdogFenceWait has passed.
type Watchdog struct {
	// Device is the watchdog device of every data node unless NodeDevices
	// names another for it.
	Device      string            `yaml:"device"`
	NodeDevices map[string]string `yaml:"node_devices"`
	// Timeout is the device's timeout: whole seconds, at least one.
	Timeout Duration `yaml:"timeout"`
	// FixedTimeout: the device cannot be told its timeout (it refuses the
	// WDIOC_SETTIMEOUT and WDIOC_GETTIMEOUT ioctls) and runs with Timeout
	// as the operator states. Without it such a device is refused.
	FixedTimeout bool `yaml:"fixed_timeout"`
}

// Watchdog limits: a device counts whole seconds; a takeover through a
// watchdog fence waits twice the timeout, so more than two minutes would
// make that takeover slower than a person answering the page.
const (
	MinWatchdogTimeout = time.Second
	MaxWatchdogTimeout = 120 * time.Second
)

// DefaultWatchdog returns the watchdog section's defaults.
func DefaultWatchdog() Watchdog {
	return Watchdog{
		// The kernel's name for the first watchdog (softdog, iTCO_wdt,
		// ipmi_watchdog all register it).
		Device: "/dev/watchdog",
		// sbd's default: long enough that a loaded machine never misses a
		// feed (the agent feeds every quarter of it), short enough that a
		// takeover through the watchdog fence (twice it) stays near 10 s.
		Timeout: Duration(5 * time.Second),
	}
}

// WatchdogDevice is the watchdog device of data node node ("" when the
// configuration has no watchdog).
func (c *Config) WatchdogDevice(node string) string {
	if c.Watchdog == nil {
		return ""
	}
	if d := c.Watchdog.NodeDevices[node]; d != "" {
		return d
	}
	return c.Watchdog.Device
}

// WatchdogFenceWait is how long after a fence of kind watchdog began the
// node is counted as reset by its own watchdog: the node stops feeding no
// later than its lease's end (which is at most a lease after the fence
// began), the feed it may have had under way when it froze lands within a
// timeout of its last one, and the device resets within a timeout of the
// last feed: a lease + 2 × timeout. A second more covers the clocks'
// drift and the device's own slack.
func (c *Config) WatchdogFenceWait() time.Duration {
	if c.Watchdog == nil {
		return 0
	}
	return 2*c.Watchdog.Timeout.D() + c.Timing.Lease.D() + time.Second
}

func (k *checker) watchdog(c *Config) {
	w := c.Watchdog
	if w == nil {
		for i, d := range c.FenceDevices {
			if d.Kind == FenceKindWatchdog {
				k.addf(fmt.Sprintf("fence_devices[%d].kind", i), "watchdog needs the watchdog section: a node is counted as reset only when it runs one")
			}
		}
		return
	}
	k.requiredAbsPath("watchdog.device", w.Device)
	nodes := make([]string, 0, len(w.NodeDevices))
	for n := range w.NodeDevices {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	for _, n := range nodes {
		k.dataNode(c, "watchdog.node_devices", n)
		k.requiredAbsPath("watchdog.node_devices."+n, w.NodeDevices[n])
	}
	t := w.Timeout.D()
	switch {
	case t < MinWatchdogTimeout || t > MaxWatchdogTimeout:
		k.addf("watchdog.timeout", "%v is outside %v to %v", t, MinWatchdogTimeout, MaxWatchdogTimeout)
	case t%time.Second != 0:
		k.addf("watchdog.timeout", "%v: a watchdog device counts whole seconds", t)
	}
	wait := c.WatchdogFenceWait()
	for i, d := range c.FenceDevices {
		if d.Kind == FenceKindWatchdog && d.Timeout.D() <= wait {
			k.addf(fmt.Sprintf("fence_devices[%d].timeout", i), "%v is not longer than the watchdog fence's wait %v (2 × watchdog.timeout + timing.lease + 1s)", d.Timeout.D(), wait)
		}
	}
}

// hostWatchdog checks that this data node's watchdog device exists here
// and is a device or a FIFO (a test bed's stand-in).
func (k *checker) hostWatchdog(c *Config, self string) {
	dev := c.WatchdogDevice(self)
	if dev == "" {
		return
	}
	path := "watchdog.device"
	if c.Watchdog.NodeDevices[self] != "" {
		path = "watchdog.node_devices." + self
	}
	st, err := os.Stat(dev)
	switch {
	case os.IsNotExist(err):
		k.addf(path, "%s does not exist on this machine (%s); a machine without a hardware watchdog can load softdog (modprobe softdog)", dev, self)
	case err != nil:
		k.addf(path, "%v", err)
	case st.Mode()&(os.ModeCharDevice|os.ModeNamedPipe) == 0:
		k.addf(path, "%s is not a device", filepath.Clean(dev))
	}
}
