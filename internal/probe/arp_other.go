//go:build !linux

package probe

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// WatchARP needs Linux packet sockets.
func WatchARP(ctx context.Context, iface string, vip netip.Addr, interval, window time.Duration, emit func(ARPSample)) error {
	return errors.New("probe: ARP watching is only supported on Linux")
}
