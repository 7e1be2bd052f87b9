package netutil

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
)

// The probes below look at an address the way a client on the same LAN
// does. Each opens its own socket, so probes of different kinds may run
// concurrently. The functions act in the calling thread's namespace (run a
// whole probe loop inside NS.Do to avoid a thread per probe); the NS methods
// wrap one probe in Do.

// DialTCP connects to addr and closes at once.
func DialTCP(addr netip.AddrPort, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr.String(), timeout)
	if err != nil {
		return err
	}
	return c.Close()
}

// DialTCP is DialTCP inside the namespace.
func (n *NS) DialTCP(addr netip.AddrPort, timeout time.Duration) error {
	return n.Do(func() error { return DialTCP(addr, timeout) })
}

// ResolveARP is ResolveARP inside the namespace.
func (n *NS) ResolveARP(link string, ip netip.Addr, timeout time.Duration) (mac net.HardwareAddr, err error) {
	err = n.Do(func() error { mac, err = ResolveARP(link, ip, timeout); return err })
	return mac, err
}

// ResolveNDP is ResolveNDP inside the namespace.
func (n *NS) ResolveNDP(link string, ip netip.Addr, timeout time.Duration) (mac net.HardwareAddr, err error) {
	err = n.Do(func() error { mac, err = ResolveNDP(link, ip, timeout); return err })
	return mac, err
}

// ResolveARP broadcasts "who has ip" on link and returns the hardware address
// of the first reply within timeout. It bypasses (and leaves alone) the
// neighbour cache.
func ResolveARP(link string, ip netip.Addr, timeout time.Duration) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := func() error {
		ifi, err := net.InterfaceByName(link)
		if err != nil {
			return err
		}
		c, err := arp.Dial(ifi)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
			return err
		}
		mac, err = c.Resolve(ip)
		return err
	}()
	if err != nil {
		return nil, fmt.Errorf("netutil: arp who-has %s: %w", ip, err)
	}
	return mac, nil
}

// ResolveNDP sends a neighbour solicitation for ip on link and returns the
// target link-layer address of the first advertisement within timeout.
func ResolveNDP(link string, ip netip.Addr, timeout time.Duration) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := func() error {
		ifi, err := net.InterfaceByName(link)
		if err != nil {
			return err
		}
		c, _, err := ndp.Listen(ZoneSafe(ifi), ndp.LinkLocal)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
			return err
		}
		group, err := ndp.SolicitedNodeMulticast(ip)
		if err != nil {
			return err
		}
		ns := &ndp.NeighborSolicitation{
			TargetAddress: ip,
			Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}},
		}
		if err := c.WriteTo(ns, nil, group); err != nil {
			return err
		}
		for {
			msg, _, _, err := c.ReadFrom()
			if err != nil {
				return err
			}
			na, ok := msg.(*ndp.NeighborAdvertisement)
			if !ok || na.TargetAddress != ip {
				continue
			}
			for _, o := range na.Options {
				if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
					mac = lla.Addr
					return nil
				}
			}
			return errors.New("advertisement without a target link-layer address")
		}
	}()
	if err != nil {
		return nil, fmt.Errorf("netutil: neighbour solicitation for %s: %w", ip, err)
	}
	return mac, nil
}

// Neighbor returns the namespace's neighbour-cache entry for ip on link
// (nil when there is none or it has no hardware address) and its NUD state
// as netlink names it (e.g. "reachable", "stale", "failed").
func (n *NS) Neighbor(link string, ip netip.Addr) (net.HardwareAddr, string, error) {
	var (
		mac   net.HardwareAddr
		state string
	)
	err := n.Do(func() error {
		l, err := netlink.LinkByName(link)
		if err != nil {
			return err
		}
		family := netlink.FAMILY_V4
		if ip.Is6() {
			family = netlink.FAMILY_V6
		}
		neighs, err := netlink.NeighList(l.Attrs().Index, family)
		if err != nil {
			return err
		}
		for _, ne := range neighs {
			if a, ok := netip.AddrFromSlice(ne.IP); ok && a.Unmap() == ip {
				mac, state = ne.HardwareAddr, neighState(ne.State)
			}
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("netutil: neighbour %s: %w", ip, err)
	}
	return mac, state, nil
}

func neighState(s int) string {
	names := map[int]string{
		netlink.NUD_INCOMPLETE: "incomplete", netlink.NUD_REACHABLE: "reachable",
		netlink.NUD_STALE: "stale", netlink.NUD_DELAY: "delay", netlink.NUD_PROBE: "probe",
		netlink.NUD_FAILED: "failed", netlink.NUD_NOARP: "noarp", netlink.NUD_PERMANENT: "permanent",
	}
	if name, ok := names[s]; ok {
		return name
	}
	return fmt.Sprintf("nud(%#x)", s)
}

// ZoneSafe returns a copy of ifi whose Name is its index. Go resolves IPv6
// zone names through one process-wide cache, refreshed at most once a
// minute from whichever namespace the refreshing thread is in, so in a
// process that works in several namespaces "eth0" may resolve to another
// namespace's eth0. A numeric zone is used as the index itself. Hand the
// copy to APIs that take the zone from ifi.Name (mdlayher/ndp).
func ZoneSafe(ifi *net.Interface) *net.Interface {
	c := *ifi
	c.Name = strconv.Itoa(ifi.Index)
	return &c
}
