package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
)

// toolPackages maps the programs the bed runs to the Debian packages that
// ship them.
var toolPackages = map[string]string{
	"ip":            "iproute2",
	"tc":            "iproute2",
	"nft":           "nftables",
	"keepalived":    "keepalived",
	"chrt":          "util-linux",
	"stress-ng":     "stress-ng",
	"ipmi_sim":      "openipmi",
	"fence_ipmilan": "fence-agents",
}

var installMu sync.Mutex

// EnsureTools installs, with apt-get, the packages of the named programs
// that are missing. Installing needs root and a reachable package mirror;
// the error says which programs are missing when that fails.
func EnsureTools(ctx context.Context, logf func(string, ...any), tools ...string) error {
	installMu.Lock()
	defer installMu.Unlock()
	var missing []string
	pkgs := map[string]bool{}
	for _, t := range tools {
		if _, err := exec.LookPath(t); err == nil {
			continue
		}
		if _, err := os.Stat("/usr/sbin/" + t); err == nil {
			continue
		}
		pkg, ok := toolPackages[t]
		if !ok {
			return fmt.Errorf("testbed: %s is missing and no package is known for it", t)
		}
		missing = append(missing, t)
		pkgs[pkg] = true
	}
	if len(missing) == 0 {
		return nil
	}
	var names []string
	for p := range pkgs {
		names = append(names, p)
	}
	sort.Strings(names)
	if logf != nil {
		logf("testbed: %s missing; installing %s with apt-get", strings.Join(missing, ", "), strings.Join(names, " "))
	}
	// Debian starts daemons such as keepalived at install; a policy-rc.d
	// that exits 101 forbids that, so only the bed's own instances run.
	const policy = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(policy); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err == nil {
			defer os.Remove(policy)
		}
	}
	install := func() error {
		args := append([]string{"install", "-y", "-q", "--no-install-recommends"}, names...)
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get install %s: %w: %s", strings.Join(names, " "), err, lastLines(string(out), 5))
		}
		return nil
	}
	if err := install(); err != nil {
		// A fresh machine has no package lists yet.
		if out, uerr := exec.CommandContext(ctx, "apt-get", "update", "-q").CombinedOutput(); uerr != nil {
			return fmt.Errorf("testbed: need %s: apt-get update: %w: %s", strings.Join(missing, ", "), uerr, lastLines(string(out), 5))
		}
		if err := install(); err != nil {
			return fmt.Errorf("testbed: need %s: %w", strings.Join(missing, ", "), err)
		}
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
