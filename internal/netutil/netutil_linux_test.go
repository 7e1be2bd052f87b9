package netutil

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netutil: needs root to create network namespaces; skipped")
	}
}

const testBase = "tvipn"

func newLab(t *testing.T) *Lab {
	t.Helper()
	needRoot(t)
	if removed, err := RemoveStale(testBase); err != nil {
		t.Fatal(err)
	} else if len(removed) > 0 {
		t.Logf("removed stale namespaces %v", removed)
	}
	l, err := NewLab(UniquePrefix(testBase))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

func TestLabHostsReachEachOther(t *testing.T) {
	l := newLab(t)
	a, err := l.AddHost("a", netip.MustParsePrefix("10.99.0.1/24"), netip.MustParsePrefix("fd99::1/64"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AddHost("b", netip.MustParsePrefix("10.99.0.2/24"), netip.MustParsePrefix("fd99::2/64"))
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := a.Do(func() (err error) { ln, err = net.Listen("tcp", ":7000"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, dst := range []string{"10.99.0.1:7000", "[fd99::1]:7000"} {
		err := b.Do(func() error {
			c, err := net.DialTimeout("tcp", dst, 2*time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err != nil {
			t.Errorf("dial %s from b: %v", dst, err)
		}
	}
	// The lab leaves the root namespace alone (a TCP probe would prove
	// nothing here: this sandbox accepts connections to any outside address).
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, ad := range addrs {
		if ad.IP.Equal(net.ParseIP("10.99.0.1")) {
			t.Error("root namespace carries a lab address")
		}
	}
	if _, err := netlink.LinkByName(a.Port); err == nil {
		t.Error("root namespace carries a lab bridge port")
	}
	out, err := a.Command(t.Context(), "ip", "-br", "addr", "show", HostLink).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "10.99.0.1/24") {
		t.Errorf("ip netns exec: %v: %s", err, out)
	}
}

func TestSetLinkUpAndMAC(t *testing.T) {
	l := newLab(t)
	a, err := l.AddHost("a", netip.MustParsePrefix("10.99.0.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.MAC) != 6 {
		t.Fatalf("MAC %v", a.MAC)
	}
	if err := a.SetLinkUp(false); err != nil {
		t.Fatal(err)
	}
	err = a.Do(func() error {
		link, err := netlink.LinkByName(HostLink)
		if err != nil {
			return err
		}
		if link.Attrs().Flags&net.FlagUp != 0 {
			t.Error("link still up")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRemoveStaleKeepsLiveRuns(t *testing.T) {
	needRoot(t)
	dead, err := NewNS(testBase + "999999999-x") // no such pid
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dead.Delete() })
	live, err := NewNS(UniquePrefix(testBase) + "-live")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { live.Delete() })
	removed, err := RemoveStale(testBase)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(removed, ",") != dead.Name {
		t.Errorf("removed %v, want only %s", removed, dead.Name)
	}
	if _, err := os.Stat(live.Path()); err != nil {
		t.Errorf("live namespace gone: %v", err)
	}
}
