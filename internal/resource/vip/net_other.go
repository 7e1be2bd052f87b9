//go:build !linux

package vip

import (
	"context"
	"errors"
	"net"
	"net/netip"
)

// otherNet fails every operation: VIPs need Linux netlink.
type otherNet struct{}

var errNotLinux = errors.New("vip: floating addresses need Linux")

func hostNet(string) netOps { return otherNet{} }

func (otherNet) link(string) (linkInfo, error)                { return linkInfo{}, errNotLinux }
func (otherNet) hasAddr(string, netip.Addr) (bool, error)     { return false, errNotLinux }
func (otherNet) addAddr(string, netip.Prefix) error           { return errNotLinux }
func (otherNet) awaitLocal(context.Context, netip.Addr) error { return errNotLinux }
func (otherNet) delAddr(string, netip.Addr) (bool, error)     { return false, errNotLinux }
func (otherNet) announcer(string, netip.Addr, net.HardwareAddr) (announcer, error) {
	return nil, errNotLinux
}
