package config

import (
	"fmt"
	"slices"
	"strings"
)

// Volume limits.
const (
	// VolumeAlign is the granularity of a volume's size: the block size
	// of every client (NBD's preferred block, a file system's block).
	VolumeAlign = 4096
	// MaxVolumes bounds the volumes of one cluster: each runs an engine,
	// a link and a port on every replica node.
	MaxVolumes = 64
)

// volumes checks the volumes and how groups use them: each volume has two
// replicas on distinct data nodes and is used by exactly one group, whose
// nodes all hold a replica; its volume resource comes before the
// filesystem and nbd_export resources that use it.
func (k *checker) volumes(c *Config) {
	if len(c.Volumes) > MaxVolumes {
		k.addf("volumes", "at most %d volumes, got %d", MaxVolumes, len(c.Volumes))
	}
	names := map[string]string{}
	ports := map[int]string{}
	if c.Port != 0 {
		ports[c.Port] = "port (the cluster's)"
	}
	if c.API.TCPPort != 0 {
		ports[c.API.TCPPort] = "api.tcp_port"
	}
	for i := range c.Volumes {
		v := &c.Volumes[i]
		path := fmt.Sprintf("volumes[%d]", i)
		k.uniqueName(path+".name", v.Name, names)
		k.volume(c, path, v, ports)
	}
	users := map[string][]string{} // volume -> groups with a volume resource for it
	for gi := range c.Groups {
		g := &c.Groups[gi]
		gpath := fmt.Sprintf("groups[%d]", gi)
		promoted := map[string]bool{} // volumes whose volume resource came already
		for ri := range g.Resources {
			r := &g.Resources[ri]
			name := r.UsesVolume()
			if name == "" {
				continue
			}
			rpath := fmt.Sprintf("%s.resources[%d].%s", gpath, ri, r.Kind())
			field := rpath + ".volume"
			if r.Volume != nil {
				field = rpath + ".name"
			}
			v := c.VolumeByName(name)
			switch {
			case name == "":
				continue
			case v == nil:
				k.addf(field, "%q is not a volume (volumes are %s)", name, strings.Join(c.volumeNames(), ", "))
				continue
			case r.Volume != nil:
				if promoted[name] {
					k.addf(field, "volume %q is promoted by an earlier resource of this group already", name)
				}
				promoted[name] = true
				users[name] = append(users[name], g.Name)
				for ni, n := range g.Nodes {
					if v.Replica(n) == nil {
						k.addf(k.listPath(gpath+".nodes", ni, len(g.Nodes)), "%q holds no replica of volume %q, which this group uses (replicas on %s)", n, name, strings.Join(v.replicaNodes(), ", "))
					}
				}
			case !promoted[name]:
				k.addf(field, "volume %q must be promoted by a volume resource earlier in this group (resources start in order)", name)
			}
			if r.NBDExport != nil && !slices.ContainsFunc(g.Resources, func(o Resource) bool { return o.VIP != nil }) {
				k.addf(rpath, "an nbd_export serves on its group's VIP: add a vip resource to group %s", g.Name)
			}
		}
	}
	for i := range c.Volumes {
		v := &c.Volumes[i]
		if v.Name == "" {
			continue
		}
		switch gs := slices.Compact(users[v.Name]); len(gs) {
		case 0:
			k.addf(fmt.Sprintf("volumes[%d].name", i), "volume %q is used by no group (add a resource `volume: {name: %s}` to the group that runs on it)", v.Name, v.Name)
		case 1:
		default:
			k.addf(fmt.Sprintf("volumes[%d].name", i), "volume %q is used by groups %s: one volume, one group (a replica is primary for one holder)", v.Name, strings.Join(gs, " and "))
		}
	}
}

func (k *checker) volume(c *Config, path string, v *Volume, ports map[int]string) {
	switch {
	case v.Size <= 0:
		k.addf(path+".size", "required: the volume's size (e.g. 10GiB)")
	case v.Size%VolumeAlign != 0:
		k.addf(path+".size", "%s is not a multiple of %d bytes", v.Size, VolumeAlign)
	}
	k.oneOf(path+".mode", v.Mode, VolumeModes)
	k.oneOf(path+".split_brain", v.SplitBrain, SplitBrainPolicies)
	if v.Mode == "async" {
		k.oneOf(path+".on_lag", v.OnLag, OnLagModes)
		if v.MaxLag <= 0 {
			k.addf(path+".max_lag", "must be more than 0 in async mode, got %s", v.MaxLag)
		}
	}
	k.notNegative(path+".resync_rate", int64(v.ResyncRate), v.ResyncRate.String())
	switch first, dup := ports[v.Port]; {
	case v.Port < 1 || v.Port > 65535:
		k.addf(path+".port", "%d is not a TCP port (1-65535)", v.Port)
	case dup:
		k.addf(path+".port", "%d is used by %s already", v.Port, first)
	default:
		ports[v.Port] = path + ".port"
	}
	if len(v.Replicas) != 2 {
		k.addf(path+".replicas", "a volume has exactly two replicas (a hot-standby pair), got %d", len(v.Replicas))
	}
	seen := map[string]bool{}
	for i, r := range v.Replicas {
		rpath := fmt.Sprintf("%s.replicas[%d]", path, i)
		if r.Node == "" {
			k.addf(rpath+".node", "required: the data node that holds this replica")
		} else if k.dataNode(c, rpath+".node", r.Node) && seen[r.Node] {
			k.addf(rpath+".node", "%q holds a replica of this volume already", r.Node)
		}
		seen[r.Node] = true
		switch b := r.Backing; {
		case b == "":
			k.addf(rpath+".backing", "required: a file, a block device, or raid:NAME")
		case strings.HasPrefix(b, "raid:"):
			k.name(rpath+".backing", strings.TrimPrefix(b, "raid:"))
		default:
			k.absPath(rpath+".backing", b)
		}
	}
	if len(v.Replicas) == 2 && seen[v.Replicas[0].Node] && seen[v.Replicas[1].Node] {
		a, b := c.NodeLinks(v.Replicas[0].Node), c.NodeLinks(v.Replicas[1].Node)
		if len(a) > 0 && len(b) > 0 && len(a) != len(b) {
			k.addf(path+".replicas", "nodes %s and %s have %d and %d links: the replication link pairs them by position, so give both the same number", v.Replicas[0].Node, v.Replicas[1].Node, len(a), len(b))
		}
	}
}

// oneOf checks that a required string field takes one of values.
func (k *checker) oneOf(path, v string, values []string) {
	if !slices.Contains(values, v) {
		k.addf(path, "%q is not one of %s", v, strings.Join(values, ", "))
	}
}

func (c *Config) volumeNames() []string {
	names := make([]string, len(c.Volumes))
	for i, v := range c.Volumes {
		names[i] = v.Name
	}
	if len(names) == 0 {
		return []string{"none"}
	}
	return names
}

func (v *Volume) replicaNodes() []string {
	var names []string
	for _, r := range v.Replicas {
		names = append(names, r.Node)
	}
	return names
}

// NodeLinks returns the links of data node name.
func (c *Config) NodeLinks(name string) []string {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n.Links
		}
	}
	return nil
}

func (k *checker) filesystem(path string, f *Filesystem) {
	if f.Volume == "" {
		k.addf(path+".volume", "required: the volume the file system is on")
	}
	k.requiredAbsPath(path+".mount", f.Mount)
	if f.Mount == "/" {
		k.addf(path+".mount", "the root file system cannot be a mount point of a resource")
	}
	k.oneOf(path+".fstype", f.FSType, FSTypes)
	if strings.ContainsAny(f.Options, " \t\n") {
		k.addf(path+".options", "%q: mount options are comma-separated, without spaces", f.Options)
	}
	k.notNegative(path+".force_unmount", int64(f.ForceUnmount), f.ForceUnmount.String())
}

func (k *checker) nbdExport(path string, e *NBDExport) {
	if e.Volume == "" {
		k.addf(path+".volume", "required: the volume to serve")
	}
	if e.Port < 1 || e.Port > 65535 {
		k.addf(path+".port", "%d is not a TCP port (1-65535)", e.Port)
	}
}
