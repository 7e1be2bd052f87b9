package filesystem

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/internal/resource"
)

// A forced unmount kills what holds this mount, and nothing that only
// shares its path: a process in the directory the mount covers, and one
// in another mount namespace sitting in a directory of the same path
// (the other test-bed node's postgres, which a path match killed). A
// mount namespace copied from ours while mounted keeps the device in use:
// the stop fails saying where, and succeeds once that namespace is gone.
func TestAgentKillsOnlyWhatHoldsItsMount(t *testing.T) {
	needRoot(t, "mkfs.ext4", "e2fsck", "unshare")
	v := newVolume(t, 64<<20, "ext4")
	cfg := testConfig(t, v, "ext4")
	if err := os.MkdirAll(cfg.Mount, 0o755); err != nil {
		t.Fatal(err)
	}
	covered, coveredDone := startHolder(t, cfg.Mount, "sleep", "600")
	bystander, bystanderDone := startHolder(t, cfg.Mount, "unshare", "--mount", "--propagation", "private", "--", "sleep", "600")
	waitFor(t, func() bool { return commOf(bystander.Process.Pid) == "sleep" }) // unshare has exec'd
	a := newAgent(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	holder, holderDone := startHolder(t, cfg.Mount, "sleep", "600")
	if err := a.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	killedBy(t, "the holder", holder, holderDone, syscall.SIGTERM)
	for what, done := range map[string]<-chan error{"a process in the covered directory": coveredDone,
		"a process of another mount namespace at the same path": bystanderDone} {
		select {
		case err := <-done:
			t.Errorf("%s was killed: %v", what, err)
		default:
		}
	}
	assertNothingLeft(t, a)
	covered.Process.Kill()
	bystander.Process.Kill()

	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	copied, copiedDone := startHolder(t, "/", "unshare", "--mount", "--propagation", "private", "--", "sleep", "600")
	waitFor(t, func() bool { return commOf(copied.Process.Pid) == "sleep" })
	sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
	err := a.Stop(sctx)
	scancel()
	want := cfg.Mount + " (mount namespace of pid " + strconv.Itoa(copied.Process.Pid) + ", sleep)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("stop with the file system mounted in a copied namespace: %v, want it to name %q", err, want)
	}
	t.Logf("stop with the file system mounted in a copied namespace: %v", err)
	if err := a.Monitor(ctx); err == nil || resource.IsNotRunning(err) {
		t.Errorf("monitor after the failed stop: %v, want a failure (attached, not mounted here)", err)
	}
	copied.Process.Kill()
	<-copiedDone
	if err := a.Stop(ctx); err != nil {
		t.Fatalf("stop once the copy is gone: %v", err)
	}
	assertNothingLeft(t, a)
}

func commOf(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}
