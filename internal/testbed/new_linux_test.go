package testbed

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tandem/internal/netutil"
)

// A setup error after the bed was registered (here: the witness's
// namespace name is taken) is returned as an error, and what New built
// before it — the switch, node1, node2, the work directory — is gone.
// New used to panic here: its deferred cleanup called Close on the named
// result that "return nil, err" had already set to nil.
func TestNewRemovesAHalfBuiltBed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	const base = "tbednew" // not "ttb…": a concurrent bed would take it for its own leftovers
	prefix := netutil.UniquePrefix(base) + string(rune('a'+(bedSeq.Load()+1)%26))
	taken, err := netutil.NewNS(prefix + "-witness")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { taken.Delete() })
	dirsBefore, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"-*"))

	b, err := New(context.Background(), Options{Base: base, Logf: t.Logf})
	if err == nil {
		b.Close()
		t.Fatal("New succeeded with the witness's namespace taken")
	}
	if b != nil {
		t.Errorf("New returned a bed with its error %v", err)
	}
	if !strings.Contains(err.Error(), "witness") {
		t.Errorf("error %q does not say what failed", err)
	}
	t.Logf("New: %v", err)
	for _, h := range []string{"sw", "node1", "node2"} {
		if _, err := os.Stat(filepath.Join(netutil.NamedDir, prefix+"-"+h)); !os.IsNotExist(err) {
			t.Errorf("namespace %s-%s left behind: %v", prefix, h, err)
		}
	}
	if _, err := os.Stat(taken.Path()); err != nil {
		t.Errorf("New removed a namespace it did not create: %v", err)
	}
	if dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"-*")); len(dirs) != len(dirsBefore) {
		t.Errorf("work directory left behind: %v", dirs)
	}
	liveMu.Lock()
	n := len(live)
	liveMu.Unlock()
	if n != 0 {
		t.Errorf("%d beds still registered after a failed New", n)
	}
}
