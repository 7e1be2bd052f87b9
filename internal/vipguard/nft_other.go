//go:build !linux

package vipguard

import (
	"errors"
	"net/netip"
	"time"
)

// DefaultTable is the name of the tables the Linux guard owns.
const DefaultTable = "tandem"

// Options configure an NFT guard (Linux only).
type Options struct {
	Table string
	NetNS string
}

// NFT is the nftables guard; it exists only on Linux.
type NFT struct{}

var errNoNFT = errors.New("vipguard: nftables needs Linux")

// NewNFT fails: the kernel-enforced lease needs Linux nftables.
func NewNFT(Options) (*NFT, error) { return nil, errNoNFT }

func (*NFT) Install([]netip.Prefix) error                { return errNoNFT }
func (*NFT) Allow(netip.Addr, time.Duration) error       { return errNoNFT }
func (*NFT) Revoke(netip.Addr) error                     { return errNoNFT }
func (*NFT) Remaining(netip.Addr) (time.Duration, error) { return 0, errNoNFT }
func (*NFT) Close() error                                { return nil }
