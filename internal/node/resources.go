package node

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"

	"tandem/internal/config"
	"tandem/internal/manager"
	"tandem/internal/resource"
	"tandem/internal/resource/exec"
	"tandem/internal/resource/filesystem"
	"tandem/internal/resource/ocf"
	"tandem/internal/resource/replica"
	"tandem/internal/resource/vip"
	"tandem/internal/vipguard"
	"tandem/internal/volumecli"
)

// configVIPs returns every VIP of the configuration.
func configVIPs(cfg *config.Config) ([]netip.Prefix, error) {
	var vips []netip.Prefix
	for _, g := range cfg.Groups {
		for _, r := range g.Resources {
			if r.VIP != nil {
				p, err := netip.ParsePrefix(r.VIP.Address)
				if err != nil {
					return nil, fmt.Errorf("node: group %s: resource %s: %w", g.Name, r.Name, err)
				}
				vips = append(vips, p)
			}
		}
	}
	return vips, nil
}

// groupVIP is the address of the group's first vip resource, where its
// nbd_export serves.
func groupVIP(g config.Group) (netip.Addr, error) {
	for _, r := range g.Resources {
		if r.VIP != nil {
			p, err := netip.ParsePrefix(r.VIP.Address)
			return p.Addr(), err
		}
	}
	return netip.Addr{}, fmt.Errorf("an nbd_export serves on its group's VIP, and group %s has no vip resource", g.Name)
}

// buildGroups turns the configured groups into the manager's, building one
// agent per resource.
func buildGroups(cfg *config.Config, self string, guard vipguard.Guard, override func(string, config.Resource) resource.Agent, vols volumeAgents, log *slog.Logger) ([]manager.Group, error) {
	me, _ := cfg.NodeByName(self)
	selfAddr := ""
	if addrs, err := cfg.LinkAddrs(me); err == nil && len(addrs) > 0 {
		selfAddr = addrs[0].Addr().String()
	}
	var groups []manager.Group
	for _, g := range cfg.Groups {
		mg := manager.Group{Name: g.Name, MaxRestarts: g.MaxRestarts, FailureTimeout: g.FailureTimeout.D()}
		for _, r := range g.Resources {
			var agent resource.Agent
			var addr netip.Prefix
			var err error
			if override != nil {
				agent = override(g.Name, r)
				if r.VIP != nil {
					addr, err = netip.ParsePrefix(r.VIP.Address)
				}
			} else {
				agent, addr, err = buildAgent(cfg, self, selfAddr, g, r, guard, vols, log)
			}
			if err != nil {
				return nil, fmt.Errorf("node: group %s: resource %s: %w", g.Name, r.Name, err)
			}
			mr := manager.Resource{
				Name: r.Name, Kind: r.Kind(), Agent: agent,
				MonitorInterval: r.MonitorInterval.D(), StartTimeout: r.StartTimeout.D(),
				StopTimeout: r.StopTimeout.D(), MonitorTimeout: r.MonitorTimeout.D(),
			}
			if addr.IsValid() {
				mr.VIP = addr.Addr()
			}
			mg.Resources = append(mg.Resources, mr)
		}
		groups = append(groups, mg)
	}
	return groups, nil
}

// volumeAgents is what the agents of volume resources need: this node's
// replicas and the cluster's record of them.
type volumeAgents struct {
	vols   map[string]*nodeVolume
	record replica.Cluster
}

func (n *Node) volumeAgents() volumeAgents {
	return volumeAgents{vols: n.volumes, record: volumeRecord{n}}
}

func buildAgent(cfg *config.Config, self, selfAddr string, g config.Group, r config.Resource, guard vipguard.Guard, vols volumeAgents, log *slog.Logger) (resource.Agent, netip.Prefix, error) {
	group := g.Name
	log = log.With("group", group, "resource", r.Name)
	switch {
	case r.VIP != nil:
		p, err := netip.ParsePrefix(r.VIP.Address)
		if err != nil {
			return nil, netip.Prefix{}, err
		}
		a, err := vip.New(r.Name, *r.VIP, guard, log)
		return a, p, err
	case r.Exec != nil:
		spec := *r.Exec
		// The same configuration runs on every node; these tell a
		// command where it runs.
		spec.Env = map[string]string{"TANDEM_NODE": self, "TANDEM_NODE_ADDR": selfAddr, "TANDEM_GROUP": group, "TANDEM_RESOURCE": r.Name}
		for k, v := range r.Exec.Env {
			spec.Env[k] = v
		}
		// The pid file lets an agent restarted after a crash find the
		// process it left running (and stop it, or keep it).
		pidFile := filepath.Join(cfg.StateDir, "run", group, r.Name+".pid")
		a, err := exec.New(r.Name, spec, log, exec.WithCheckTimeout(r.MonitorTimeout.D()), exec.WithPIDFile(pidFile))
		return a, netip.Prefix{}, err
	case r.OCF != nil:
		a, err := ocf.New(group+"-"+r.Name, *r.OCF, log, ocf.WithMonitorInterval(r.MonitorInterval.D()))
		return a, netip.Prefix{}, err
	case r.Volume != nil:
		v := vols.vols[r.Volume.Name]
		if v == nil {
			return nil, netip.Prefix{}, fmt.Errorf("this node holds no replica of volume %s", r.Volume.Name)
		}
		return replica.NewVolume(v.rep, vols.record, self, v.peer, log), netip.Prefix{}, nil
	case r.NBDExport != nil:
		v := vols.vols[r.NBDExport.Volume]
		if v == nil {
			return nil, netip.Prefix{}, fmt.Errorf("this node holds no replica of volume %s", r.NBDExport.Volume)
		}
		at, err := groupVIP(g)
		if err != nil {
			return nil, netip.Prefix{}, err
		}
		return replica.NewExport(v.rep, netip.AddrPortFrom(at, uint16(r.NBDExport.Port)), log), netip.Prefix{}, nil
	case r.Filesystem != nil:
		fs := r.Filesystem
		if vols.vols[fs.Volume] == nil {
			return nil, netip.Prefix{}, fmt.Errorf("this node holds no replica of volume %s", fs.Volume)
		}
		a, err := filesystem.New(filesystem.Config{
			Source: "nbd+unix:///" + fs.Volume + "?socket=" + volumecli.NBDSocket(cfg.StateDir, fs.Volume),
			Mount:  fs.Mount, FSType: fs.FSType, Options: fs.Options, Fsck: fs.Fsck, Mkfs: fs.Mkfs,
			ForceUnmount: fs.ForceUnmount.D(), StateDir: filepath.Join(cfg.StateDir, "run", group, r.Name),
		}, log, filesystem.ServedByThisProcess())
		if err == nil {
			mode := a.Mode()
			vols.vols[fs.Volume].attach.Store(&mode)
		}
		return a, netip.Prefix{}, err
	}
	return nil, netip.Prefix{}, fmt.Errorf("no resource kind set")
}
