package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// Host is what the machine checks ask of the machine they run on. It is a
// seam: the agent and `tandem config validate --local` use ThisHost, tests
// describe a machine with StaticHost.
type Host interface {
	Hostname() (string, error)
	// Interfaces lists the machine's network interfaces and their addresses.
	Interfaces() ([]HostInterface, error)
	// CanBind says whether a socket can be bound to a on this machine (nil)
	// or why not.
	CanBind(a netip.Addr) error
}

// HostInterface is a network interface and its addresses.
type HostInterface struct {
	Name  string
	Addrs []netip.Addr
}

// ThisHost is the machine the process runs on.
type ThisHost struct{}

func (ThisHost) Hostname() (string, error) { return os.Hostname() }

func (ThisHost) Interfaces() ([]HostInterface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	out := make([]HostInterface, 0, len(ifs))
	for _, i := range ifs {
		hi := HostInterface{Name: i.Name}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				hi.Addrs = append(hi.Addrs, p.Addr())
			}
		}
		out = append(out, hi)
	}
	return out, nil
}

// CanBind binds a UDP socket to an ephemeral port of a, which works exactly
// when the kernel takes a as local (an address on an interface, or one of
// a local route such as 127.0.0.0/8), as the agent's heartbeat and raft
// sockets need.
func (ThisHost) CanBind(a netip.Addr) error {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = oe.Err
		}
		return err
	}
	return c.Close()
}

// StaticHost is a described machine: its name and interfaces. It can bind
// exactly the addresses of its interfaces.
type StaticHost struct {
	Name   string
	Ifaces []HostInterface
}

func (h StaticHost) Hostname() (string, error)            { return h.Name, nil }
func (h StaticHost) Interfaces() ([]HostInterface, error) { return h.Ifaces, nil }

func (h StaticHost) CanBind(a netip.Addr) error {
	for _, i := range h.Ifaces {
		if slices.Contains(i.Addrs, a.WithZone("")) {
			return nil
		}
	}
	return errors.New("bind: cannot assign requested address")
}

// FindSelf picks the member this machine is, as the agent does without
// --node: the first member that want accepts (nil: any) with a link address
// on one of h's interfaces, else the member named like the host. It
// returns "" when there is none.
func (c *Config) FindSelf(h Host, want func(name string) bool) string {
	if want == nil {
		want = func(string) bool { return true }
	}
	local := map[netip.Addr]bool{}
	if ifs, err := h.Interfaces(); err == nil {
		for _, i := range ifs {
			for _, a := range i.Addrs {
				local[a.WithZone("")] = true
			}
		}
	}
	for _, v := range c.Voters() {
		addrs, err := c.LinkAddrs(v)
		if err != nil || !want(v.Name) {
			continue
		}
		for _, a := range addrs {
			if local[a.Addr().WithZone("")] {
				return v.Name
			}
		}
	}
	if name, err := h.Hostname(); err == nil {
		if _, ok := c.NodeByName(name); ok && want(name) {
			return name
		}
	}
	return ""
}

// CheckHost checks that h can be member self of the cluster ("" = the one
// FindSelf picks, as the agent does): that the member exists, that each of
// its link addresses is an address of h (the agent binds heartbeats and
// raft to them), and, for a data node, that h has the interface of each VIP
// of the groups that may run on it. For a data node it also checks
// everything CheckLocal does; for the witness only the key. It returns the
// member's name ("" when none fits) and Problems, placed like Validate's.
// `tandem config validate --local` runs it.
func (c *Config) CheckHost(h Host, self string) (string, error) {
	k := &checker{src: c.src}
	flag := self != ""
	if !flag {
		self = c.FindSelf(h, nil)
	}
	if _, ok := c.NodeByName(self); !ok {
		switch {
		case flag:
			k.addf("nodes", "%q (--node) is not a member of cluster %s (members: %s)", self, c.Cluster, memberNames(c))
		default:
			host, _ := h.Hostname()
			k.addf("nodes", "this machine is none of the members (%s): none of their link addresses is on an interface here, "+
				"and the host name %q is none of their names; pass --node NAME", memberNames(c), host)
		}
		return "", k.probs.sorted().errOrNil()
	}
	k.hostLinks(c, h, self)
	if c.IsWitness(self) {
		k.keyFile(c)
	} else {
		k.hostVIPInterfaces(c, h, self)
		k.hostWatchdog(c, self)
		c.localChecks(k)
	}
	return self, k.probs.sorted().errOrNil()
}

func memberNames(c *Config) string {
	var names []string
	for _, v := range c.Voters() {
		names = append(names, v.Name)
	}
	return strings.Join(names, ", ")
}

// memberPath is where member name is in the file: nodes[i] or witness.
func memberPath(c *Config, name string) string {
	if c.IsWitness(name) {
		return "witness"
	}
	for i, n := range c.Nodes {
		if n.Name == name {
			return fmt.Sprintf("nodes[%d]", i)
		}
	}
	return "nodes"
}

func (k *checker) hostLinks(c *Config, h Host, self string) {
	me, _ := c.NodeByName(self)
	path := memberPath(c, self) + ".links"
	for i, l := range me.Links {
		ap, err := ParseLink(l, c.Port)
		if err != nil {
			continue // Validate's problem
		}
		if err := h.CanBind(ap.Addr()); err != nil {
			k.addf(k.listPath(path, i, len(me.Links)), "%s is not an address of this machine (%s): %v", ap.Addr(), self, err)
		}
	}
}

func (k *checker) hostVIPInterfaces(c *Config, h Host, self string) {
	ifs, err := h.Interfaces()
	if err != nil {
		k.addf("groups", "cannot list this machine's network interfaces: %v", err)
		return
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	for gi, g := range c.Groups {
		if !slices.Contains(g.Nodes, self) {
			continue
		}
		for ri, r := range g.Resources {
			if r.VIP == nil || r.VIP.Interface == "" || slices.Contains(names, r.VIP.Interface) {
				continue
			}
			k.addf(fmt.Sprintf("groups[%d].resources[%d].vip.interface", gi, ri),
				"this machine (%s) has no interface %s (it has %s)", self, r.VIP.Interface, strings.Join(names, ", "))
		}
	}
}
