package node

import (
	"fmt"
	"sort"
	"time"

	"tandem/internal/clock"
	"tandem/internal/config"
	"tandem/internal/fence"
)

// FenceDeviceFromConfig builds the driver of one device of configuration c.
func FenceDeviceFromConfig(c *config.Config, d config.FenceDevice) (fence.Device, error) {
	switch d.Kind {
	case config.FenceKindWebhook:
		return &fence.Webhook{URL: d.URL, TokenFile: d.TokenFile, Timeout: d.Timeout.D()}, nil
	case config.FenceKindWatchdog:
		wait := c.WatchdogFenceWait()
		if wait <= 0 {
			return nil, fmt.Errorf("fence device %s: kind watchdog needs the watchdog section", d.Name)
		}
		return &fence.Watchdog{Wait: wait, Clock: clock.Real{}}, nil
	}
	path, err := d.FenceAgentPath()
	if err != nil {
		return nil, fmt.Errorf("fence device %s: %v", d.Name, err)
	}
	params := map[string]string{}
	for k, v := range d.Params {
		params[k] = v
	}
	return &fence.Agent{Path: path, Params: params, SecretFiles: d.SecretFiles, Timeout: d.Timeout.D()}, nil
}

// FencerFromConfig builds a fence.Fencer over every device and every node's levels.
func FencerFromConfig(c *config.Config) (*fence.Fencer, error) {
	f := &fence.Fencer{Devices: map[string]fence.Device{}, Topologies: map[string]fence.Topology{},
		Clock: clock.Real{}}
	byName := map[string]config.FenceDevice{}
	for _, d := range c.FenceDevices {
		byName[d.Name] = d
	}
	nodes := map[string]bool{}
	for _, d := range c.FenceDevices {
		for _, n := range d.Nodes {
			nodes[n] = true
		}
	}
	names := make([]string, 0, len(nodes))
	for n := range nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, node := range names {
		t := fence.Topology{Node: node, RetryDelay: time.Second}
		for _, level := range c.FenceLevelsOf(node) {
			var steps []fence.Step
			for _, name := range level {
				d := byName[name]
				if _, ok := f.Devices[name]; !ok {
					dev, err := FenceDeviceFromConfig(c, d)
					if err != nil {
						return nil, err
					}
					f.Devices[name] = dev
				}
				m := fence.OffStatus
				if d.Method == config.FenceMethodReboot {
					m = fence.RebootOnly
				}
				// The machine's deadline leaves the agent's own kill a
				// second to land first, so its stderr tail is reported.
				plug := d.Plugs[node]
				if d.Kind == config.FenceKindWatchdog {
					plug = node // its status is kept by node
				}
				steps = append(steps, fence.Step{Device: name, Plug: plug, Method: m,
					Timeout: d.Timeout.D() + time.Second, Retries: d.Retries})
			}
			t.Levels = append(t.Levels, steps)
		}
		f.Topologies[node] = t
	}
	return f, nil
}
