// Package deptest checks that the import graph stays as DESIGN.md draws
// it: pure logic packages import only leaf packages, adapters never import
// the wiring, and nothing imports cmd. It has no code, only this test.
package deptest

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "tandem/"

// allowed lists, for each package, the tandem packages it may import. A
// package not listed may import anything of ours except what forbidden
// says.
var allowed = map[string][]string{
	"internal/clock":            {},
	"internal/durable":          {},
	"internal/blockdev":         {},
	"internal/events":           {"internal/durable"},
	"internal/lease":            {},
	"internal/lifecycle":        {},
	"internal/fencepolicy":      {},
	"internal/fence":            {"internal/clock", "internal/events"},
	"internal/watchdog":         {"internal/clock"},
	"internal/seal":             {},
	"internal/state":            {},
	"internal/keyfile":          {"internal/durable"},
	"internal/placement":        {"internal/config", "internal/state", "internal/keyfile"},
	"internal/config":           {"internal/keyfile", "internal/events"},
	"internal/heartbeat":        {"internal/clock", "internal/durable", "internal/lease", "internal/seal"},
	"internal/consensus":        {"internal/state", "internal/peerid"},
	"internal/peerid":           {},
	"internal/pgwire":           {},
	"internal/manager":          {"internal/clock", "internal/events", "internal/lifecycle", "internal/resource", "internal/state", "internal/vipguard"},
	"internal/probe":            {},
	"internal/metapage":         {},
	"internal/replication":      {},
	"internal/volume/meta":      {"internal/blockdev", "internal/metapage", "internal/replication"},
	"internal/replication/link": {"internal/clock", "internal/keyfile", "internal/peerid", "internal/replication"},
	"internal/volume":           {"internal/blockdev", "internal/clock", "internal/replication", "internal/replication/link", "internal/volume/meta"},
	"internal/report":           {"internal/events"},
	"internal/report/pdf":       {},
	"internal/web":              {},
}

// pure packages do no I/O: no sockets, files or processes.
var pure = []string{"internal/lease", "internal/fencepolicy", "internal/state", "internal/placement", "internal/seal", "internal/lifecycle", "internal/replication", "internal/report"}

var ioPackages = []string{"net", "os", "os/exec", "syscall", "net/http", "io/ioutil", "golang.org/x/sys/unix"}

// forbidden: no package below internal/ may import these.
var forbidden = []string{"cmd/tandem", "internal/demo", "internal/testbed"}

func TestImportGraph(t *testing.T) {
	out, err := exec.Command("go", "list", "-e", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "tandem/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], mod)
		var ours []string
		for _, imp := range f[1:] {
			if strings.HasPrefix(imp, mod) {
				ours = append(ours, strings.TrimPrefix(imp, mod))
			}
		}
		if contains(pure, pkg) {
			for _, imp := range f[1:] {
				if contains(ioPackages, imp) {
					t.Errorf("%s is pure logic but imports %s", pkg, imp)
				}
			}
		}
		if rule, ok := allowed[pkg]; ok {
			for _, imp := range ours {
				if !contains(rule, imp) && !strings.HasPrefix(imp, pkg+"/") {
					t.Errorf("%s imports %s; it may import only %v", pkg, imp, rule)
				}
			}
		}
		if strings.HasPrefix(pkg, "internal/") {
			for _, imp := range ours {
				for _, bad := range forbidden {
					if imp == bad && !strings.HasPrefix(pkg, "e2e") && pkg != "internal/testbed" {
						t.Errorf("%s imports %s, which only cmd (and the test bed) may import", pkg, imp)
					}
				}
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
