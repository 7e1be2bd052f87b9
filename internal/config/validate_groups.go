package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

func (k *checker) groups(c *Config) {
	names := map[string]string{}
	vips := map[netip.Addr]string{}
	for i := range c.Groups {
		g := &c.Groups[i]
		path := fmt.Sprintf("groups[%d]", i)
		k.uniqueName(path+".name", g.Name, names)
		k.groupNodes(c, path, g)
		k.failback(path+".failback", g.Failback)
		k.notNegative(path+".stickiness", int64(g.Stickiness), strconv.Itoa(g.Stickiness))
		k.notNegative(path+".failback_hold", int64(g.FailbackHold), g.FailbackHold.String())
		k.notNegative(path+".max_restarts", int64(g.MaxRestarts), strconv.Itoa(g.MaxRestarts))
		k.notNegative(path+".failure_timeout", int64(g.FailureTimeout), g.FailureTimeout.String())
		if len(g.Resources) == 0 {
			k.addf(path+".resources", "a group needs at least one resource")
		}
		rnames := map[string]string{}
		for ri := range g.Resources {
			rpath := fmt.Sprintf("%s.resources[%d]", path, ri)
			k.resource(c, rpath, &g.Resources[ri], rnames, vips)
		}
	}
}

// groupNodes checks that nodes and prefer name data nodes, and that every
// preferred node may run the group.
func (k *checker) groupNodes(c *Config, path string, g *Group) {
	if len(c.Nodes) == 0 {
		return // already a problem; every name would be one more
	}
	seen := map[string]bool{}
	for i, name := range g.Nodes {
		p := k.listPath(path+".nodes", i, len(g.Nodes))
		if k.dataNode(c, p, name) && seen[name] {
			k.addf(p, "%q is listed twice", name)
		}
		seen[name] = true
	}
	preferred := map[string]bool{}
	for i, name := range g.Prefer {
		p := k.listPath(path+".prefer", i, len(g.Prefer))
		switch {
		case !k.dataNode(c, p, name):
		case !seen[name]:
			k.addf(p, "%q is not one of this group's nodes (%s)", name, strings.Join(g.Nodes, ", "))
		case preferred[name]:
			k.addf(p, "%q is listed twice", name)
		}
		preferred[name] = true
	}
}

// dataNode reports whether name is a data node, adding a problem if not.
func (k *checker) dataNode(c *Config, path, name string) bool {
	if slices.Contains(c.dataNodeNames(), name) {
		return true
	}
	if c.IsWitness(name) {
		k.addf(path, "%q is the witness, which never runs resources", name)
		return false
	}
	k.addf(path, "%q is not a data node (nodes are %s)", name, strings.Join(c.dataNodeNames(), ", "))
	return false
}

func (k *checker) failback(path string, f Failback) {
	switch f.Mode {
	case FailbackAuto, FailbackManual:
	case FailbackDelay:
		if f.Delay <= 0 {
			k.addf(path, "delay must be more than 0, got %s", Duration(f.Delay))
		}
	default:
		k.addf(path, "%q is not auto, manual or delay <duration>", f.Mode)
	}
}

func (k *checker) resource(c *Config, path string, r *Resource, names map[string]string, vips map[netip.Addr]string) {
	kinds := k.exactlyOne(path, ResourceKinds, r.kinds()...)
	if r.Name != "" || kinds == 1 { // else the name is missing for want of a kind
		k.uniqueName(path+".name", r.Name, names)
	}
	k.positive(path+".monitor_interval", r.MonitorInterval)
	k.positive(path+".start_timeout", r.StartTimeout)
	k.positive(path+".stop_timeout", r.StopTimeout)
	k.positive(path+".monitor_timeout", r.MonitorTimeout)
	if r.VIP != nil {
		k.vip(c, path+".vip", r.VIP, vips)
	}
	if r.Exec != nil {
		k.exec(path+".exec", r.Exec)
	}
	if r.OCF != nil {
		k.ocf(path+".ocf", r.OCF)
	}
	if r.Volume != nil && r.Volume.Name == "" {
		k.addf(path+".volume.name", "required: the volume to promote")
	}
	if r.Filesystem != nil {
		k.filesystem(path+".filesystem", r.Filesystem)
	}
	if r.NBDExport != nil {
		k.nbdExport(path+".nbd_export", r.NBDExport)
	}
}

func (k *checker) vip(c *Config, path string, v *VIP, vips map[netip.Addr]string) {
	switch p, err := netip.ParsePrefix(v.Address); {
	case v.Address == "":
		k.addf(path+".address", "required (e.g. 10.0.0.50/24)")
	case err != nil:
		k.addf(path+".address", "%q is not an IP prefix", v.Address)
	case notUnicast(p) != "":
		k.addf(path+".address", "%q is not a unicast address: %s", v.Address, notUnicast(p))
	default:
		a := p.Addr()
		if first, dup := vips[a]; dup {
			k.addf(path+".address", "%s is already used by %s", a, first)
		} else {
			vips[a] = path
		}
		if owner := linkOwner(c, a); owner != "" {
			k.addf(path+".address", "%s is a link address of node %s; a floating address must be one no node owns", a, owner)
		}
	}
	switch {
	case v.Interface == "":
		k.addf(path+".interface", "required (e.g. eth0)")
	case !ifaceNameRE.MatchString(v.Interface) || v.Interface == "." || v.Interface == "..":
		k.addf(path+".interface", "%q is not an interface name", v.Interface)
	}
	k.notNegative(path+".garp_count", int64(v.GARPCount), strconv.Itoa(v.GARPCount))
	if v.GARPCount > 1 {
		k.positive(path+".garp_interval", v.GARPInterval)
	}
}

// linkOwner returns the member that has a as a link address, or "".
func linkOwner(c *Config, a netip.Addr) string {
	for _, n := range c.Voters() {
		for _, l := range n.Links {
			if ap, err := ParseLink(l, c.Port); err == nil && ap.Addr().WithZone("") == a.WithZone("") {
				return n.Name
			}
		}
	}
	return ""
}

func (k *checker) exec(path string, e *Exec) {
	k.argv(path+".command", e.Command)
	k.absPath(path+".dir", e.Dir)
	k.envNames(path+".env", e.Env, "environment variable")
	if !slices.Contains(StopSignals, e.StopSignal) {
		k.addf(path+".stop_signal", "%q is not a known signal (one of %s)", e.StopSignal, strings.Join(StopSignals, ", "))
	}
	if e.Check != nil {
		k.check(path+".check", e.Check)
	}
}

func (k *checker) argv(path string, argv []string) {
	switch {
	case len(argv) == 0:
		k.addf(path, "required: a list, the program and its arguments")
	case argv[0] == "":
		k.addf(path+"[0]", "the program must not be empty")
	}
}

// envNames checks that the keys of m can be environment variable names
// (OCF parameters become OCF_RESKEY_<name>).
func (k *checker) envNames(path string, m map[string]string, what string) {
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if !envNameRE.MatchString(name) {
			k.addf(path+"."+name, "not a valid %s name (letters, digits and _, not first a digit)", what)
		}
	}
}

func (k *checker) check(path string, ch *Check) {
	k.exactlyOne(path, []string{"tcp", "http", "command"}, ch.TCP != "", ch.HTTP != "", len(ch.Command) > 0)
	if ch.TCP != "" {
		host, port, err := net.SplitHostPort(ch.TCP)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			k.addf(path+".tcp", "%q is not HOST:PORT", ch.TCP)
		}
	}
	if ch.HTTP != "" {
		u, err := url.Parse(ch.HTTP)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			k.addf(path+".http", "%q is not an http:// or https:// URL", ch.HTTP)
		}
	}
	if len(ch.Command) > 0 {
		k.argv(path+".command", ch.Command)
	}
}

func (k *checker) ocf(path string, o *OCF) {
	switch {
	case o.Agent == "":
		k.addf(path+".agent", "required: provider/type, e.g. heartbeat/Dummy")
	case !agentRE.MatchString(o.Agent):
		k.addf(path+".agent", "%q is not provider/type (e.g. heartbeat/Dummy)", o.Agent)
	}
	k.requiredAbsPath(path+".root", o.Root)
	k.envNames(path+".params", o.Params, "parameter")
}
