package vip

import (
	"context"
	"errors"
	"net"
	"net/netip"
)

// netOps is the agent's view of the host network: the seam between the
// agent's logic and netlink / raw sockets (net_linux.go), with a fake in the
// tests.
type netOps interface {
	// link describes the interface; errNoLink when it does not exist.
	link(iface string) (linkInfo, error)
	// hasAddr reports whether ip is on iface (with any prefix length).
	hasAddr(iface string, ip netip.Addr) (bool, error)
	// addAddr puts p on iface; IPv6 without duplicate address detection.
	addAddr(iface string, p netip.Prefix) error
	// awaitLocal returns once the kernel delivers packets for ip locally
	// (or ctx ends).
	awaitLocal(ctx context.Context, ip netip.Addr) error
	// delAddr removes ip from iface and says whether it was there; an
	// absent address is not an error.
	delAddr(iface string, ip netip.Addr) (removed bool, err error)
	// announcer opens what announce needs (sockets), bound to iface.
	announcer(iface string, ip netip.Addr, mac net.HardwareAddr) (announcer, error)
}

type linkInfo struct {
	up      bool // administratively up
	carrier bool // operationally up (IFF_RUNNING)
	mac     net.HardwareAddr
}

// announcer sends one announcement of the VIP per call.
type announcer interface {
	announce() error
	close() error
}

var errNoLink = errors.New("no such interface")
