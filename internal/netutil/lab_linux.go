package netutil

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// HostLink is the name of every lab host's interface to the bridge.
const HostLink = "eth0"

// Lab is a set of hosts, each in its own namespace, plugged into one bridge
// that lives in a namespace of its own (<prefix>-sw).
type Lab struct {
	Prefix string
	Switch *NS
	Hosts  []*Host
}

// Host is a lab namespace with interface HostLink on the bridge.
type Host struct {
	*NS
	Port  string // the bridge port (veth peer) in the switch namespace
	MAC   net.HardwareAddr
	Addrs []netip.Prefix
}

// NewLab creates the switch namespace <prefix>-sw with bridge br0. Close
// deletes everything the lab created.
func NewLab(prefix string) (*Lab, error) {
	sw, err := NewNS(prefix + "-sw")
	if err != nil {
		return nil, err
	}
	l := &Lab{Prefix: prefix, Switch: sw}
	err = sw.Do(func() error {
		off := false
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}, MulticastSnooping: &off}
		if err := netlink.LinkAdd(br); err != nil {
			return err
		}
		return netlink.LinkSetUp(br)
	})
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("netutil: lab %s: bridge: %w", prefix, err)
	}
	return l, nil
}

// AddHost creates namespace <prefix>-<name> with HostLink up, carrying addrs,
// and plugs it into the bridge. IPv6 duplicate address detection is off in
// the host so its addresses (link-local too) are usable at once.
func (l *Lab) AddHost(name string, addrs ...netip.Prefix) (*Host, error) {
	ns, err := NewNS(l.Prefix + "-" + name)
	if err != nil {
		return nil, err
	}
	h := &Host{NS: ns, Port: portName(name), Addrs: addrs}
	l.Hosts = append(l.Hosts, h)
	if err := ns.Do(noDAD); err != nil {
		return nil, fmt.Errorf("netutil: host %s: %w", name, err)
	}
	err = l.Switch.Do(func() error {
		hostNS, err := netns.GetFromPath(ns.Path())
		if err != nil {
			return err
		}
		defer hostNS.Close()
		br, err := netlink.LinkByName("br0")
		if err != nil {
			return err
		}
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: h.Port, MasterIndex: br.Attrs().Index},
			PeerName:      HostLink,
			PeerNamespace: netlink.NsFd(hostNS),
		}
		if err := netlink.LinkAdd(veth); err != nil {
			return err
		}
		return setLinkUp(h.Port)
	})
	if err != nil {
		return nil, fmt.Errorf("netutil: host %s: veth: %w", name, err)
	}
	err = ns.Do(func() error {
		link, err := netlink.LinkByName(HostLink)
		if err != nil {
			return err
		}
		h.MAC = link.Attrs().HardwareAddr
		for _, a := range addrs {
			if err := netlink.AddrAdd(link, NetlinkAddr(a)); err != nil {
				return fmt.Errorf("add %s: %w", a, err)
			}
		}
		return netlink.LinkSetUp(link)
	})
	if err != nil {
		return nil, fmt.Errorf("netutil: host %s: %w", name, err)
	}
	return h, nil
}

// SetLinkUp sets the host's HostLink administratively up or down (a fault).
func (h *Host) SetLinkUp(up bool) error {
	return h.Do(func() error {
		link, err := netlink.LinkByName(HostLink)
		if err != nil {
			return err
		}
		if up {
			return netlink.LinkSetUp(link)
		}
		return netlink.LinkSetDown(link)
	})
}

// Close deletes every namespace of the lab (and with them links and nftables
// tables inside). It keeps going on errors and returns them all.
func (l *Lab) Close() error {
	var errs []error
	for _, h := range l.Hosts {
		errs = append(errs, h.Delete())
	}
	errs = append(errs, l.Switch.Delete())
	return errors.Join(errs...)
}

// NetlinkAddr converts p for netlink; IPv6 addresses get IFA_F_NODAD.
func NetlinkAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{
		IP:   p.Addr().AsSlice(),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

func portName(host string) string {
	n := "p-" + host
	if len(n) > unix.IFNAMSIZ-1 {
		n = n[:unix.IFNAMSIZ-1]
	}
	return n
}

func setLinkUp(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(link)
}

// noDAD turns IPv6 duplicate address detection off for links created later
// in the calling thread's namespace.
func noDAD() error {
	for _, f := range []string{"all", "default"} {
		p := "/proc/sys/net/ipv6/conf/" + f + "/accept_dad"
		if err := os.WriteFile(p, []byte("0"), 0o644); err != nil {
			return err
		}
	}
	return nil
}
