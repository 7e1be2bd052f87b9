package probe

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sort"
	"time"

	"github.com/mdlayher/arp"
)

// WatchARP asks "who has vip" on iface every interval and reports every MAC
// that answered within window. Two MACs for one request is a split brain on
// the wire, whatever the services answer.
func WatchARP(ctx context.Context, iface string, vip netip.Addr, interval, window time.Duration, emit func(ARPSample)) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return err
	}
	c, err := arp.Dial(ifi)
	if err != nil {
		return err
	}
	defer c.Close()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		at := time.Now()
		if err := c.Request(vip); err != nil {
			return err
		}
		seen := map[string]bool{}
		c.SetReadDeadline(at.Add(window))
		for {
			p, _, err := c.Read()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				break
			}
			// Only answers to our own request count: a gratuitous ARP
			// (sent by a new holder, addressed to itself) is not a second
			// node answering, and during a fast switchover it lands in
			// the same window as the old holder's last answer.
			if p.Operation == arp.OperationReply && p.SenderIP == vip && bytes.Equal(p.TargetHardwareAddr, c.HardwareAddr()) {
				seen[p.SenderHardwareAddr.String()] = true
			}
		}
		s := ARPSample{At: at}
		for m := range seen {
			s.MACs = append(s.MACs, m)
		}
		sort.Strings(s.MACs)
		emit(s)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
