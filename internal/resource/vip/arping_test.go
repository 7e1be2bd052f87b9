package vip

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// arping is the ARP client the VIP tests ask, apart from the agent, who
// has the VIP. Debian has two: Thomas Habets's (package arping) and
// iputils' (package iputils-arping). They take different options (-r, -W
// and -i <interface> are Habets's; iputils has -I <interface> and
// -i <interval>, and refuses -r) and print replies differently, so the
// tests build the command for the one installed and read the MACs out of
// either output. They used to fail with iputils' "invalid option -- 'r'".
type arping struct {
	path   string
	habets bool
}

// findArping returns the installed arping, or nil and why the checks that
// need one are skipped.
func findArping() (*arping, string) {
	path, err := exec.LookPath("arping")
	if err != nil {
		return nil, "arping not installed (Debian package arping or iputils-arping): the independent ARP client check is skipped"
	}
	// iputils prints its version for -V; Habets's takes -V <vlan> and
	// prints its usage, with its name, for the missing argument.
	out, _ := exec.Command(path, "-V").CombinedOutput()
	habets, ok := arpingFlavor(string(out))
	if !ok {
		return nil, path + " is neither Thomas Habets's arping (Debian package arping) nor iputils' (iputils-arping): the independent ARP client check is skipped; it said: " + strings.TrimSpace(string(out))
	}
	return &arping{path: path, habets: habets}, ""
}

// arpingFlavor tells the arpings apart by what `arping -V` prints.
func arpingFlavor(versionOutput string) (habets, known bool) {
	switch {
	case strings.Contains(versionOutput, "Habets"):
		return true, true
	case strings.Contains(versionOutput, "iputils"):
		return false, true
	}
	return false, false
}

// args asks count times (interval apart; 0: the default) who has ip on
// iface, giving up after deadline. iputils takes the interval in whole
// seconds: it is rounded up, and the deadline stretched by the time the
// longer intervals take.
func (a *arping) args(iface string, ip netip.Addr, count int, interval, deadline time.Duration) []string {
	secs := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) }
	if a.habets {
		args := []string{"-c", strconv.Itoa(count), "-w", secs(deadline), "-r", "-i", iface} // -r: each reply as the MAC alone
		if interval > 0 {
			args = append(args, "-W", secs(interval))
		}
		return append(args, ip.String())
	}
	args := []string{"-I", iface}
	if interval > 0 {
		whole := max(time.Second, interval.Round(time.Second))
		if whole < interval {
			whole += time.Second
		}
		deadline += time.Duration(count-1) * (whole - interval)
		args = append(args, "-i", secs(whole))
	}
	return append(append([]string{"-c", strconv.Itoa(count), "-w", secs(deadline.Round(time.Second))}, args...), ip.String())
}

var macPattern = regexp.MustCompile(`(?i)\b[0-9a-f]{2}(?::[0-9a-f]{2}){5}\b`)

// replyMACs returns the MAC of every reply in arping's output: a line of
// its own each with Habets's -r, "Unicast reply from IP [MAC] …" with
// iputils.
func replyMACs(out string) []net.HardwareAddr {
	var macs []net.HardwareAddr
	for _, s := range macPattern.FindAllString(out, -1) {
		if mac, err := net.ParseMAC(s); err == nil {
			macs = append(macs, mac)
		}
	}
	return macs
}

// What each arping prints, recorded from Debian 12's packages: `arping -V`
// and three replies to a who-has.
const (
	habetsVersion  = "arping: option requires an argument -- 'V'\nARPing 2.23, by Thomas Habets <thomas@habets.se>\nusage: arping [ -0aAbdDeFpPqrRuUvzZ ] [ -w <sec> ] [ -W <sec> ] [ -S <host/ip> ]\n"
	iputilsVersion = "arping from iputils 20221126\nlibcap: yes, IDN: yes, NLS: no, error.h: yes, getrandom(): yes, __fpending(): yes\n"
	habetsReplies  = "02:00:0a:63:00:02\n02:00:0a:63:00:02\n02:00:0a:63:00:02\n"
	iputilsReplies = "ARPING 10.99.0.50 from 10.99.0.3 c0\n" +
		"Unicast reply from 10.99.0.50 [02:00:0A:63:00:02]  0.061ms\n" +
		"Unicast reply from 10.99.0.50 [02:00:0A:63:00:02]  0.058ms\n" +
		"Unicast reply from 10.99.0.50 [02:00:0A:63:00:02]  0.049ms\n" +
		"Sent 3 probes (1 broadcast(s))\nReceived 3 response(s)\n"
)

func TestArpingFlavors(t *testing.T) {
	vip := netip.MustParseAddr("10.99.0.50")
	for _, tc := range []struct {
		name, version, replies string
		habets                 bool
		args                   []string
	}{
		{"Habets", habetsVersion, habetsReplies, true, []string{"-c", "3", "-w", "2", "-r", "-i", "c0", "-W", "0.1", "10.99.0.50"}},
		{"iputils", iputilsVersion, iputilsReplies, false, []string{"-c", "3", "-w", "4", "-I", "c0", "-i", "1", "10.99.0.50"}},
	} {
		habets, ok := arpingFlavor(tc.version)
		if !ok || habets != tc.habets {
			t.Errorf("%s: arpingFlavor = %v, %v", tc.name, habets, ok)
		}
		a := &arping{path: "arping", habets: habets}
		if got := a.args("c0", vip, 3, 100*time.Millisecond, 2*time.Second); !slices.Equal(got, tc.args) {
			t.Errorf("%s: args %q, want %q", tc.name, got, tc.args)
		}
		macs := replyMACs(tc.replies)
		if len(macs) != 3 {
			t.Fatalf("%s: %d replies in %q, want 3", tc.name, len(macs), tc.replies)
		}
		for _, m := range macs {
			if m.String() != "02:00:0a:63:00:02" {
				t.Errorf("%s: reply from %v", tc.name, m)
			}
		}
	}
	if _, ok := arpingFlavor("arping: command not found"); ok {
		t.Error("an unknown arping taken for a known one")
	}
}

// An arping that is neither is skipped with the packages to install, not
// run with options it may not take.
func TestUnknownArpingIsSkippedNamingThePackages(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "arping"), []byte("#!/bin/sh\necho 'some other arping 0.1'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	a, why := findArping()
	if a != nil || !strings.Contains(why, "Debian package arping") || !strings.Contains(why, "iputils-arping") {
		t.Fatalf("findArping = %v, %q", a, why)
	}
}
