// Package proctest holds helpers for tests that run real processes: waiting
// for a process group to die, reading pid files, building a small Go server
// program. Only tests import it.
package proctest

import (
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"tandem/internal/resource/exec/proc"
)

// ReadPID reads a decimal pid that a test child wrote to path.
func ReadPID(t testing.TB, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pid
}

// WaitGroupGone fails t unless process group pgid has no live member
// within two seconds (SIGKILL is asynchronous; the kernel needs a moment
// to tear processes down).
func WaitGroupGone(t testing.TB, pgid int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		pids, err := proc.Members(pgid)
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process group %d still has live members %v", pgid, pids)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Median of durations (0 for none).
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
