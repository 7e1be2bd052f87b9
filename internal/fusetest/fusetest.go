// Package fusetest ends an nbdfuse that a test started: it unmounts its
// FUSE file system and waits for it. Only tests import it.
package fusetest

import (
	"os/exec"
	"testing"
	"time"
)

// Unmount unmounts nbdfuse's FUSE file system at dir and waits for fuse,
// the nbdfuse process, to end. A loop device just detached may still hold
// the FUSE file for a moment (the detach is deferred while anything has
// the device open), so fusermount3 refuses as busy: it is asked again for
// up to 10 s, then the mount is taken off lazily and nbdfuse killed. A
// test whose fusermount3 failed once and which then waited for nbdfuse
// hung until the test binary's timeout (raidcli's TestServeExt4OnTheArray).
func Unmount(t testing.TB, dir string, fuse *exec.Cmd) {
	t.Helper()
	var out []byte
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if out, err = exec.Command("fusermount3", "-u", dir).CombinedOutput(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("fusermount3 -u %s still fails after 10 s: %v: %s; unmounting lazily and killing nbdfuse", dir, err, out)
			exec.Command("fusermount3", "-u", "-z", dir).Run()
			if fuse.Process != nil {
				fuse.Process.Kill()
			}
			break
		}
	}
	if fuse.Process != nil {
		fuse.Wait()
	}
}
