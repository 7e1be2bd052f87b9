package testbed

import (
	"cmp"
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Spec describes the tandem cluster a bed runs.
type Spec struct {
	// Groups default to one group "web" preferring node1 (none with Raw).
	Groups []GroupSpec
	// Raw, when not "", is written as given in place of the groups and
	// volumes that Groups would render: an example configuration run as
	// it is, with @DIR@ replaced by the bed's directory. With a
	// filesystem resource in it the agents run in mount namespaces of
	// their own.
	Raw string
	// Timing overrides fields of the config's timing section
	// ("heartbeat_interval": "50ms"); empty keeps tandem's defaults.
	Timing map[string]string
	// Links is the number of heartbeat links of each data node, 1 or 2
	// (default 2; the witness always has one).
	Links int
	// Extra is written as given after the groups and volumes (fence
	// devices: BMC.FenceDeviceYAML), with @DIR@ replaced.
	Extra string
	// TwoNode leaves the witness out of the config (two-node mode: Extra
	// must fence both data nodes); its host runs no agent.
	TwoNode bool
}

// GroupSpec is one group: the bed's HTTP service (answering with the
// node's name) on Port, then a VIP.
type GroupSpec struct {
	Name     string
	Prefer   string // default node1
	Failback string // "" is tandem's default (manual)
	// FailbackHold is written as given when not "" (tandem's default is
	// 1m: after a takeover away from a node, failback to it waits that
	// long).
	FailbackHold string
	// MaxRestarts is written as given when not "" (tandem's default is 3).
	MaxRestarts string
	Port        int // default 8080 + the group's index
	VIP         int // index for VIPAddr; default the group's index
	// MonitorInterval of the service (default 200ms, so a dead service
	// is noticed quickly).
	MonitorInterval string
	// Check replaces the service's health check (a TCP connect) by this
	// command, e.g. a slow one.
	Check []string
	// ServiceArgs are extra arguments of demo-service (--stop-delay 1s,
	// --trace FILE).
	ServiceArgs []string
	// VIPOnly leaves the service out of the group: tandem moves only the
	// VIP, and the caller runs the service on both nodes (as keepalived
	// users do), for the benchmark's like-for-like comparison.
	VIPOnly bool
	// Volume makes the group a replicated volume served over NBD on the
	// VIP instead of the service: resources volume, vip, nbd_export
	// (port NBDPort), the volume VolumeSize (default 64MiB) on a file in
	// each data node's state dir.
	Volume     string
	VolumeSize string
	VolumeMode string // "" is tandem's default (sync)
	// VolumeOnLag and VolumeMaxLag are written when not "" (async).
	VolumeOnLag, VolumeMaxLag string
	// Mount, with Volume, makes the group volume, filesystem (FSType at
	// Mount, made on first start), service, vip instead: the file system
	// fails over with the service. The agents then run in private mount
	// namespaces (Cluster.AgentMountNS), as on separate machines.
	Mount string
	// FSType of the file system at Mount (default ext4; xfs needs a
	// VolumeSize of 300MiB or more).
	FSType string
	// Service, with Mount, runs this command instead of the demo service
	// (a database on the file system: PostgresGroup), checked by Check
	// when set and stopped with StopSignal ("" is tandem's TERM).
	Service    []string
	StopSignal string
	// Fence is the group's fence: policy, written when not "".
	Fence string
}

// NBDPort is where a volume group's nbd_export serves, on its VIP.
const NBDPort = 10809

// VolumePort is the replication link's port of the first volume: the
// cluster's port + 1 (docs/storage.md).
const VolumePort = clusterPort + 1

// DefaultGroup is the group most scenarios use.
func DefaultGroup() GroupSpec { return GroupSpec{Name: "web", Prefer: "node1"} }

func (s Spec) withDefaults() Spec {
	if len(s.Groups) == 0 && s.Raw == "" {
		s.Groups = []GroupSpec{DefaultGroup()}
	}
	if s.Links == 0 {
		s.Links = 2
	}
	groups := make([]GroupSpec, len(s.Groups))
	for i, g := range s.Groups {
		if g.Prefer == "" {
			g.Prefer = "node1"
		}
		if g.Port == 0 {
			g.Port = 8080 + i
		}
		if g.VIP == 0 {
			g.VIP = i
		}
		if g.MonitorInterval == "" {
			g.MonitorInterval = "200ms"
		}
		if g.Volume != "" && g.VolumeSize == "" {
			g.VolumeSize = "64MiB"
		}
		groups[i] = g
	}
	s.Groups = groups
	return s
}

// Group returns the spec of the named group.
func (s Spec) Group(name string) (GroupSpec, bool) {
	for _, g := range s.withDefaults().Groups {
		if g.Name == name {
			return g, true
		}
	}
	return GroupSpec{}, false
}

// linkList renders a host's heartbeat links for the config.
func linkList(addrs []netip.Addr, n int) string {
	var out []string
	for i, a := range addrs {
		if i < n {
			out = append(out, a.String())
		}
	}
	return "[" + strings.Join(out, ", ") + "]"
}

// renderConfig writes the cluster's tandem.yaml. addrs maps host → link
// addresses; binary runs the service.
func renderConfig(s Spec, addrs map[string][]netip.Addr, dir, keyFile, binary string) string {
	s = s.withDefaults()
	var b strings.Builder
	fmt.Fprintf(&b, "cluster: testbed\nkey_file: %s\nstate_dir: %s\nnodes:\n", keyFile, dir)
	for _, n := range DataNodes {
		fmt.Fprintf(&b, "  - {name: %s, links: %s}\n", n, linkList(addrs[n], s.Links))
	}
	if !s.TwoNode {
		fmt.Fprintf(&b, "witness: {name: witness, links: %s}\n", linkList(addrs["witness"], 1))
	}
	if len(s.Timing) > 0 {
		b.WriteString("timing:\n")
		var keys []string
		for k := range s.Timing {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "  %s: %s\n", k, s.Timing[k])
		}
	}
	if s.Raw != "" {
		b.WriteString(strings.ReplaceAll(s.Raw, "@DIR@", dir))
		return b.String()
	}
	b.WriteString("groups:\n")
	for _, g := range s.Groups {
		fmt.Fprintf(&b, "  - name: %s\n    prefer: %s\n", g.Name, g.Prefer)
		if g.Failback != "" {
			fmt.Fprintf(&b, "    failback: %s\n", g.Failback)
		}
		if g.FailbackHold != "" {
			fmt.Fprintf(&b, "    failback_hold: %s\n", g.FailbackHold)
		}
		if g.MaxRestarts != "" {
			fmt.Fprintf(&b, "    max_restarts: %s\n", g.MaxRestarts)
		}
		if g.Fence != "" {
			fmt.Fprintf(&b, "    fence: %s\n", g.Fence)
		}
		check := fmt.Sprintf(`{tcp: "127.0.0.1:%d"}`, g.Port)
		if len(g.Check) > 0 {
			check = "{command: " + yamlList(g.Check) + "}"
		}
		extra := ""
		if len(g.ServiceArgs) > 0 {
			extra = ", " + strings.TrimSuffix(strings.TrimPrefix(yamlList(g.ServiceArgs), "["), "]")
		}
		if g.VIPOnly {
			fmt.Fprintf(&b, "    resources:\n      - name: vip\n        vip: {address: %s/24, interface: %s}\n", VIPAddr(g.VIP), Iface(0))
			continue
		}
		if g.Volume != "" && g.Mount != "" {
			service := fmt.Sprintf(`[%s, demo-service, --all, --port, "%d"]`, binary, g.Port)
			if len(g.Service) > 0 {
				service = yamlList(g.Service)
			}
			if g.StopSignal != "" {
				service += "\n          stop_signal: " + g.StopSignal
			}
			fmt.Fprintf(&b, `    resources:
      - name: data
        volume: {name: %s}
        monitor_interval: %s
      - name: fs
        filesystem: {volume: %s, mount: %s, fstype: %s, mkfs: true, force_unmount: 2s}
        monitor_interval: %s
      - name: service
        exec:
          command: %s
          check: %s
        monitor_interval: %s
      - name: vip
        vip: {address: %s/24, interface: %s}
`, g.Volume, g.MonitorInterval, g.Volume, g.Mount, cmp.Or(g.FSType, "ext4"), g.MonitorInterval, service, check, g.MonitorInterval, VIPAddr(g.VIP), Iface(0))
			continue
		}
		if g.Volume != "" {
			fmt.Fprintf(&b, `    resources:
      - name: data
        volume: {name: %s}
        monitor_interval: %s
      - name: vip
        vip: {address: %s/24, interface: %s}
      - name: export
        nbd_export: {volume: %s, port: %d}
        monitor_interval: %s
`, g.Volume, g.MonitorInterval, VIPAddr(g.VIP), Iface(0), g.Volume, NBDPort, g.MonitorInterval)
			continue
		}
		fmt.Fprintf(&b, `    resources:
      - name: service
        exec:
          command: [%s, demo-service, --all, --port, "%d"%s]
          check: %s
        monitor_interval: %s
      - name: vip
        vip: {address: %s/24, interface: %s}
`, binary, g.Port, extra, check, g.MonitorInterval, VIPAddr(g.VIP), Iface(0))
	}
	volumes := ""
	for _, g := range s.Groups {
		if g.Volume == "" {
			continue
		}
		volumes += fmt.Sprintf("  - name: %s\n    size: %s\n", g.Volume, g.VolumeSize)
		for _, kv := range [][2]string{{"mode", g.VolumeMode}, {"on_lag", g.VolumeOnLag}, {"max_lag", g.VolumeMaxLag}} {
			if kv[1] != "" {
				volumes += fmt.Sprintf("    %s: %s\n", kv[0], kv[1])
			}
		}
		volumes += "    replicas:\n"
		for _, n := range DataNodes {
			volumes += fmt.Sprintf("      - {node: %s, backing: %s}\n", n, filepath.Join(dir, n, g.Volume+".img"))
		}
	}
	if volumes != "" {
		b.WriteString("volumes:\n" + volumes)
	}
	b.WriteString(strings.ReplaceAll(s.Extra, "@DIR@", dir))
	return b.String()
}

// yamlList renders strings as a YAML flow list of quoted strings.
func yamlList(items []string) string {
	q := make([]string, len(items))
	for i, it := range items {
		q[i] = strconv.Quote(it)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// ServiceMatch is the command-line fragment of group g's service process
// (for KillService).
func ServiceMatch(g GroupSpec) string { return fmt.Sprintf("demo-service --all --port %d", g.Port) }

// clusterPort is the port the bed's clusters use: tandem's default (the
// config does not set one).
const clusterPort = 7789
