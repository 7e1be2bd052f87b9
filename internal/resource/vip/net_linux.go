package vip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"tandem/internal/netutil"
)

// linuxNet reaches the host's (or a namespace's) network through netlink,
// AF_PACKET and ICMPv6 sockets. Its netlink handle is opened once: a
// failover should not pay for sockets (and namespace switches) per call.
type linuxNet struct {
	netns string // namespace file, or "" for the caller's namespace

	mu sync.Mutex // one request at a time on h
	h  *netlink.Handle
}

func hostNet(netnsPath string) netOps { return &linuxNet{netns: netnsPath} }

func (n *linuxNet) handle() (*netlink.Handle, error) {
	if n.h != nil {
		return n.h, nil
	}
	ns := netns.None()
	if n.netns != "" {
		var err error
		if ns, err = netns.GetFromPath(n.netns); err != nil {
			return nil, err
		}
		defer ns.Close()
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	n.h = h
	return h, nil
}

func (n *linuxNet) withLink(iface string, f func(h *netlink.Handle, l netlink.Link) error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	h, err := n.handle()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	l, err := h.LinkByName(iface)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) {
			return errNoLink
		}
		return err
	}
	return f(h, l)
}

func (n *linuxNet) link(iface string) (linkInfo, error) {
	var info linkInfo
	err := n.withLink(iface, func(_ *netlink.Handle, l netlink.Link) error {
		at := l.Attrs()
		info = linkInfo{
			up:      at.Flags&net.FlagUp != 0,
			carrier: at.RawFlags&unix.IFF_RUNNING != 0,
			mac:     at.HardwareAddr,
		}
		return nil
	})
	return info, err
}

// addrsOf returns ip's entries on l (one per prefix length it carries).
func addrsOf(h *netlink.Handle, l netlink.Link, ip netip.Addr) ([]netlink.Addr, error) {
	family := netlink.FAMILY_V4
	if ip.Is6() {
		family = netlink.FAMILY_V6
	}
	all, err := h.AddrList(l, family)
	if err != nil {
		return nil, err
	}
	var out []netlink.Addr
	for _, a := range all {
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip {
			out = append(out, a)
		}
	}
	return out, nil
}

func (n *linuxNet) hasAddr(iface string, ip netip.Addr) (bool, error) {
	var present bool
	err := n.withLink(iface, func(h *netlink.Handle, l netlink.Link) error {
		found, err := addrsOf(h, l, ip)
		present = len(found) > 0
		return err
	})
	return present, err
}

func (n *linuxNet) addAddr(iface string, p netip.Prefix) error {
	return n.withLink(iface, func(h *netlink.Handle, l netlink.Link) error {
		err := h.AddrAdd(l, netutil.NetlinkAddr(p))
		if errors.Is(err, unix.EEXIST) {
			return nil
		}
		return err
	})
}

// awaitLocal polls the kernel's route for ip until it is a local one. IPv6
// inserts an address's local route from its DAD work queue, even with
// IFA_F_NODAD, so for a moment after the add the address is listed while
// packets to it are dropped (Ip6InAddrErrors); announcing the VIP then would
// point clients at a node that drops their first packets (TCP retries its
// SYN only after a second). IPv4 routes are in place when the add returns.
func (n *linuxNet) awaitLocal(ctx context.Context, ip netip.Addr) error {
	for {
		local, err := n.isLocal(ip)
		if err != nil || local {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s is not local yet: %w", ip, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

func (n *linuxNet) isLocal(ip netip.Addr) (bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	h, err := n.handle()
	if err != nil {
		return false, fmt.Errorf("netlink: %w", err)
	}
	routes, err := h.RouteGet(ip.AsSlice())
	if err != nil {
		return false, fmt.Errorf("route to %s: %w", ip, err)
	}
	return len(routes) > 0 && routes[0].Type == unix.RTN_LOCAL, nil
}

func (n *linuxNet) delAddr(iface string, ip netip.Addr) (removed bool, err error) {
	err = n.withLink(iface, func(h *netlink.Handle, l netlink.Link) error {
		found, err := addrsOf(h, l, ip)
		if err != nil {
			return err
		}
		for _, a := range found {
			err := h.AddrDel(l, &a)
			if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				return err
			}
			removed = removed || err == nil
		}
		return nil
	})
	return removed, err
}

// announcer opens the socket inside the agent's namespace; it stays there.
func (n *linuxNet) announcer(iface string, ip netip.Addr, mac net.HardwareAddr) (announcer, error) {
	var (
		ann announcer
		err error
	)
	open := func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		if ip.Is4() {
			ann, err = openGARP(ifi, ip, mac)
		} else {
			ann, err = openNA(ifi, ip, mac)
		}
		return err
	}
	if n.netns == "" {
		err = open()
	} else {
		err = netutil.DoIn(n.netns, open)
	}
	return ann, err
}

// garpSender writes prebuilt gratuitous ARP frames on a raw packet socket.
type garpSender struct {
	conn   *packet.Conn
	frames [][]byte
}

// dropAll is a socket filter that accepts nothing: the socket only sends,
// and must not queue every ARP frame on the link meanwhile.
var dropAll, _ = bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})

func openGARP(ifi *net.Interface, ip netip.Addr, mac net.HardwareAddr) (announcer, error) {
	frames, err := garpFrames(mac, ip)
	if err != nil {
		return nil, err
	}
	conn, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, &packet.Config{Filter: dropAll})
	if err != nil {
		return nil, fmt.Errorf("packet socket on %s: %w", ifi.Name, err)
	}
	return &garpSender{conn: conn, frames: frames}, nil
}

func (g *garpSender) announce() error {
	to := &packet.Addr{HardwareAddr: ethernet.Broadcast}
	for _, f := range g.frames {
		if _, err := g.conn.WriteTo(f, to); err != nil {
			return err
		}
	}
	return nil
}

func (g *garpSender) close() error { return g.conn.Close() }

// naSender sends unsolicited neighbour advertisements from the VIP itself
// (an address the interface now carries) to all nodes.
type naSender struct {
	conn *ndp.Conn
	msg  *ndp.NeighborAdvertisement
}

func openNA(ifi *net.Interface, ip netip.Addr, mac net.HardwareAddr) (announcer, error) {
	conn, _, err := ndp.Listen(netutil.ZoneSafe(ifi), ndp.Addr(ip.String()))
	if err != nil {
		return nil, fmt.Errorf("icmpv6 socket on %s: %w", ifi.Name, err)
	}
	var none ipv6.ICMPFilter
	none.SetAll(true) // send only; queue nothing
	if err := conn.SetICMPFilter(&none); err != nil {
		conn.Close()
		return nil, err
	}
	return &naSender{conn: conn, msg: unsolicitedNA(mac, ip)}, nil
}

func (s *naSender) announce() error { return s.conn.WriteTo(s.msg, nil, allNodes) }

func (s *naSender) close() error { return s.conn.Close() }
